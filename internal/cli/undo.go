package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/prompt"
	"irctl.dev/irctl/internal/runbook"
)

func newUndoCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "undo PHASE",
		Short: "Reverse what a phase changed, from the journal",
		Long: `Reverses, newest first, every change the journal records for PHASE that has
not been undone yet: labels go back to their previous values, policies are
restored or removed, nodes are uncordoned. Changes that cannot be reversed
(revoked keys, rotated secrets, evicted pods) are listed, not pretended.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: runbook.Phases,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !runbook.IsPhase(args[0]) {
				return usage("unknown phase %q", args[0])
			}
			return undoPhase(cmd.Context(), f, args[0])
		},
	}
	// undo reads the journal, not a runbook: no -f or --set.
	addConsentFlags(f, cmd)
	return cmd
}

func undoPhase(ctx context.Context, f *factory, phase string) (err error) {
	inc, err := f.openIncident()
	if err != nil {
		return err
	}
	recs, err := incident.ReadJournal(inc.JournalPath())
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
	undone := map[int]bool{}
	uses := map[string]bool{}
	for _, r := range recs {
		if r.Kind == incident.KindUndo && r.DryRun == string(action.DryRunNone) && r.Error == "" {
			undone[r.Undoes] = true
		}
		if spec, ok := f.registry.Spec(r.Action); ok && r.Phase == phase {
			for _, u := range spec.Uses {
				uses[u] = true
			}
		}
	}
	lk, err := f.lockIncident(ctx, uses)
	if err != nil {
		return err
	}
	defer lk.Release()
	ctx, stopWatch := lk.Context(ctx)
	defer stopWatch()
	defer func() {
		if lost := lk.Err(); lost != nil {
			err = lost
		}
	}()
	w := f.io.Out
	p := f.prompt()
	mode := ""
	if env.DryRun != action.DryRunNone {
		mode = fmt.Sprintf(" (%s dry run)", env.DryRun)
	}
	found := 0
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Phase != phase || r.Kind != incident.KindOutcome || r.DryRun != string(action.DryRunNone) || r.Error != "" || undone[r.Seq] {
			continue
		}
		found++
		if len(r.Undo) == 0 {
			fmt.Fprintf(w, "cannot undo %s (%s): %s\n", r.Step, r.Result, orDefault(r.Irreversible, "the step recorded nothing to reverse"))
			continue
		}
		a, ok := f.registry.Get(r.Action)
		u, canUndo := a.(action.Undoer)
		if !ok || !canUndo {
			fmt.Fprintf(w, "cannot undo %s: action %s has no undo\n", r.Step, r.Action)
			continue
		}
		// A step can be partly reversible (a drain: its nodes are
		// uncordoned, its evicted pods stay evicted): the undo runs, and
		// the rest is named, not pretended.
		notUndone := func() {
			if r.Irreversible != "" {
				fmt.Fprintf(w, "  not undone: %s\n", r.Irreversible)
			}
		}
		fmt.Fprintf(w, "undo %s (%s): was %q%s\n", r.Step, r.Action, r.Result, mode)
		if env.DryRun == action.DryRunClient {
			notUndone()
			continue
		}
		if env.DryRun == action.DryRunNone && !f.yes {
			ok, err := p.Confirm(fmt.Sprintf("Undo %s: %s?", r.Step, r.Result), "incident "+inc.ID)
			if errors.Is(err, prompt.ErrNoTerminal) {
				return exitcode.New(exitcode.Declined, "undo of %s needs confirmation and there is no terminal: rerun with --yes; nothing was changed", r.Step)
			}
			if err != nil {
				return err
			}
			if !ok {
				return exitcode.New(exitcode.Declined, "declined undo of %s; it and earlier steps were left as they are", r.Step)
			}
		}
		res, err := u.Undo(ctx, env, r.Undo)
		rec := incident.Record{Kind: incident.KindUndo, Incident: inc.ID, Operator: incident.Operator(), Phase: phase, Step: r.Step, Action: r.Action, DryRun: string(env.DryRun), Undoes: r.Seq}
		if err != nil {
			rec.Error = err.Error()
		} else {
			rec.Result, rec.Changed = res.Summary, &res.Changed
		}
		if _, jerr := j.Append(rec); jerr != nil {
			return jerr
		}
		if err != nil {
			return fmt.Errorf("undo %s: %w", r.Step, err)
		}
		fmt.Fprintf(w, "  done%s: %s\n", mode, res.Summary)
		for _, fl := range res.Failed {
			fmt.Fprintf(w, "  failed: %s: %s\n", fl.Target, fl.Error)
		}
		notUndone()
		if len(res.Failed) > 0 {
			return exitcode.New(exitcode.Partial, "undo %s: %d targets failed", r.Step, len(res.Failed))
		}
	}
	if found == 0 {
		fmt.Fprintf(w, "nothing to undo for phase %s in incident %s\n", phase, inc.ID)
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
