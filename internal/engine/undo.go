package engine

import (
	"context"
	"fmt"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

// undoKey matches an undo record to the record it reversed. Seq alone would
// do in a well-formed journal; the step and action guard against a journal
// where two writers once numbered records alike.
type undoKey struct {
	seq          int
	step, action string
}

// undoable reports whether r records a change undo should look at: a
// finished outcome, or any outcome or interruption that recorded undo data
// or an irreversible change (a step that stopped halfway).
func undoable(r incident.Record, phase string) bool {
	if r.Phase != phase || r.DryRun != string(action.DryRunNone) {
		return false
	}
	switch r.Kind {
	case incident.KindOutcome:
		return r.Error == "" || len(r.Undo) > 0 || r.Irreversible != ""
	case incident.KindInterrupted:
		return len(r.Undo) > 0 || r.Irreversible != ""
	}
	return false
}

// undone reports the changes already reversed: an undo that failed or left
// targets behind (partial) does not count, so the next undo tries again.
func undone(recs []incident.Record) map[undoKey]bool {
	m := map[undoKey]bool{}
	for _, r := range recs {
		if r.Kind == incident.KindUndo && r.DryRun == string(action.DryRunNone) && r.Error == "" && len(r.Failed) == 0 {
			m[undoKey{r.Undoes, r.Step, r.Action}] = true
		}
	}
	return m
}

// Undo reverses, newest first, every change the journal records for phase
// that has not been undone yet, with the same confirm, dry-run and journal
// rules as a run. Changes that cannot be reversed are named, not pretended.
func (e *Engine) Undo(ctx context.Context, phase string) error {
	recs, err := incident.ReadJournal(e.Incident.JournalPath())
	if err != nil {
		return err
	}
	done := undone(recs)
	var todo []incident.Record
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if undoable(r, phase) && !done[undoKey{r.Seq, r.Step, r.Action}] {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		e.printf("nothing to undo for phase %s in incident %s\n", phase, e.Incident.ID)
		return nil
	}
	var actions []string
	needsAsk := false
	for _, r := range todo {
		actions = append(actions, r.Action)
		needsAsk = needsAsk || len(r.Undo) > 0
	}
	if needsAsk && e.Env.DryRun == action.DryRunNone && !e.Yes && !e.Prompter.CanConfirm() {
		return exitcode.New(exitcode.Declined, "undo of phase %s needs confirmation and there is no terminal: rerun with --yes; nothing was changed", phase)
	}
	if e.Lock != nil {
		release, err := e.Lock(ctx, Servers(e.Registry, actions))
		if err != nil {
			if ctx.Err() != nil {
				return exitcode.Wrap(interruptCode(ctx), fmt.Errorf("interrupted while locking for undo of phase %s: %w; nothing was changed", phase, context.Cause(ctx)))
			}
			return err
		}
		defer release()
	}
	for _, r := range todo {
		if err := e.undoOne(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) undoOne(ctx context.Context, r incident.Record) error {
	// A step can be partly reversible (a drain: its nodes are uncordoned,
	// its evicted pods stay evicted): the undo runs, and the rest is named.
	notUndone := func() {
		if r.Irreversible != "" {
			e.printf("  not undone: %s\n", Clean(r.Irreversible))
		}
	}
	if len(r.Undo) == 0 {
		why := r.Irreversible
		if why == "" {
			why = "the step recorded nothing to reverse"
		}
		e.printf("cannot undo %s (%s): %s\n", Clean(r.Step), Clean(r.Result), Clean(why))
		return nil
	}
	a, ok := e.Registry.Get(r.Action)
	u, canUndo := a.(action.Undoer)
	if !ok || !canUndo {
		e.printf("cannot undo %s: action %s has no undo\n", Clean(r.Step), Clean(r.Action))
		return nil
	}
	e.printf("undo %s (%s): was %q%s\n", Clean(r.Step), r.Action, Clean(r.Result), e.mode())
	if e.Env.DryRun == action.DryRunClient {
		notUndone()
		return nil
	}
	if e.Env.DryRun == action.DryRunNone && !e.Yes {
		ok, err := e.Prompter.Confirm(ctx, fmt.Sprintf("Undo %s: %s?", Clean(r.Step), Clean(r.Result)), "incident "+e.Incident.ID)
		if err != nil {
			code := exitcode.Declined
			if ctx.Err() != nil {
				code = interruptCode(ctx)
			}
			return exitcode.Wrap(code, fmt.Errorf("undo of %s: %w; nothing more was changed", r.Step, err))
		}
		if !ok {
			return exitcode.New(exitcode.Declined, "declined undo of %s; it and earlier steps were left as they are", r.Step)
		}
	}
	res, err := u.Undo(ctx, e.Env, r.Undo)
	rec := incident.Record{
		Kind: incident.KindUndo, Phase: r.Phase, Step: r.Step, Action: r.Action, Runbook: r.Runbook, RunbookHash: r.RunbookHash,
		DryRun: string(e.Env.DryRun), Undoes: r.Seq,
	}
	if res != nil {
		e.fillResult(&rec, res)
		rec.Undo, rec.Irreversible = nil, ""
	}
	if err != nil {
		if ctx.Err() != nil {
			err = exitcode.Wrap(interruptCode(ctx), fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		}
		rec.Error = err.Error()
	}
	if jerr := e.append(rec); jerr != nil {
		return jerr
	}
	if err != nil {
		if res != nil && res.Changed > 0 {
			e.printf("  reversed before it stopped: %s; the next `irctl undo %s` tries the rest\n", Clean(res.Summary), r.Phase)
		}
		return fmt.Errorf("undo %s: %w", r.Step, err)
	}
	e.printf("  done%s: %s\n", e.mode(), Clean(res.Summary))
	e.printFailures(res.Failed)
	notUndone()
	if len(res.Failed) > 0 {
		return exitcode.New(exitcode.Partial, "undo %s: %d targets failed; recorded as partial, the next `irctl undo %s` tries again", r.Step, len(res.Failed), r.Phase)
	}
	return nil
}
