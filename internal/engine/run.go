package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/prompt"
	"irctl.dev/irctl/internal/runbook"
)

// StepKey names a step of a phase.
type StepKey struct{ Phase, Step string }

func keyOf(s runbook.Step) StepKey { return StepKey{s.Phase, s.Name} }

// RunOptions say what Run runs and what the journal should know about it.
type RunOptions struct {
	Command    string   // "run" or the phase, as typed
	Phases     []string // in order
	SkipEmpty  bool     // skip phases without steps (`irctl run`) instead of failing
	RunbookRef string   // the runbook as given with -f, so that resume can load it again
	Set        map[string]string

	// For a resume: the Seq of the run record it continues, the steps that
	// finished (with the Seq of the record that says so), and the steps
	// whose intent has no outcome.
	Resumes int
	Done    map[StepKey]int
	Replan  map[StepKey]bool
}

// redacted stands for a secret value in the journal.
const redacted = "[redacted]"

// Run runs the phases in order, stopping at the first one that does not
// finish (a phase with some failed targets lets the next one run). Before
// anything is written it refuses bad input (exit 2) and a run that would
// need to ask and cannot (exit 3); it then takes the lock for the servers
// the steps need, records what was asked (for resume), and runs each phase.
func (e *Engine) Run(ctx context.Context, o RunOptions) ([]*Report, error) {
	var pending []runbook.Step
	before := map[string]bool{}
	for _, ph := range o.Phases {
		if o.SkipEmpty && len(e.Runbook.Phases[ph]) == 0 {
			continue
		}
		// A phase without steps, or with a step that needs a --set, is
		// bad input: refused before anything is written. A param from
		// an earlier phase of this run is resolved when that phase ran.
		if _, err := e.steps(ph, before); err != nil {
			return nil, err
		}
		before[ph] = true
		for _, s := range e.Runbook.Phases[ph] {
			if _, done := o.Done[keyOf(s)]; !done {
				pending = append(pending, s)
			}
		}
	}
	if o.Resumes != 0 && len(pending) == 0 {
		e.printf("nothing to resume: every step of the last run (%s) is done\n", o.Command)
		return nil, nil
	}
	// Steps whose only_if is empty do nothing: they need no confirmation
	// and no server.
	if err := e.refuseWithoutTerminal(acting(pending)); err != nil {
		return nil, err
	}
	if e.Lock != nil {
		release, err := e.Lock(ctx, Servers(e.Registry, StepActions(acting(pending))))
		if err != nil {
			return nil, e.stopped(ctx, strings.Join(o.Phases, ", "), "locking", err)
		}
		defer release()
	}
	// Recorded once the lock is held: a run refused for the lock did
	// nothing, and resume must not take it for the last run.
	run := incident.Record{
		Kind: incident.KindRun, Command: o.Command, Phases: o.Phases, RunbookRef: o.RunbookRef,
		Runbook: e.Runbook.File, RunbookHash: e.Runbook.Hash, DryRun: string(e.Env.DryRun),
		Set: e.redactSet(o.Set), Resumes: o.Resumes,
	}
	if err := e.append(run); err != nil {
		return nil, err
	}
	var reports []*Report
	var runErr error
	for _, ph := range o.Phases {
		if o.SkipEmpty && len(e.Runbook.Phases[ph]) == 0 {
			e.printf("%s: runbook %s has no steps for this phase; skipped\n\n", ph, Clean(e.Runbook.Name))
			continue
		}
		rep, err := e.runPhase(ctx, ph, o)
		if rep != nil {
			reports = append(reports, rep)
		}
		if err != nil {
			runErr = err
			if exitcode.Code(err) != exitcode.Partial {
				break
			}
		}
		e.printf("\n")
	}
	return reports, runErr
}

// RunPhase runs one phase as a run of its own.
func (e *Engine) RunPhase(ctx context.Context, phase string) (*Report, error) {
	reps, err := e.Run(ctx, RunOptions{Command: phase, Phases: []string{phase}})
	if len(reps) == 0 {
		return &Report{Incident: e.Incident.ID, Runbook: e.Runbook.Name, Phase: phase, DryRun: string(e.Env.DryRun)}, err
	}
	return reps[0], err
}

// refuseWithoutTerminal fails a run with destructive steps that would have
// to ask when nobody can be asked, before its first step: half a phase
// (evidence written, pods labelled) and then a refusal helps nobody.
func (e *Engine) refuseWithoutTerminal(steps []runbook.Step) error {
	if e.Env.DryRun != action.DryRunNone || e.Yes || e.Prompter.CanConfirm() {
		return nil
	}
	var names []string
	for _, s := range steps {
		if spec, ok := e.Registry.Spec(s.Action); ok && (spec.Destructive || spec.Manual) {
			names = append(names, s.Phase+"/"+s.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return exitcode.New(exitcode.Declined, "destructive or manual step(s) %s need confirmation and there is no terminal to confirm on: rerun with --yes to apply, or --dry-run=server to rehearse; nothing was run", strings.Join(names, ", "))
}

// redactSet copies --set values for the journal with secret params'
// values replaced: a resume asks for them again.
func (e *Engine) redactSet(set map[string]string) map[string]string {
	if len(set) == 0 {
		return nil
	}
	secret := map[string]bool{}
	for _, p := range e.Runbook.Params {
		secret[p.Name] = p.Secret
	}
	out := make(map[string]string, len(set))
	for k, v := range set {
		if secret[k] {
			v = redacted
		}
		out[k] = v
	}
	return out
}

// stopped journals an interrupt that came outside any step (during the
// preflight or while locking) and makes it exit 130; other errors pass.
func (e *Engine) stopped(ctx context.Context, phase, stage string, err error) error {
	if ctx.Err() == nil {
		return err
	}
	ierr := exitcode.Wrap(interruptCode(ctx), fmt.Errorf("interrupted during %s of phase %s: %w; no step was run", stage, phase, context.Cause(ctx)))
	rec := incident.Record{Kind: incident.KindInterrupted, Phase: phase, Runbook: e.Runbook.File, RunbookHash: e.Runbook.Hash, DryRun: string(e.Env.DryRun), Error: ierr.Error()}
	if jerr := e.append(rec); jerr != nil {
		return exitcode.Wrap(interruptCode(ctx), fmt.Errorf("%w (and %v)", ierr, jerr))
	}
	return ierr
}

func (e *Engine) runPhase(ctx context.Context, phase string, o RunOptions) (*Report, error) {
	rep := &Report{Incident: e.Incident.ID, Runbook: e.Runbook.Name, Phase: phase, DryRun: string(e.Env.DryRun)}
	if err := e.reload(phase, rep); err != nil {
		return rep, err
	}
	steps, err := e.Steps(phase)
	if err != nil {
		return rep, err
	}
	e.printf("%s · runbook %s · incident %s%s\n", phase, Clean(e.Runbook.Name), e.Incident.ID, e.mode())
	e.printInputs(rep.Inputs)
	var todo []runbook.Step
	for _, s := range steps {
		if _, done := o.Done[keyOf(s)]; !done {
			todo = append(todo, s)
		}
	}
	if err := e.Preflight(ctx, todo); err != nil {
		return rep, e.stopped(ctx, phase, "preflight", err)
	}
	var partial, failed, drafted []string
	for i, s := range steps {
		e.printf("\n[%d/%d] %s (%s)\n", i+1, len(steps), Clean(s.Name), s.Action)
		if seq, done := o.Done[keyOf(s)]; done {
			e.printf("  done before (journal record %d); not repeated\n", seq)
			rep.Steps = append(rep.Steps, StepReport{Phase: s.Phase, Step: s.Name, Action: s.Action, Where: s.Where(e.Runbook), Status: "done-before"})
			continue
		}
		if e.waitsInClientDryRun(s) {
			e.printf("  waits for %s, from earlier steps' results (a client dry run records none); not planned\n", strings.Join(s.Unresolved, ", "))
			rep.Steps = append(rep.Steps, StepReport{Phase: s.Phase, Step: s.Name, Action: s.Action, Where: s.Where(e.Runbook), Status: "planned"})
			continue
		}
		if o.Replan[keyOf(s)] {
			e.printf("  the last run recorded its intent and no outcome: planning it again against the servers\n")
		}
		sr, err := e.runStep(ctx, s)
		rep.Steps = append(rep.Steps, sr)
		if err != nil && !keepChecking(ctx, phase, err) {
			return rep, err
		}
		if sr.Status == "drafted" || sr.Status == "declined" && sr.Plan != nil && sr.Plan.External {
			drafted = append(drafted, s.Name)
		}
		switch {
		case err != nil, sr.Status == "failed", sr.Status == "partial" && phase == runbook.PhaseValidate:
			failed = append(failed, s.Name)
		case sr.Status == "partial":
			partial = append(partial, s.Name)
		}
	}
	if err := e.endChecks(phase, rep, failed); err != nil {
		return rep, err
	}
	if len(partial) > 0 {
		return rep, exitcode.New(exitcode.Partial, "phase %s: some targets failed in step(s) %s", phase, strings.Join(partial, ", "))
	}
	if len(drafted) > 0 {
		return rep, exitcode.New(exitcode.Partial, "phase %s: external notice(s) %s drafted and saved as evidence, not sent: not confirmed (confirm on a terminal, or rerun with --allow-external)", phase, strings.Join(drafted, ", "))
	}
	return rep, nil
}

// interruptCode is the exit code of a run whose context was cancelled: the
// cause's own code when it carries one (a lost lock, say), else 130 (the
// cli turns that into 143 or 129 for SIGTERM or SIGHUP).
func interruptCode(ctx context.Context) int {
	var ce *exitcode.CodedError
	if errors.As(context.Cause(ctx), &ce) {
		return ce.Code
	}
	return exitcode.Interrupted
}

// deadline is the step's own timeout, else its action's, else the default.
func deadline(s runbook.Step, spec runbook.Spec) time.Duration {
	switch {
	case s.Timeout > 0:
		return s.Timeout
	case spec.Timeout > 0:
		return spec.Timeout
	}
	return DefaultStepTimeout
}

// fillResult copies what a step did into its journal record; undo data
// only when something really changed (not a dry run).
func (e *Engine) fillResult(r *incident.Record, res *action.Result) {
	r.Result, r.Changed, r.Irreversible = res.Summary, intp(res.Changed), res.Irreversible
	if len(res.Failed) > 0 {
		r.Failed, _ = json.Marshal(res.Failed)
	}
	if e.Env.DryRun == action.DryRunNone {
		r.Undo, r.Sent = res.Undo, res.Sent
	}
}

func (e *Engine) runStep(ctx context.Context, s runbook.Step) (StepReport, error) {
	a, _ := e.Registry.Get(s.Action)
	spec := a.Spec()
	sr := StepReport{Phase: s.Phase, Step: s.Name, Action: s.Action, Where: s.Where(e.Runbook)}
	limit := deadline(s, spec)
	// Planning and applying each get the deadline; the prompt between
	// them waits for a person and is not timed.
	timed := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, limit) }

	// fail records a step that did not finish, with whatever its Apply
	// changed before it stopped, so that undo can reverse it.
	fail := func(sctx context.Context, err error, res *action.Result) (StepReport, error) {
		rec := incident.Record{Kind: incident.KindOutcome}
		sr.Status = "failed"
		switch {
		case ctx.Err() != nil:
			sr.Status, rec.Kind = "interrupted", incident.KindInterrupted
			err = exitcode.Wrap(interruptCode(ctx), fmt.Errorf("interrupted during step %s: %w", s.Name, context.Cause(ctx)))
		case errors.Is(sctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("step %s exceeded its deadline of %s (%w); allow longer with `timeout:` on the step", s.Name, limit, err)
		}
		sr.Error, rec.Error = err.Error(), err.Error()
		if res != nil {
			sr.Result = res
			e.fillResult(&rec, res)
		}
		if jerr := e.record(rec, s, a); jerr != nil {
			return sr, jerr
		}
		e.printf("  error: %s\n", Clean(err.Error()))
		if res != nil && (res.Changed > 0 || res.Summary != "") {
			e.printStopped(s, res)
		}
		if exitcode.Code(err) == exitcode.Error {
			err = fmt.Errorf("step %s (%s): %w", s.Name, sr.Where, err)
		}
		return sr, err
	}

	var plan *action.Plan
	if s.Skip != "" {
		// only_if is empty: the action is not asked.
		plan = &action.Plan{Summary: s.SkipSummary(), Noop: true}
	} else {
		pctx, cancel := timed()
		var err error
		plan, err = a.Plan(pctx, e.stepEnv(s), s.Params)
		cancel()
		if err != nil {
			return fail(pctx, err, nil)
		}
	}
	sr.Plan = plan
	e.printPlan(e.Out, plan)
	e.printExpect(s, &sr)
	planRec := incident.Record{Plan: plan.Summary, PlanCount: intp(plan.Count)}

	if plan.Noop {
		sr.Status = "noop"
		e.printf("  nothing to change\n")
		planRec.Kind = incident.KindNoop
		return sr, e.record(planRec, s, a)
	}
	if e.Env.DryRun == action.DryRunClient {
		sr.Status = "planned"
		planRec.Kind = incident.KindPlanned
		return sr, e.record(planRec, s, a)
	}
	if spec.Manual {
		return e.runManual(ctx, s, a, plan, planRec, sr)
	}
	if plan.External {
		if ok, sr, err := e.externalNotice(ctx, s, a, plan, planRec, sr); !ok {
			return sr, err
		}
	} else if spec.Destructive && e.Env.DryRun == action.DryRunNone && !e.Yes {
		if ok, err := e.confirmStep(ctx, s, plan, &sr); !ok {
			planRec.Kind, planRec.Error = incident.KindDeclined, "declined by operator"
			if err != nil {
				if exitcode.Code(err) != exitcode.Declined {
					return fail(ctx, err, nil)
				}
				planRec.Error = err.Error()
			}
			if jerr := e.record(planRec, s, a); jerr != nil {
				return sr, jerr
			}
			if err == nil {
				e.printf("  declined: nothing was changed\n")
				err = exitcode.New(exitcode.Declined, "declined at step %s; nothing was changed", s.Name)
			}
			sr.Status, sr.Error = "declined", err.Error()
			return sr, err
		}
	}

	planRec.Kind = incident.KindIntent
	if err := e.record(planRec, s, a); err != nil {
		return sr, err
	}
	start := time.Now()
	actx, cancel := timed()
	defer cancel()
	env, doneProgress := e.applyEnv(s)
	res, err := a.Apply(actx, env, s.Params, plan)
	doneProgress()
	if err != nil {
		return fail(actx, err, res)
	}
	sr.Result = res
	out := incident.Record{Kind: incident.KindOutcome}
	e.fillResult(&out, res)
	sr.Status = "applied"
	if e.Env.DryRun == action.DryRunServer {
		sr.Status = "dry-run"
	}
	e.printf("  done%s: %s (%s)\n", e.mode(), Clean(res.Summary), time.Since(start).Round(time.Millisecond))
	if res.Table != nil {
		e.printTable(res.Table)
	}
	if len(res.Failed) > 0 {
		sr.Status = "partial"
		e.printFailures(res.Failed)
	}
	// A failed expectation is the step's outcome error; the phase goes on.
	if xerr := e.expectation(s, res, &sr); xerr != nil {
		out.Error = xerr.Error()
	}
	if err := e.record(out, s, a); err != nil {
		return sr, err
	}
	return sr, nil
}

// confirmStep asks before a destructive step. With human output discarded
// (-o json) the plan goes to ErrOut first: nobody confirms targets they
// have not seen. It returns false with a Declined error when nobody can be
// asked, false and nil when the operator said no.
func (e *Engine) confirmStep(ctx context.Context, s runbook.Step, plan *action.Plan, sr *StepReport) (bool, error) {
	if e.JSONMode && e.ErrOut != nil && e.Prompter.CanConfirm() {
		fmt.Fprintf(e.ErrOut, "%s (%s), %s\n", Clean(s.Name), s.Action, sr.Where)
		e.printPlan(e.ErrOut, plan)
	}
	ok, err := e.Prompter.Confirm(ctx, fmt.Sprintf("%s: %s?", Clean(s.Name), Clean(plan.Summary)), fmt.Sprintf("%s, runbook %s, incident %s", s.Action, sr.Where, e.Incident.ID))
	if errors.Is(err, prompt.ErrNoTerminal) {
		return false, exitcode.New(exitcode.Declined, "step %s is destructive and there is no terminal to confirm on: rerun with --yes to apply, or --dry-run=server to rehearse; nothing was changed", s.Name)
	}
	return ok && err == nil, err
}
