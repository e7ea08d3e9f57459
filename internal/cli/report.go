package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/glamour"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/report"
	"irctl.dev/irctl/internal/runbook"
)

func newNoteCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "note",
		Short: "Add and list the operator's notes (summary, root cause, prevention) for the report",
	}
	var kind string
	add := &cobra.Command{
		Use:   "add TEXT...",
		Short: "Journal a note, with the time and the operator",
		Long: `Journals a note with the time and the operator. --kind says where the
report places it: summary, root-cause, prevention or other. Notes are the
operator's words: known secrets are redacted before they are journaled.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if !validNoteKind(kind) {
				return usage("note add --kind=%s: want one of %s", kind, strings.Join(incident.NoteKinds, ", "))
			}
			text := strings.TrimSpace(strings.Join(args, " "))
			if text == "" {
				return usage("note add: the note is empty")
			}
			inc, err := f.openIncident()
			if err != nil {
				return err
			}
			j, err := inc.Journal()
			if err != nil {
				return err
			}
			rec, err := j.Append(incident.Record{Kind: incident.KindNote, Incident: inc.ID, Operator: incident.Operator(), NoteKind: kind, Text: f.secrets.String(text)})
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				return f.printJSON(rec)
			}
			fmt.Fprintf(f.io.ErrOut, "noted (%s) in %s at %s\n", kind, inc.ID, rec.Time.Format(time.RFC3339))
			return nil
		},
	}
	add.Flags().StringVar(&kind, "kind", "other", "where the report places the note: "+strings.Join(incident.NoteKinds, ", "))
	list := &cobra.Command{
		Use:   "list",
		Short: "List the incident's notes",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, recs, err := f.incidentJournal()
			if err != nil {
				return err
			}
			notes := []report.Note{}
			for _, r := range recs {
				if r.Kind == incident.KindNote {
					notes = append(notes, report.Note{Time: r.Time, Operator: r.Operator, Kind: r.NoteKind, Text: r.Text})
				}
			}
			if f.jsonOutput() {
				return f.printJSON(notes)
			}
			tw := tabwriter.NewWriter(f.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tOPERATOR\tTEXT")
			for _, n := range notes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Time.UTC().Format(time.RFC3339), oneLine(n.Kind), oneLine(n.Operator), f.secrets.String(oneLine(n.Text)))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(add, list)
	return cmd
}

func validNoteKind(k string) bool {
	for _, v := range incident.NoteKinds {
		if v == k {
			return true
		}
	}
	return false
}

func newReportCmd(f *factory) *cobra.Command {
	var file string
	var noSave bool
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Render the incident report (Markdown) from the journal and the evidence, and save it as evidence",
		Long: `Renders the incident report from the journal and the evidence, after the
LLM-orchestrator incident runbook's template: header, summary, timeline,
impact (accounts affected from the compromised-accounts evidence, large
transfers, keys revoked, pods quarantined, downtime from health checks),
remediation, root cause and prevention (from ` + "`irctl note add --kind ...`" + `),
notifications, compliance (GDPR, CCPA, PCI DSS, HIPAA: required or not from
the runbook's data categories and the evidence, with deadlines and whether
notified) and the evidence manifest's items and hashes. Dry runs are left
out of the timeline (their number is given).

Output: Markdown on stdout, styled with glamour when stdout is a terminal
(plain Markdown otherwise; GLAMOUR_STYLE picks dark, light or notty, NO_COLOR
means unstyled); --file FILE writes
the Markdown there instead (-o is the output format, as everywhere); -o json
prints the same facts as JSON.

Each report is saved as evidence (reports/report-<UTC time>.md, hashed, in
the manifest), unless --no-save. The runbook (-f) names each phase's steps,
from which the status (Declared, Contained, Eradicated, Recovered) follows;
by default it is the one the incident's last run used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inc, recs, err := f.incidentJournal()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("runbook") {
				for _, r := range recs {
					if r.Kind == incident.KindRun && r.RunbookRef != "" {
						f.runbookPath = r.RunbookRef
					}
				}
			}
			rb, err := f.loadRunbook(f.runbookPath)
			if err != nil {
				return err
			}
			entries, err := evidence.ReadManifest(inc.Dir())
			if err != nil {
				return err
			}
			cats, catsFrom, err := f.dataCategories(rb)
			if err != nil {
				return err
			}
			// The store is opened first: opening it connects to the
			// cluster and the database, which adds their credentials to
			// the secrets redacted from the report.
			var store *evidence.Store
			if !noSave {
				if store, err = f.evidenceStore(); err != nil {
					return fmt.Errorf("saving the report as evidence: %w", err)
				}
			}
			rep := report.Build(report.Input{
				Incident: inc, Records: recs, IncidentDir: inc.Dir(), Evidence: entries, Runbook: rb,
				DataCategories: cats, CategoriesFrom: catsFrom, Now: time.Now(),
			})
			md := f.secrets.String(report.Markdown(rep))
			var saved *evidence.Entry
			if store != nil {
				name := "reports/report-" + rep.GeneratedAt.Format("20060102T150405Z") + ".md"
				e, err := store.WriteFile(name, evidence.Source{Kind: "report", Note: "incident report generated by irctl report"}, []byte(md), evidence.Extra{})
				if err != nil {
					return fmt.Errorf("saving the report as evidence: %w", err)
				}
				saved = &e
			}
			if f.jsonOutput() {
				out := struct {
					*report.Report
					SavedAs *savedItem `json:"saved_as,omitempty"`
				}{Report: rep}
				if saved != nil {
					out.SavedAs = &savedItem{saved.Name, saved.SHA256}
				}
				return f.printJSONRedacted(out)
			}
			if file != "" {
				if err := os.WriteFile(file, []byte(md), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(f.io.ErrOut, "report written to %s\n", file)
			} else if err := f.showMarkdown(md); err != nil {
				return err
			}
			if saved != nil {
				fmt.Fprintf(f.io.ErrOut, "report saved as evidence %s (sha256 %s)\n", saved.Name, saved.SHA256[:12])
			}
			return nil
		},
	}
	addRunbookFlags(f, cmd)
	cmd.Flags().StringVar(&file, "file", "", "write the Markdown to `FILE` (0600) instead of stdout")
	cmd.Flags().BoolVar(&noSave, "no-save", false, "do not save this report as evidence")
	return cmd
}

type savedItem struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// printJSONRedacted prints v as JSON with known secrets redacted.
func (f *factory) printJSONRedacted(v any) error {
	var b strings.Builder
	out := f.io.Out
	f.io.Out = &b
	err := f.printJSON(v)
	f.io.Out = out
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(out, f.secrets.String(b.String()))
	return err
}

// showMarkdown prints md, styled by glamour when stdout is a terminal.
func (f *factory) showMarkdown(md string) error {
	out, ok := f.io.Out.(*os.File)
	if !ok || !term.IsTerminal(int(out.Fd())) {
		_, err := fmt.Fprint(f.io.Out, md)
		return err
	}
	width, _, err := term.GetSize(int(out.Fd()))
	if err != nil || width <= 0 {
		width = 100
	}
	// GLAMOUR_STYLE (dark, light, notty or a JSON style file) as glamour
	// documents it; by default the style follows the terminal's background.
	style := glamour.WithEnvironmentConfig()
	if os.Getenv("NO_COLOR") != "" {
		style = glamour.WithStandardStyle("notty")
	}
	r, err := glamour.NewTermRenderer(style, glamour.WithWordWrap(width))
	if err != nil {
		return err
	}
	s, err := r.Render(md)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(f.io.Out, s)
	return err
}

// dataCategories are the runbook's data_categories, nil when it declares
// none.
func (f *factory) dataCategories(rb *runbook.Runbook) ([]string, string, error) {
	if len(rb.DataCategories) == 0 {
		return nil, "", nil
	}
	return report.NormalizeCategories(rb.DataCategories), "the runbook's data_categories", nil
}
