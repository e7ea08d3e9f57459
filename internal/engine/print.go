package engine

import (
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// Clean makes text from the systems under attack safe to print on a
// terminal: it puts it on one line and shows control characters (ESC and
// the rest of C0, DEL, C1 such as the one-byte CSI) and invisible format
// characters (bidi overrides that reorder what the reader sees) as escapes,
// so a pod name, a user agent or an error message cannot move the cursor,
// retitle the window or hide text. Everything the engine prints about
// targets, plans, results and errors goes through it.
func Clean(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x100 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// unsafeRune is true for control and format characters, and for the
// replacement character that stands for bytes that are not UTF-8 (a lone
// 0x9b is a CSI to some terminals).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar
}

func (e *Engine) mode() string {
	switch e.Env.DryRun {
	case action.DryRunClient:
		return " (dry run)"
	case action.DryRunServer:
		return " (server dry run)"
	}
	return ""
}

// printf prints a human line on Out; callers pass values from servers
// through Clean.
func (e *Engine) printf(format string, args ...any) {
	fmt.Fprintf(e.Out, format, args...)
}

// printPlan shows what a step will do.
func (e *Engine) printPlan(w io.Writer, plan *action.Plan) {
	fmt.Fprintf(w, "  plan%s: %s\n", e.mode(), Clean(plan.Summary))
	for _, t := range plan.Targets {
		fmt.Fprintf(w, "    %s\n", Clean(t))
	}
	for _, d := range plan.Diff {
		// A diff's marker and indentation are its meaning: keep them
		// (spaces, + and - are safe to print), clean the rest.
		body := strings.TrimLeft(d, " +-")
		fmt.Fprintf(w, "      %s%s\n", d[:len(d)-len(body)], Clean(body))
	}
	if plan.Message != "" {
		fmt.Fprintf(w, "    message:\n")
		for _, line := range strings.Split(strings.TrimRight(plan.Message, "\n"), "\n") {
			fmt.Fprintf(w, "      | %s\n", Clean(line))
		}
	}
	for _, warn := range plan.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", Clean(warn))
	}
}

func (e *Engine) printFailures(fs []action.Failure) {
	for _, f := range fs {
		e.printf("  failed: %s: %s\n", Clean(f.Target), Clean(f.Error))
	}
}

// maxTableRows bounds the rows of a result table shown in text mode; the
// whole result is in the evidence (and -o json carries what the action kept).
const maxTableRows = 50

func (e *Engine) printTable(t *action.Table) {
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	line := func(row []string) {
		cells := make([]string, len(row))
		for j, c := range row {
			cells[j] = Clean(c)
		}
		fmt.Fprintf(tw, "    %s\n", strings.Join(cells, "\t"))
	}
	line(t.Columns)
	for i, row := range t.Rows {
		if i == maxTableRows {
			break
		}
		line(row)
	}
	tw.Flush()
	if total := max(t.Total, len(t.Rows)); total > maxTableRows {
		e.printf("    ... %d more rows not shown\n", total-maxTableRows)
	}
}

// printInputs says which params of a phase came from earlier steps'
// recorded results, and from which.
func (e *Engine) printInputs(in map[string]*runbook.Origin) {
	for _, name := range slices.Sorted(maps.Keys(in)) {
		org := in[name]
		if org.Pending != "" {
			continue
		}
		e.printf("  %s = %s: %d value(s) from %s (%s)\n", name, Clean(shortList(e.Runbook.Values[name], 10)), org.Values, Clean(org.From), Clean(org.Source))
	}
}

// shortList shows a list value with at most n items.
func shortList(v any, n int) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return fmt.Sprint(v)
	}
	var parts []string
	for i := 0; i < rv.Len() && i < n; i++ {
		parts = append(parts, fmt.Sprint(rv.Index(i).Interface()))
	}
	if rv.Len() > n {
		parts = append(parts, fmt.Sprintf("... %d more", rv.Len()-n))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// maxCheckCell bounds a cell of the validate table in text mode; -o json
// carries the whole text.
const maxCheckCell = 72

// printChecks prints a validate phase's pass/fail table.
func (e *Engine) printChecks(cs []Check) {
	passed := 0
	for _, c := range cs {
		if c.Result == CheckPass {
			passed++
		}
	}
	e.printf("\nvalidate: %d of %d check(s) passed\n", passed, len(cs))
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "    CHECK\tEXPECTED\tSEEN\tRESULT\n")
	for _, c := range cs {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", cell(c.Check), cell(c.Expected), cell(c.Seen), strings.ToUpper(c.Result))
	}
	tw.Flush()
}

func cell(s string) string {
	s = Clean(s)
	if r := []rune(s); len(r) > maxCheckCell {
		s = string(r[:maxCheckCell-1]) + "…"
	}
	if s == "" {
		s = "-"
	}
	return s
}
