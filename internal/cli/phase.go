package cli

import (
	"context"
	"encoding/json"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/engine"
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
func runPhases(ctx context.Context, f *factory, phases []string, skipEmpty bool) error {
	if err := f.readSetStdin(ctx, f.runbookPath); err != nil {
		return err
	}
	rb, err := f.loadRunbook(f.runbookPath)
	if err != nil {
		return err
	}
	command := "run"
	if !skipEmpty {
		command = phases[0]
	}
	return f.runEngine(ctx, rb, engine.RunOptions{
		Command: command, Phases: phases, SkipEmpty: skipEmpty,
		RunbookRef: f.runbookPath, Set: f.setValues(),
	})
}

// newEngine builds the engine for the incident named by the flags.
func (f *factory) newEngine(rb *runbook.Runbook) (*engine.Engine, error) {
	inc, err := f.openIncident()
	if err != nil {
		return nil, err
	}
	j, err := inc.Journal()
	if err != nil {
		return nil, err
	}
	env, err := f.env()
	if err != nil {
		return nil, err
	}
	out := f.secrets.Writer(f.io.Out)
	if f.jsonOutput() {
		out = io.Discard
	}
	eng := &engine.Engine{
		Registry: f.registry, Env: env, Runbook: rb, Incident: inc, Journal: j,
		Prompter: f.prompt(), Yes: f.yes, AllowExternal: f.allowExternal, Operator: incident.Operator(),
		Out: out, ErrOut: f.secrets.Writer(f.io.ErrOut), JSONMode: f.jsonOutput(),
		Bars: progress.Bars(f.io.ErrOut, f.jsonOutput()),
	}
	env.Secrets = f.secrets.Secrets()
	return eng, nil
}

// withLock sets the engine's lock: the responder lock, whose loss cancels
// the run with the loss (exit 5) as its cause.
func (f *factory) withLock(ctx context.Context, eng *engine.Engine) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	var once sync.Once
	stops := []func(){}
	eng.Lock = func(lctx context.Context, servers map[string]bool) (func(), error) {
		lk, err := f.lockIncident(lctx, servers)
		if err != nil {
			return nil, err
		}
		done := make(chan struct{})
		go func() {
			select {
			case <-lk.Lost():
				cancel(lk.Err())
			case <-done:
			}
		}()
		stop := func() { once.Do(func() { close(done) }); lk.Release() }
		stops = append(stops, stop)
		return stop, nil
	}
	return ctx, func() { cancel(nil) }
}

// runEngine runs o with the engine and prints the reports with -o json.
func (f *factory) runEngine(ctx context.Context, rb *runbook.Runbook, o engine.RunOptions) error {
	eng, err := f.newEngine(rb)
	if err != nil {
		return err
	}
	eng.Reload = func() (*runbook.Runbook, error) { return f.loadRunbook(o.RunbookRef) }
	ctx, done := f.withLock(ctx, eng)
	defer done()
	reports, runErr := eng.Run(ctx, o)
	if f.jsonOutput() {
		if reports == nil {
			reports = []*engine.Report{}
		}
		enc := json.NewEncoder(f.secrets.Writer(f.io.Out))
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	}
	return runErr
}
