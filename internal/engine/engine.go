// Package engine runs a runbook phase: for each step it plans against the
// live servers, shows the plan, asks before anything destructive, applies,
// and records intent and outcome in the incident journal.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/prompt"
	"irctl.dev/irctl/internal/runbook"
)

// Engine holds what running a phase needs.
type Engine struct {
	Registry *action.Registry
	Env      *action.Env
	Runbook  *runbook.Runbook
	Incident *incident.Incident
	Journal  *incident.Journal
	Prompter prompt.Prompter
	Yes      bool
	Operator string
	Out      io.Writer // human-readable progress (stdout in text mode, discarded in json mode)
	// Bars, when set, gives each applying step a progress line (on a
	// terminal's stderr; the CLI leaves it nil otherwise).
	Bars func(label string) *progress.Bar
}

// StepReport is the outcome of one step, for -o json and tests.
type StepReport struct {
	Phase  string         `json:"phase"`
	Step   string         `json:"step"`
	Action string         `json:"action"`
	Where  string         `json:"where"`
	Status string         `json:"status"` // planned, noop, applied, dry-run, declined, failed, partial, interrupted
	Plan   *action.Plan   `json:"plan,omitempty"`
	Result *action.Result `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Report is what RunPhase returns.
type Report struct {
	Incident string       `json:"incident"`
	Runbook  string       `json:"runbook"`
	Phase    string       `json:"phase"`
	DryRun   string       `json:"dry_run"`
	Steps    []StepReport `json:"steps"`
}

func (e *Engine) mode() string {
	switch e.Env.DryRun {
	case action.DryRunClient:
		return " (dry run)"
	case action.DryRunServer:
		return " (server dry run)"
	}
	return ""
}

func (e *Engine) printf(format string, args ...any) {
	fmt.Fprintf(e.Out, format, args...)
}

// maxTableRows bounds the rows of a result table shown in text mode; the
// whole result is in the evidence (and -o json carries what the action kept).
const maxTableRows = 50

func (e *Engine) printTable(t *action.Table) {
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	line := func(row []string) {
		cells := make([]string, len(row))
		for j, c := range row {
			cells[j] = cleanCell(c)
		}
		fmt.Fprintf(tw, "    %s\n", strings.Join(cells, "\t"))
	}
	line(t.Columns)
	for i, row := range t.Rows {
		if i == maxTableRows {
			break
		}
		line(row)
	}
	tw.Flush()
	if total := max(t.Total, len(t.Rows)); total > maxTableRows {
		e.printf("    ... %d more rows not shown\n", total-maxTableRows)
	}
}

// cleanCell puts a cell on one line and escapes control characters: the
// values come from systems under attack (a user agent can carry terminal
// escape sequences).
func cleanCell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Steps returns the steps of phase, or a usage error when the runbook has
// none, or when a step still needs params that were not --set.
func (e *Engine) Steps(phase string) ([]runbook.Step, error) {
	steps := e.Runbook.Phases[phase]
	if len(steps) == 0 {
		return nil, exitcode.New(exitcode.Usage, "runbook %s (%s) has no steps for phase %s, so nothing was done (see `irctl runbook show` and `irctl actions`)", e.Runbook.Name, e.Runbook.File, phase)
	}
	for _, s := range steps {
		if len(s.Unresolved) > 0 {
			sets := make([]string, len(s.Unresolved))
			for i, u := range s.Unresolved {
				sets[i] = "--set " + u + "=..."
			}
			return nil, exitcode.New(exitcode.Usage, "%s: step %s needs %s", s.Where(e.Runbook), s.Name, strings.Join(sets, " "))
		}
	}
	return steps, nil
}

// Preflight runs before the first write of a phase: every server the
// steps use must answer (so an unreachable database cannot strand a phase
// half done), and every Kubernetes permission they declare must be granted.
// A client dry run writes nothing and checks only reachability.
func (e *Engine) Preflight(ctx context.Context, steps []runbook.Step) error {
	uses := map[string]bool{}
	var perms []kube.Permission
	for _, s := range steps {
		a, _ := e.Registry.Get(s.Action)
		for _, u := range a.Spec().Uses {
			uses[u] = true
		}
		if pa, ok := a.(action.Permissioned); ok {
			perms = append(perms, pa.Permissions(s.Params)...)
		}
	}
	if uses[runbook.UsesPostgres] {
		if _, err := e.Env.DB(ctx); err != nil {
			return err
		}
	}
	if !uses[runbook.UsesKubernetes] {
		return nil
	}
	clients, err := e.Env.Kube()
	if err != nil {
		return err
	}
	if e.Env.DryRun == action.DryRunClient || len(perms) == 0 {
		return nil
	}
	if err := clients.Preflight(ctx, perms); err != nil {
		var denied *kube.Denied
		if errors.As(err, &denied) {
			return exitcode.Wrap(exitcode.Precondition, fmt.Errorf("%w; nothing was changed (see %s for the role irctl needs)", err, kube.RoleFile))
		}
		return err
	}
	return nil
}

// RunPhase runs every step of phase in order. It stops at the first step
// that fails, is declined or is interrupted; a step with some failed targets
// lets the phase continue and makes the final error exit code 4.
func (e *Engine) RunPhase(ctx context.Context, phase string) (*Report, error) {
	rep := &Report{Incident: e.Incident.ID, Runbook: e.Runbook.Name, Phase: phase, DryRun: string(e.Env.DryRun)}
	steps, err := e.Steps(phase)
	if err != nil {
		return rep, err
	}
	e.printf("%s · runbook %s · incident %s%s\n", phase, e.Runbook.Name, e.Incident.ID, e.mode())
	if err := e.Preflight(ctx, steps); err != nil {
		return rep, err
	}
	var partial []string
	for i, s := range steps {
		e.printf("\n[%d/%d] %s (%s)\n", i+1, len(steps), s.Name, s.Action)
		sr, err := e.runStep(ctx, s)
		rep.Steps = append(rep.Steps, sr)
		if err != nil {
			return rep, err
		}
		if sr.Status == "partial" {
			partial = append(partial, s.Name)
		}
	}
	if len(partial) > 0 {
		return rep, exitcode.New(exitcode.Partial, "phase %s: some targets failed in step(s) %s", phase, strings.Join(partial, ", "))
	}
	return rep, nil
}

func (e *Engine) record(r incident.Record, s runbook.Step, a action.Action) error {
	r.Incident, r.Operator = e.Incident.ID, e.Operator
	r.Runbook, r.RunbookHash = e.Runbook.File, e.Runbook.Hash
	r.Phase, r.Step, r.Action = s.Phase, s.Name, s.Action
	r.DryRun = string(e.Env.DryRun)
	r.Params = s.Params.Display(a.Spec(), e.Runbook.Secrets)
	_, err := e.Journal.Append(r)
	if err != nil {
		return fmt.Errorf("journal: %w; stopping so that nothing happens unrecorded", err)
	}
	return nil
}

func intp(n int) *int { return &n }

func (e *Engine) runStep(ctx context.Context, s runbook.Step) (StepReport, error) {
	a, _ := e.Registry.Get(s.Action)
	spec := a.Spec()
	sr := StepReport{Phase: s.Phase, Step: s.Name, Action: s.Action, Where: s.Where(e.Runbook)}
	fail := func(kind string, err error) (StepReport, error) {
		sr.Status, sr.Error = "failed", err.Error()
		if ctx.Err() != nil {
			sr.Status, kind = "interrupted", incident.KindInterrupted
			err = exitcode.Wrap(exitcode.Interrupted, fmt.Errorf("interrupted during step %s: %w", s.Name, context.Cause(ctx)))
		}
		if jerr := e.record(incident.Record{Kind: kind, Error: err.Error()}, s, a); jerr != nil {
			return sr, jerr
		}
		e.printf("  error: %s\n", err)
		if exitcode.Code(err) == exitcode.Error {
			err = fmt.Errorf("step %s (%s): %w", s.Name, sr.Where, err)
		}
		return sr, err
	}

	plan, err := a.Plan(ctx, e.Env, s.Params)
	if err != nil {
		return fail(incident.KindOutcome, err)
	}
	sr.Plan = plan
	e.printf("  plan%s: %s\n", e.mode(), plan.Summary)
	for _, t := range plan.Targets {
		e.printf("    %s\n", t)
	}
	for _, w := range plan.Warnings {
		e.printf("  warning: %s\n", w)
	}
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
	if spec.Destructive && e.Env.DryRun == action.DryRunNone && !e.Yes {
		ok, err := e.Prompter.Confirm(fmt.Sprintf("%s: %s?", s.Name, plan.Summary), fmt.Sprintf("%s, runbook %s, incident %s", s.Action, sr.Where, e.Incident.ID))
		if errors.Is(err, prompt.ErrNoTerminal) {
			err = exitcode.New(exitcode.Declined, "step %s is destructive and there is no terminal to confirm on: rerun with --yes to apply, or --dry-run=server to rehearse; nothing was changed", s.Name)
			sr.Status, sr.Error = "declined", err.Error()
			planRec.Kind, planRec.Error = incident.KindDeclined, err.Error()
			if jerr := e.record(planRec, s, a); jerr != nil {
				return sr, jerr
			}
			return sr, err
		}
		if err != nil {
			return fail(incident.KindOutcome, err)
		}
		if !ok {
			sr.Status = "declined"
			planRec.Kind, planRec.Error = incident.KindDeclined, "declined by operator"
			if jerr := e.record(planRec, s, a); jerr != nil {
				return sr, jerr
			}
			e.printf("  declined: nothing was changed\n")
			return sr, exitcode.New(exitcode.Declined, "declined at step %s; nothing was changed", s.Name)
		}
	}

	planRec.Kind = incident.KindIntent
	if err := e.record(planRec, s, a); err != nil {
		return sr, err
	}
	start := time.Now()
	env, doneProgress := e.applyEnv(s)
	res, err := a.Apply(ctx, env, s.Params, plan)
	doneProgress()
	if err != nil {
		return fail(incident.KindOutcome, err)
	}
	sr.Result = res
	failed, _ := json.Marshal(res.Failed)
	if len(res.Failed) == 0 {
		failed = nil
	}
	out := incident.Record{Kind: incident.KindOutcome, Result: res.Summary, Changed: intp(res.Changed), Failed: failed, Irreversible: res.Irreversible}
	if e.Env.DryRun == action.DryRunNone {
		out.Undo = res.Undo
	}
	if err := e.record(out, s, a); err != nil {
		return sr, err
	}
	sr.Status = "applied"
	if e.Env.DryRun == action.DryRunServer {
		sr.Status = "dry-run"
	}
	e.printf("  done%s: %s (%s)\n", e.mode(), res.Summary, time.Since(start).Round(time.Millisecond))
	if res.Table != nil {
		e.printTable(res.Table)
	}
	if len(res.Failed) > 0 {
		sr.Status = "partial"
		for _, f := range res.Failed {
			e.printf("  failed: %s: %s\n", f.Target, f.Error)
		}
	}
	return sr, nil
}
