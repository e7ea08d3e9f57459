package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/runbook"
)

var phaseHelp = map[string]string{
	"contain":   "Stop the damage: quarantine pods, isolate them, revoke keys and sessions",
	"assess":    "Learn the scope: audit queries, exfiltration scans",
	"preserve":  "Collect evidence before anything is destroyed",
	"eradicate": "Remove the threat: bad images, persistence, compromised credentials",
	"recover":   "Restore service and controls",
	"notify":    "Tell the people who must know",
	"validate":  "Check that the incident is over",
}

func newPhaseCmds(f *factory) []*cobra.Command {
	var cmds []*cobra.Command
	for _, phase := range runbook.Phases {
		cmd := &cobra.Command{
			Use:   phase,
			Short: phaseHelp[phase],
			Long: phaseHelp[phase] + `.

Runs the runbook's ` + phase + ` steps in order: each is planned against the live
servers and shown; destructive steps ask first (--yes without a terminal).`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runPhases(cmd.Context(), f, []string{phase}, false)
			},
		}
		addRunFlags(f, cmd)
		cmds = append(cmds, cmd)
	}
	return cmds
}

func newRunCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every phase of the runbook in order",
		Long:  "Runs contain, assess, preserve, eradicate, recover, notify and validate in order, skipping phases the runbook has no steps for, and stopping at the first phase that does not finish.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPhases(cmd.Context(), f, runbook.Phases, true)
		},
	}
	addRunFlags(f, cmd)
	return cmd
}

// runPhases loads the runbook and incident, then runs each phase. With
// skipEmpty, phases the runbook has no steps for are skipped with a note.
func runPhases(ctx context.Context, f *factory, phases []string, skipEmpty bool) (err error) {
	rb, err := f.loadRunbook(f.runbookPath)
	if err != nil {
		return err
	}
	inc, err := f.openIncident()
	if err != nil {
		return err
	}
	j, err := inc.Journal()
	if err != nil {
		return err
	}
	env, err := f.env()
	if err != nil {
		return err
	}
	lk, err := f.lockIncident(ctx, f.usesOf(rb, phases))
	if err != nil {
		return err
	}
	defer lk.Release()
	// Losing the lock stops the run like an interrupt, and is its exit.
	ctx, stopWatch := lk.Context(ctx)
	defer stopWatch()
	defer func() {
		if lost := lk.Err(); lost != nil {
			err = lost
		}
	}()
	out := f.io.Out
	if f.jsonOutput() {
		out = io.Discard
	}
	env.Secrets = rb.Secrets
	eng := &engine.Engine{
		Registry: f.registry, Env: env, Runbook: rb, Incident: inc, Journal: j,
		Prompter: f.prompt(), Yes: f.yes, Operator: incident.Operator(), Out: out,
		Bars: progress.Bars(f.io.ErrOut, f.jsonOutput()),
	}
	var reports []*engine.Report
	var runErr error
	for _, ph := range phases {
		if skipEmpty && len(rb.Phases[ph]) == 0 {
			fmt.Fprintf(out, "%s: runbook %s has no steps for this phase; skipped\n\n", ph, rb.Name)
			continue
		}
		rep, err := eng.RunPhase(ctx, ph)
		reports = append(reports, rep)
		if err != nil {
			runErr = err
			if exitcode.Code(err) != exitcode.Partial {
				break
			}
		}
		fmt.Fprintln(out)
	}
	if f.jsonOutput() {
		enc := json.NewEncoder(f.io.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	}
	return runErr
}
