package report

import (
	"fmt"
	"strings"
	"time"

	"irctl.dev/irctl/internal/engine"
)

// Markdown renders the report. Everything that came from the journal or
// the evidence (step results quote the attacked systems) is put on one
// line with terminal escapes neutralised and Markdown's markup escaped.
func Markdown(r *Report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# Incident report %s\n\n", esc(r.ID))
	p("| | |\n|---|---|\n")
	p("| Incident | %s |\n", esc(r.ID))
	p("| Title | %s |\n", esc(r.Title))
	p("| Severity | %s |\n", esc(r.Severity))
	p("| Status | %s |\n", esc(r.Status))
	p("| Declared (detected) | %s by %s |\n", utc(r.DeclaredAt), esc(r.DeclaredBy))
	if r.FirstAttackSeen != nil {
		p("| First attacker activity in the evidence | %s |\n", utc(*r.FirstAttackSeen))
	}
	p("| Operator(s) | %s |\n", esc(strings.Join(r.Operators, ", ")))
	if r.Runbook != "" {
		p("| Runbook | %s |\n", esc(r.Runbook))
	}
	p("| Report generated | %s |\n\n", utc(r.GeneratedAt))

	p("## Summary\n\n%s\n\n", esc(r.Title))
	notesOf(&b, r.Notes, "summary", "No summary noted (add one with `irctl note add --kind summary TEXT`).")

	p("## Timeline\n\n")
	p("Every step's outcome, undo and note from the journal, in UTC. ")
	if r.DryRunRecords > 0 {
		p("%d dry-run record(s) (rehearsals: nothing changed) are left out.", r.DryRunRecords)
	} else {
		p("No dry runs recorded.")
	}
	p("\n\n| Time (UTC) | Phase/step | Outcome | Changed | Detail |\n|---|---|---|---|---|\n")
	p("| %s | - | declared | - | %s declared %s by %s |\n", utc(r.DeclaredAt), esc(r.Severity), esc(r.ID), esc(r.DeclaredBy))
	for _, e := range r.Timeline {
		step := "-"
		if e.Step != "" {
			step = e.Phase + "/" + e.Step
		}
		changed := "-"
		if e.Changed != nil {
			changed = fmt.Sprint(*e.Changed)
		}
		if e.Failed > 0 {
			changed += fmt.Sprintf(" (%d failed)", e.Failed)
		}
		p("| %s | %s | %s | %s | %s |\n", utc(e.Time), esc(step), esc(e.Outcome), changed, esc(e.Detail))
	}
	p("\n")

	p("## Impact\n\n")
	im := r.Impact
	p("- Accounts affected: %s%s\n", count(im.AccountsAffected, "not recorded (no compromised-accounts evidence)"), from(im.AccountsItem))
	if len(im.AccountIDs) > 0 {
		p("  - user ids: %s\n", esc(strings.Join(im.AccountIDs, ", ")))
	}
	if len(im.AttackerSources) > 0 {
		p("  - logged into from: %s\n", esc(strings.Join(im.AttackerSources, ", ")))
	}
	if im.Transfers != nil {
		p("- Large transfers: %d, %s in total, from %d source(s)%s\n", *im.Transfers, size(*im.TransferBytes), len(im.TransferSources), from(im.TransfersItem))
		if len(im.TransferSources) > 0 {
			p("  - sources: %s\n", esc(strings.Join(im.TransferSources, ", ")))
		}
	} else {
		p("- Large transfers: not recorded (no large-transfers evidence)\n")
	}
	p("- API keys revoked: %s\n", count(im.KeysRevoked, "not recorded"))
	p("- Pods quarantined: %s\n", count(im.PodsQuarantined, "not recorded"))
	p("- Accounts disabled: %s\n", count(im.AccountsDisabled, "not recorded"))
	switch {
	case im.HealthChecks == 0:
		p("- Downtime: not recorded (no health check in the journal)\n\n")
	case im.Downtime == nil:
		p("- Downtime: none recorded (%d health check(s), all passed)\n\n", im.HealthChecks)
	default:
		p("- Downtime: %s (%d of %d health check(s) failed; from the first failure to the next pass)\n\n", span(*im.Downtime), im.HealthFailures, im.HealthChecks)
	}

	p("## Remediation\n\n")
	if len(r.Remediation) == 0 {
		p("No step applied yet.\n\n")
	}
	for _, ph := range r.Remediation {
		p("### %s (%d changed", esc(ph.Phase), ph.Changed)
		if ph.Failed > 0 {
			p(", %d failed", ph.Failed)
		}
		p(")\n\n")
		for _, s := range ph.Steps {
			p("- **%s** (%s, %s): %s\n", esc(s.Step), esc(s.Action), utc(s.Time), esc(s.Result))
		}
		p("\n")
	}

	p("## Root cause\n\n")
	notesOf(&b, r.Notes, "root-cause", "Not noted yet (add it with `irctl note add --kind root-cause TEXT`).")
	p("## Prevention\n\n")
	notesOf(&b, r.Notes, "prevention", "Not noted yet (add it with `irctl note add --kind prevention TEXT`).")
	if hasKind(r.Notes, "other") {
		p("## Other notes\n\n")
		notesOf(&b, r.Notes, "other", "")
	}

	p("## Notifications\n\n")
	if len(r.Notifications) == 0 {
		p("None recorded.\n\n")
	} else {
		p("| Time (UTC) | Step | Outcome | Sent | Detail |\n|---|---|---|---|---|\n")
		for _, n := range r.Notifications {
			p("| %s | %s | %s | %d | %s |\n", utc(n.Time), esc(n.Step), esc(n.Outcome), n.Sent, esc(n.Detail))
		}
		p("\n")
	}

	p("## Compliance\n\n")
	if r.DataCategories == nil {
		p("Data categories: not declared by the runbook.\n\n")
	} else {
		p("Data categories (%s): %s.\n\n", esc(r.CategoriesFrom), esc(strings.Join(r.DataCategories, ", ")))
	}
	p("| Regulation | Notice | Basis | Due | Deadline (UTC) | Notified |\n|---|---|---|---|---|---|\n")
	for _, c := range r.Compliance {
		dl := "-"
		if c.Deadline != nil {
			dl = utc(*c.Deadline)
			if r.GeneratedAt.After(*c.Deadline) {
				dl += " (passed " + span(r.GeneratedAt.Sub(*c.Deadline)) + " ago)"
			} else {
				dl += " (in " + span(c.Deadline.Sub(r.GeneratedAt)) + ")"
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", esc(c.Name), esc(c.Status), esc(c.Basis), esc(c.Due), dl, esc(c.Notified))
	}
	p("\n")

	p("## Evidence\n\n")
	if len(r.Evidence) == 0 {
		p("No evidence collected.\n")
	} else {
		p("The manifest's items (`irctl evidence verify` checks them and the chain).\n\n")
		p("| # | Item | Kind | Size | Rows | SHA-256 |\n|---|---|---|---|---|---|\n")
		for _, e := range r.Evidence {
			rows := "-"
			if e.Rows != nil {
				rows = fmt.Sprint(*e.Rows)
			}
			p("| %d | %s | %s | %d | %s | %s |\n", e.Seq, code(e.Name), esc(e.Kind), e.Size, rows, code(e.SHA256))
		}
	}
	return b.String()
}

func notesOf(b *strings.Builder, notes []Note, kind, none string) {
	n := 0
	for _, x := range notes {
		if x.Kind == kind {
			fmt.Fprintf(b, "%s\n\n*(%s, %s)*\n\n", esc(x.Text), esc(x.Operator), utc(x.Time))
			n++
		}
	}
	if n == 0 && none != "" {
		fmt.Fprintf(b, "%s\n\n", none)
	}
}

func hasKind(notes []Note, kind string) bool {
	for _, n := range notes {
		if n.Kind == kind {
			return true
		}
	}
	return false
}

// span is a duration in days, hours and minutes.
func span(d time.Duration) string {
	m := int(d.Round(time.Minute) / time.Minute)
	days, h, min := m/(24*60), m/60%24, m%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh %dm", days, h, min)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, min)
	}
	return fmt.Sprintf("%dm", min)
}

func utc(t time.Time) string { return t.UTC().Format(timeFmt) }

func count(n *int, none string) string {
	if n == nil {
		return none
	}
	return fmt.Sprint(*n)
}

func from(item string) string {
	if item == "" {
		return ""
	}
	return " (evidence " + code(item) + ")"
}

// size is bytes with a binary unit.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTP"[exp], n)
}

var mdEscaper = strings.NewReplacer(`\`, `\\`, "|", `\|`, "*", `\*`, "_", `\_`, "`", "\\`", "<", `\<`, ">", `\>`, "[", `\[`, "]", `\]`, "#", `\#`)

// esc puts text from the journal or the evidence on one line, terminal
// escapes neutralised and Markdown markup escaped, so it reads as written
// and cannot break the table it sits in.
func esc(s string) string { return mdEscaper.Replace(engine.Clean(s)) }

// code is a name or hash as inline code (they hold no backticks: evidence
// names are SafeName'd, hashes hex).
func code(s string) string {
	return "`" + strings.ReplaceAll(engine.Clean(s), "`", "'") + "`"
}
