package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/runbook"
)

func (f *factory) printJSON(v any) error {
	enc := json.NewEncoder(f.io.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newDeclareCmd(f *factory) *cobra.Command {
	var severity, title string
	cmd := &cobra.Command{
		Use:   "declare --severity P0..P4 --title TEXT",
		Short: "Open an incident and print its ID",
		Long: `Opens an incident in the state directory (./incidents/<ID>/ by default) and
prints its ID on stdout, e.g. SEC-20261122-001. Its declared time starts
the runbook's clocks (` + "`irctl status`" + `). Pass it to later commands
with --incident or IRCTL_INCIDENT.

Severities: P0/P1 critical (active breach), P2 high (unauthorized access),
P3 medium (suspicious activity), P4 low (failed logins).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !incident.ValidSeverity(severity) || title == "" {
				return usage("declare needs --severity (one of P0, P1, P2, P3, P4) and --title TEXT")
			}
			inc, err := incident.Declare(f.stateDir, severity, title, incident.Operator(), time.Now())
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				return f.printJSON(inc)
			}
			fmt.Fprintln(f.io.Out, inc.ID)
			fmt.Fprintf(f.io.ErrOut, "declared %s (%s) in %s; export IRCTL_INCIDENT=%s\n", inc.ID, inc.Severity, inc.Dir(), inc.ID)
			fmt.Fprintf(f.io.ErrOut, "its clocks (phase windows, escalations, GDPR deadline) run from %s: see `irctl status`\n", utc(inc.DeclaredAt))
			return nil
		},
	}
	cmd.Flags().StringVar(&severity, "severity", "", "P0, P1, P2, P3 or P4 (required)")
	cmd.Flags().StringVar(&title, "title", "", "one-line description (required)")
	return cmd
}

func newRunbookCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{Use: "runbook", Short: "List, show and validate runbooks"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the shipped runbooks",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			entries, err := fs.Glob(irctl.Runbooks, "runbooks/*.yaml")
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(f.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPHASES\tDESCRIPTION")
			for _, e := range entries {
				name := strings.TrimSuffix(path.Base(e), ".yaml")
				rb, err := f.loadRunbook(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", name, strings.Join(phasesOf(rb), ","), rb.Description)
			}
			return tw.Flush()
		},
	})
	show := &cobra.Command{
		Use:   "show [NAME|FILE]",
		Short: "Show a runbook's params and steps (default: the -f runbook)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			name := f.runbookPath
			if len(args) == 1 {
				name = args[0]
			}
			rb, err := f.loadRunbook(name)
			if err != nil {
				return err
			}
			return showRunbook(f, rb)
		},
	}
	validate := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a runbook and report every problem with file:line (default: the -f runbook)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			name := f.runbookPath
			if len(args) == 1 {
				name = args[0]
			}
			rb, err := f.loadRunbook(name)
			var ps runbook.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					fmt.Fprintln(f.io.Out, p)
				}
				return exitcode.New(exitcode.Usage, "%s: %d problem(s)", ps[0].File, len(ps))
			}
			if err != nil {
				return err
			}
			n := 0
			for _, steps := range rb.Phases {
				n += len(steps)
			}
			for _, w := range runbook.Warnings(rb) {
				fmt.Fprintln(f.io.Out, "warning: "+w.String())
			}
			fmt.Fprintf(f.io.Out, "%s: ok (%d steps in %s)\n", rb.File, n, strings.Join(phasesOf(rb), ", "))
			return nil
		},
	}
	addRunbookFlags(f, show)
	addRunbookFlags(f, validate)
	cmd.AddCommand(show, validate)
	return cmd
}

func phasesOf(rb *runbook.Runbook) []string {
	var out []string
	for _, p := range runbook.Phases {
		if len(rb.Phases[p]) > 0 {
			out = append(out, p)
		}
	}
	return out
}

func showRunbook(f *factory, rb *runbook.Runbook) error {
	if f.jsonOutput() {
		return f.printJSON(runbookView(f, rb))
	}
	w := f.io.Out
	fmt.Fprintf(w, "%s (%s, sha256 %s)\n%s\n", rb.Name, rb.File, rb.Hash[:12], rb.Description)
	if rb.Source != "" {
		fmt.Fprintf(w, "source: %s\n", rb.Source)
	}
	fmt.Fprintln(w, "\nparams:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range rb.Params {
		val := "(unset)"
		if v, ok := rb.Values[p.Name]; ok {
			val = fmt.Sprint(v)
			if p.Secret {
				val = "[redacted]"
			}
		}
		req := ""
		if p.Required {
			req = " required"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\t%s\t%s\n", p.Name, p.Type, req, val, p.Description)
	}
	tw.Flush()
	for _, ph := range runbook.Phases {
		steps := rb.Phases[ph]
		if len(steps) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", ph)
		for i, s := range steps {
			spec, _ := f.registry.Spec(s.Action)
			d := ""
			if spec.Destructive {
				d = " [destructive]"
			}
			fmt.Fprintf(w, "  %d. %s (%s)%s  line %d\n", i+1, s.Name, s.Action, d, s.Line)
			if s.Description != "" {
				fmt.Fprintf(w, "     %s\n", s.Description)
			}
			if len(s.Unresolved) > 0 {
				fmt.Fprintf(w, "     needs --set %s\n", strings.Join(s.Unresolved, ", "))
			}
			if s.Skip != "" {
				fmt.Fprintf(w, "     skipped, only_if is empty: %s\n", s.Skip)
			}
			if s.Expect != nil {
				fmt.Fprintf(w, "     expect: %s\n", s.Expect)
			}
		}
	}
	return nil
}

// runbookView is the JSON form of a runbook, with secret values redacted.
func runbookView(f *factory, rb *runbook.Runbook) map[string]any {
	params := []map[string]any{}
	for _, p := range rb.Params {
		v := rb.Values[p.Name]
		if p.Secret && v != nil {
			v = "[redacted]"
		}
		params = append(params, map[string]any{"name": p.Name, "type": p.Type, "required": p.Required, "description": p.Description, "secret": p.Secret, "value": v, "line": p.Line})
	}
	phases := map[string][]map[string]any{}
	for ph, steps := range rb.Phases {
		for _, s := range steps {
			spec, _ := f.registry.Spec(s.Action)
			phases[ph] = append(phases[ph], map[string]any{"name": s.Name, "action": s.Action, "destructive": spec.Destructive, "line": s.Line, "description": s.Description, "params": s.Params.Display(spec, rb.Secrets), "needs": s.Unresolved, "expect": s.Expect.String(), "skipped": s.Skip})
		}
	}
	return map[string]any{"name": rb.Name, "description": rb.Description, "source": rb.Source, "file": rb.File, "sha256": rb.Hash, "params": params, "phases": phases}
}

func newActionsCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "actions",
		Short: "List every action a runbook step can use, with its params' types and defaults",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var views []actionView
			for _, n := range f.registry.Names() {
				s, _ := f.registry.Spec(n)
				views = append(views, viewOfAction(s))
			}
			if f.jsonOutput() {
				return f.printJSON(views)
			}
			w := f.io.Out
			for _, s := range views {
				d := "safe"
				if s.Destructive {
					d = "destructive: asks before acting"
				}
				if s.Table {
					d += "; its result is a table that expect: can judge"
				}
				fmt.Fprintf(w, "%s (%s)\n  %s\n", s.Name, d, s.Description)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "    PARAM\tTYPE\tDEFAULT\tDESCRIPTION")
				for _, p := range s.Params {
					def := "-"
					switch {
					case p.Required:
						def = "(required)"
					case p.Default != nil:
						def = defaultText(p.Default)
					}
					typ := string(p.Type)
					if p.Secret {
						typ += ", secret"
					}
					fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", p.Name, typ, def, p.Description)
				}
				tw.Flush()
				fmt.Fprintln(w)
			}
			return nil
		},
	}
}

// actionView is an action's spec as `irctl actions` shows it; defaults
// print as a runbook would write them (2m0s, not 120000000000).
type actionView struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Destructive bool        `json:"destructive"`
	Table       bool        `json:"table"` // its result is a table `expect:` can judge
	Uses        []string    `json:"uses,omitempty"`
	Params      []paramView `json:"params"`
}

type paramView struct {
	Name        string       `json:"name"`
	Type        runbook.Type `json:"type"`
	Required    bool         `json:"required"`
	Secret      bool         `json:"secret"`
	Default     any          `json:"default,omitempty"`
	Description string       `json:"description"`
}

func viewOfAction(s runbook.Spec) actionView {
	v := actionView{Name: s.Name, Description: s.Description, Destructive: s.Destructive, Table: s.Table, Uses: s.Uses, Params: []paramView{}}
	for _, d := range s.Params {
		p := paramView{Name: d.Name, Type: d.Type, Required: d.Required, Secret: d.Secret, Description: d.Description}
		if d.Default != nil {
			p.Default = runbook.DisplayValue(d.Default)
		}
		v.Params = append(v.Params, p)
	}
	return v
}

// defaultText renders a default for the table: lists comma-separated,
// maps as k=v, the empty string quoted so it is visible.
func defaultText(v any) string {
	switch x := runbook.DisplayValue(v).(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case []string:
		if len(x) > 4 { // k8s.dump's every kind: the description says it
			return fmt.Sprintf("%s,... (%d)", strings.Join(x[:3], ","), len(x))
		}
		return strings.Join(x, ",")
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k+"="+x[k])
		}
		sort.Strings(keys)
		return "{" + strings.Join(keys, ",") + "}"
	default:
		return fmt.Sprint(x)
	}
}

func newStatusCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the incident's status and clocks, and what its journal records, step by step",
		Long: `Shows the incident's status (Declared, Contained, Eradicated, Recovered,
Closed) and its clocks, counted from the declaration: the time elapsed,
each phase's window (met, late, running or overdue), each escalation for
its severity (done, late, due or overdue: done when its notify step
delivered), and the GDPR 72-hour deadline when the runbook's data
categories include personal data. Past-deadline items are marked "!" (and
red on a terminal, unless NO_COLOR is set). Then the journal, record by
record.

The windows and escalations come from the runbook the incident's last run
used, with its --set values (the default runbook before any run).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			inc, recs, err := f.incidentJournal()
			if err != nil {
				return err
			}
			clk, note := f.statusClocks(inc, recs)
			if note != "" {
				fmt.Fprintln(f.io.ErrOut, "note: "+note)
			}
			if f.jsonOutput() {
				return f.printJSON(map[string]any{"incident": inc, "clocks": clk, "journal": recs})
			}
			w := f.io.Out
			fmt.Fprintf(w, "%s  %s  %s\ndeclared %s by %s\n", inc.ID, inc.Severity, oneLine(inc.Title), inc.DeclaredAt.Format(time.RFC3339), oneLine(inc.DeclaredBy))
			printClocks(w, clk, progress.Color(w))
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tPHASE\tSTEP\tKIND\tDRY RUN\tDETAIL")
			for _, r := range recs {
				detail := r.Result
				if detail == "" {
					detail = r.Plan
				}
				if r.Error != "" {
					detail = "error: " + r.Error
				}
				switch r.Kind {
				case incident.KindRun:
					detail = "irctl " + r.Command
				case incident.KindNote:
					detail = r.NoteKind + ": " + r.Text
				}
				// Details quote the attacked systems (targets, errors):
				// no terminal escapes get through.
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format("15:04:05Z"), oneLine(r.Phase), oneLine(r.Step), r.Kind, dash(r.DryRun), oneLine(detail))
			}
			return tw.Flush()
		},
	}
	return cmd
}

func dash(s string) string {
	if s == "" || s == string(action.DryRunNone) {
		return "-"
	}
	return s
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print irctl's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "irctl %s\n", Version())
		},
	}
}
