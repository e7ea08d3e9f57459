package engine

import (
	"context"
	"fmt"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// runManual runs a step a person does by hand. Its plan (the
// instructions) is already shown. A dry run only shows it; with --yes
// nobody is asked, so it is journaled as skipped, never as done; otherwise
// the operator confirms it is done (or declines, which stops the phase
// like a declined destructive step) and the journal records who and when.
func (e *Engine) runManual(ctx context.Context, s runbook.Step, a action.Action, plan *action.Plan, planRec incident.Record, sr StepReport) (StepReport, error) {
	switch {
	case e.Env.DryRun != action.DryRunNone:
		sr.Status, planRec.Kind = "planned", incident.KindPlanned
		e.printf("  done by hand; nobody is asked in a dry run\n")
		return sr, e.record(planRec, s, a)
	case e.Yes:
		sr.Status = "skipped"
		sr.Result = &action.Result{Summary: "skipped: --yes, so nobody confirmed it was done by hand"}
		// Its own kind, not an outcome: resume runs it again and the
		// incident's status does not count it done.
		rec := incident.Record{Kind: incident.KindSkipped, Plan: plan.Summary, Result: sr.Result.Summary}
		e.printf("  %s\n", sr.Result.Summary)
		return sr, e.record(rec, s, a)
	}
	ok, err := e.Prompter.Confirm(ctx, fmt.Sprintf("%s: done?", Clean(s.Name)), fmt.Sprintf("%s; say yes only once it is done (runbook %s, incident %s)", Clean(plan.Summary), sr.Where, e.Incident.ID))
	if err != nil || !ok {
		planRec.Kind, planRec.Error = incident.KindDeclined, "not confirmed by operator"
		if jerr := e.record(planRec, s, a); jerr != nil {
			return sr, jerr
		}
		if err != nil && ctx.Err() != nil {
			err = exitcode.Wrap(interruptCode(ctx), fmt.Errorf("interrupted during manual step %s: %w", s.Name, context.Cause(ctx)))
		} else if err != nil {
			err = exitcode.New(exitcode.Declined, "manual step %s was not confirmed (%v); nothing was recorded as done", s.Name, err)
		} else if err == nil {
			e.printf("  not confirmed: the phase stops here; run it again once it is done\n")
			err = exitcode.New(exitcode.Declined, "manual step %s was not confirmed done", s.Name)
		}
		sr.Status, sr.Error = "declined", err.Error()
		return sr, err
	}
	res, err := a.Apply(ctx, e.Env, s.Params, plan)
	if err != nil {
		return sr, err
	}
	res.Summary = fmt.Sprintf("confirmed done by %s at %s", e.Operator, now(e.Env).UTC().Format(time.RFC3339))
	sr.Status, sr.Result = "applied", res
	rec := incident.Record{Kind: incident.KindOutcome, Plan: plan.Summary}
	e.fillResult(&rec, res)
	e.printf("  %s\n", res.Summary)
	return sr, e.record(rec, s, a)
}

func now(env *action.Env) time.Time {
	if env.Now != nil {
		return env.Now()
	}
	return time.Now()
}
