package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// timeNow is the clock `irctl status` and `irctl close` read; tests set
// it to judge deadlines at a chosen moment.
var timeNow = time.Now

// incidentRunbook loads the runbook whose clocks the incident keeps: the
// one its last run used (with that run's --set values, secrets left out),
// else the default runbook. status and close read the journal and take no
// runbook flags; a runbook that no longer loads leaves the clocks without
// its windows and escalations, and note says why.
func (f *factory) incidentRunbook(recs []incident.Record) (rb *runbook.Runbook, note string) {
	f.runbookPath = defaultRunbook
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Kind != incident.KindRun || r.RunbookRef == "" {
			continue
		}
		f.runbookPath = r.RunbookRef
		if len(f.set) == 0 {
			for k, v := range r.Set {
				if v != "[redacted]" {
					f.set = append(f.set, k+"="+v)
				}
			}
		}
		break
	}
	rb, err := f.loadRunbook(f.runbookPath)
	if err != nil {
		return nil, fmt.Sprintf("runbook %s: %v: clocks without its windows and escalations", f.runbookPath, oneLine(err.Error()))
	}
	return rb, ""
}

// printClocks writes the clocks section of `irctl status`; past-deadline
// items are red when w is a terminal and NO_COLOR is unset, and marked
// with "!" either way.
func printClocks(w io.Writer, c *clocks.Clocks, color bool) {
	mark := func(state string) string {
		if !clocks.StandsOut(state) {
			return state
		}
		if color {
			return "\x1b[1;31m" + state + " !\x1b[0m"
		}
		return state + " !"
	}
	fmt.Fprintf(w, "status %s; %s since declared %s", c.Status, short(time.Duration(c.Elapsed)), utc(c.DeclaredAt))
	if c.ClosedAt != nil {
		fmt.Fprintf(w, "; closed %s by %s (clocks stopped)", utc(*c.ClosedAt), oneLine(c.ClosedBy))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(c.Phases) > 0 {
		fmt.Fprintln(tw, "PHASE\tWINDOW\tDEADLINE\tSTATE\tCOMPLETED")
		for _, p := range c.Phases {
			fmt.Fprintf(tw, "%s\t%s-%s\t%s\t%s\t%s\n", p.Phase, short(time.Duration(p.From)), short(time.Duration(p.To)), utc(p.Deadline), mark(p.State), utcp(p.CompletedAt))
		}
		tw.Flush()
	}
	if len(c.Escalations) > 0 {
		fmt.Fprintf(tw, "ESCALATION (%s)\tCONTACT\tVIA\tDUE\tSTATE\tSENT\n", c.Severity)
		for _, e := range c.Escalations {
			via := e.Step
			if via == "" {
				via = e.Channel + " (out of band: not tracked)"
			}
			who := e.Who
			if e.DataBreach {
				who += " (data breach)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%s\t%s\n", oneLine(who), oneLine(e.Contact), oneLine(via), utc(e.Due), within(time.Duration(e.Within)), mark(e.State), utcp(e.SentAt))
		}
		tw.Flush()
	}
	if len(c.DataCategories) > 0 {
		fmt.Fprintf(w, "data categories: %s\n", strings.Join(c.DataCategories, ", "))
	}
	if g := c.GDPR; g != nil {
		step := g.Step
		if step == "" {
			step = "no authority_notice step in the runbook"
		}
		fmt.Fprintf(w, "GDPR 72h notice to the supervisory authority: due %s (%s), %s, sent %s\n", utc(g.Due), step, mark(g.State), utcp(g.SentAt))
	}
}

func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04Z") }

func utcp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return utc(*t)
}

func within(d time.Duration) string {
	if d == 0 {
		return "immediately"
	}
	return "within " + short(d)
}

// short prints a duration as 2h5m, 15m, 45s: minutes are what deadlines
// are counted in.
func short(d time.Duration) string {
	if d < time.Minute {
		return d.Truncate(time.Second).String()
	}
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h > 0 && m > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case h > 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dm", m)
}

func newCloseCmd(f *factory) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "close",
		Short: "Close the incident once its validate phase has passed (its clocks stop)",
		Long: `Journals that the incident is closed, by whom and when: its status becomes
Closed and its clocks stop. irctl refuses (exit 5) while the runbook's
validate phase has not passed (every validate step's last outcome a
success; the runbook is the incident's last run's), saying which steps are not; --force closes anyway and journals
why. Closing a closed incident changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inc, recs, err := f.incidentJournal()
			if err != nil {
				return err
			}
			rb, note := f.incidentRunbook(recs)
			prog := clocks.Read(recs, rb)
			if c := prog.Closed; c != nil {
				fmt.Fprintf(f.io.ErrOut, "incident %s is already closed (%s by %s, journal record %d)\n", inc.ID, utc(c.Time), oneLine(c.Operator), c.Seq)
				return nil
			}
			why := ""
			switch {
			case rb == nil:
				why = note
			case prog.Phase("validate") == nil:
				why = fmt.Sprintf("runbook %s has no validate phase", rb.File)
			case !prog.ValidatePassed():
				var not []string
				for _, s := range prog.Phase("validate").Steps {
					if !s.Done {
						not = append(not, s.Step)
					}
				}
				why = fmt.Sprintf("validate has not passed: %s not done or failed (run `irctl validate`)", strings.Join(not, ", "))
			}
			if why != "" && !force {
				return exitcode.New(exitcode.Precondition, "incident %s not closed: %s; --force closes it anyway", inc.ID, why)
			}
			rec := incident.Record{Time: timeNow(), Kind: incident.KindClose, Incident: inc.ID, Operator: incident.Operator(), Result: "closed"}
			if rb != nil {
				rec.Runbook, rec.RunbookHash = rb.File, rb.Hash
			}
			if why != "" {
				rec.Result = "closed with --force: " + why
			}
			j, err := inc.Journal()
			if err != nil {
				return err
			}
			rec, err = j.Append(rec)
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				return f.printJSON(rec)
			}
			fmt.Fprintf(f.io.Out, "%s closed at %s by %s\n", inc.ID, utc(rec.Time), oneLine(rec.Operator))
			if why != "" {
				fmt.Fprintf(f.io.ErrOut, "note: closed with --force: %s\n", why)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "close even though the validate phase has not passed (the journal says so)")
	return cmd
}

// statusClocks computes the clocks for `irctl status` at timeNow.
func (f *factory) statusClocks(inc *incident.Incident, recs []incident.Record) (*clocks.Clocks, string) {
	rb, note := f.incidentRunbook(recs)
	return clocks.Compute(inc, rb, recs, timeNow()), note
}
