// Package engine runs runbook phases and owns the whole step lifecycle: for
// each step it plans against the live servers, shows the plan, asks before
// anything destructive, applies under a deadline, and records intent and
// outcome (with whatever a failed or interrupted step changed) in the
// incident journal. Undo and resume read that journal here too, so confirm,
// dry run and journal have one code path.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/runbook"
)

// Prompter is what the engine needs to ask the operator; prompt.New's
// value is one, tests inject their own.
type Prompter interface {
	Confirm(ctx context.Context, title, detail string) (bool, error)
	// CanConfirm says whether anybody can be asked at all.
	CanConfirm() bool
}

// Journal is where the engine records intents and outcomes
// (*incident.Journal); tests inject one that fails.
type Journal interface {
	Append(incident.Record) (incident.Record, error)
}

// LockFunc takes the responder lock for a run that talks to servers and
// returns its release; the engine calls it once it knows the servers.
type LockFunc func(ctx context.Context, servers map[string]bool) (release func(), err error)

// DefaultStepTimeout is a step's deadline when neither the step nor its
// action sets one.
const DefaultStepTimeout = 10 * time.Minute

// Engine holds what running a phase needs.
type Engine struct {
	Registry *action.Registry
	Env      *action.Env
	Runbook  *runbook.Runbook
	Incident *incident.Incident
	Journal  Journal
	Prompter Prompter
	Yes      bool
	// AllowExternal lets external notices (customers, regulators, law
	// enforcement) go without asking; --yes alone does not.
	AllowExternal bool
	Operator      string
	// Out gets human-readable progress: stdout in text mode, io.Discard
	// with -o json. With Out discarded, a step that asks first shows its
	// plan on ErrOut, so nobody confirms targets they did not see.
	Out      io.Writer
	ErrOut   io.Writer
	JSONMode bool
	// Lock takes the responder lock; nil takes none (tests).
	Lock LockFunc
	// Bars, when set, gives each applying step a progress line (on a
	// terminal's stderr; the CLI leaves it nil otherwise).
	Bars func(label string) *progress.Bar
	// Reload loads the runbook again, reading the journal for params with
	// from: (runbook.Results); Run calls it before each phase of a
	// runbook that has such params, so a phase sees what earlier ones
	// recorded. Nil keeps the runbook as loaded.
	Reload func() (*runbook.Runbook, error)

	appended int        // records this process appended (the test kill hook counts them)
	secretMu sync.Mutex // guards Env.Secrets against AddSecrets
}

// StepReport is the outcome of one step, for -o json and tests.
type StepReport struct {
	Phase  string         `json:"phase"`
	Step   string         `json:"step"`
	Action string         `json:"action"`
	Where  string         `json:"where"`
	Status string         `json:"status"` // planned, noop, applied, dry-run, declined, drafted, failed, partial, interrupted, done-before
	Plan   *action.Plan   `json:"plan,omitempty"`
	Result *action.Result `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Expect is the step's expectation and Seen what its result measured
	// (see expect.go).
	Expect string `json:"expect,omitempty"`
	Seen   string `json:"seen,omitempty"`
}

// Report is what running one phase returns.
type Report struct {
	Incident string `json:"incident"`
	Runbook  string `json:"runbook"`
	Phase    string `json:"phase"`
	DryRun   string `json:"dry_run"`
	// Inputs are the params this phase's steps took from earlier steps'
	// recorded results.
	Inputs map[string]*runbook.Origin `json:"inputs,omitempty"`
	Steps  []StepReport               `json:"steps"`
	// Checks is a validate phase's pass/fail table.
	Checks []Check `json:"checks,omitempty"`
}

// Steps returns the steps of phase, or a usage error when the runbook has
// none, or when a step still needs params that were not --set.
func (e *Engine) Steps(phase string) ([]runbook.Step, error) {
	return e.steps(phase, nil)
}

// steps is Steps, letting a step wait for params that come from the
// results of phases in later (which run before it in this run).
func (e *Engine) steps(phase string, later map[string]bool) ([]runbook.Step, error) {
	steps := e.Runbook.Phases[phase]
	if len(steps) == 0 {
		return nil, exitcode.New(exitcode.Usage, "runbook %s (%s) has no steps for phase %s, so nothing was done (see `irctl runbook show` and `irctl actions`)", e.Runbook.Name, e.Runbook.File, phase)
	}
	for _, s := range steps {
		var needs []string
		for _, u := range s.Unresolved {
			org := e.Runbook.Origins[u]
			switch {
			case org == nil:
				needs = append(needs, "--set "+u+"=...")
			case later[org.Ref.Phase] || e.waitsInClientDryRun(s):
			default:
				needs = append(needs, fmt.Sprintf("%s, which comes from %s (%s): run phase %s first, or --set %s=...", u, org.From, org.Pending, org.Ref.Phase, u))
			}
		}
		if len(needs) > 0 {
			return nil, exitcode.New(exitcode.Usage, "%s: step %s needs %s", s.Where(e.Runbook), s.Name, strings.Join(needs, "; "))
		}
	}
	return steps, nil
}

// waitsInClientDryRun reports a step a client dry run shows without
// planning: every param it lacks comes from an earlier step's result,
// which a client dry run never records.
func (e *Engine) waitsInClientDryRun(s runbook.Step) bool {
	if e.Env.DryRun != action.DryRunClient || len(s.Unresolved) == 0 {
		return false
	}
	for _, u := range s.Unresolved {
		if e.Runbook.Origins[u] == nil {
			return false
		}
	}
	return true
}

// reload loads the runbook again before a phase when params come from
// earlier steps' results, and says which this phase uses.
func (e *Engine) reload(phase string, rep *Report) error {
	if e.Reload == nil || !e.Runbook.HasRefs() {
		return nil
	}
	rb, err := e.Reload()
	if err != nil {
		return err
	}
	if rb.Hash != e.Runbook.Hash {
		return exitcode.New(exitcode.Precondition, "runbook %s changed during the run; nothing more was run", e.Runbook.File)
	}
	e.Runbook = rb
	pinned := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(rb.Origins)) {
		org := rb.Origins[name]
		used := false
		for _, s := range rb.Phases[phase] {
			used = used || s.Uses(name)
		}
		if !used {
			continue
		}
		if rep.Inputs == nil {
			rep.Inputs = map[string]*runbook.Origin{}
		}
		rep.Inputs[name] = org
		if org.Pending == "" {
			pinned[name] = listText(rb.Values[name])
		}
	}
	// Pinned in the journal: a resume of this run uses these values, not
	// whatever a later rerun of the source step recorded.
	if len(pinned) > 0 && e.Env.DryRun != action.DryRunClient {
		var said []string
		for _, name := range slices.Sorted(maps.Keys(pinned)) {
			said = append(said, fmt.Sprintf("%s=%s from %s", name, pinned[name], rb.Origins[name].From))
		}
		return e.append(incident.Record{Kind: incident.KindInputs, Phase: phase, Runbook: rb.File, RunbookHash: rb.Hash, DryRun: string(e.Env.DryRun),
			Set: pinned, Result: "params from earlier results: " + strings.Join(said, "; ")})
	}
	return nil
}

// listText is a list param's value as --set takes it: comma-separated.
func listText(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return fmt.Sprint(v)
	}
	parts := make([]string, rv.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(rv.Index(i).Interface())
	}
	return strings.Join(parts, ",")
}

// Servers returns the servers (runbook.UsesKubernetes, UsesPostgres) the
// named actions talk to. The lock, the preflight and undo all ask this one
// function, so they cannot disagree about what a phase needs.
func Servers(c runbook.Catalog, actions []string) map[string]bool {
	uses := map[string]bool{}
	for _, name := range actions {
		if spec, ok := c.Spec(name); ok {
			for _, u := range spec.Uses {
				uses[u] = true
			}
		}
	}
	return uses
}

// StepActions lists the actions of steps, for Servers.
func StepActions(steps []runbook.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Action
	}
	return out
}

// acting leaves out the steps whose only_if is empty: they do nothing, so
// they use no server, need no permission and ask nothing.
func acting(steps []runbook.Step) []runbook.Step {
	var out []runbook.Step
	for _, s := range steps {
		if s.Skip == "" {
			out = append(out, s)
		}
	}
	return out
}

// Preflight runs before the first write of a phase: every server the
// steps use must answer (so an unreachable database cannot strand a phase
// half done), and every Kubernetes permission they declare must be granted.
// A client dry run writes nothing and checks only reachability.
func (e *Engine) Preflight(ctx context.Context, all []runbook.Step) error {
	steps := acting(all)
	uses := Servers(e.Registry, StepActions(steps))
	var perms []kube.Permission
	for _, s := range steps {
		a, _ := e.Registry.Get(s.Action)
		if pa, ok := a.(action.Permissioned); ok {
			perms = append(perms, pa.Permissions(s.Params)...)
		}
		if fa, ok := a.(action.FilePermissioned); ok {
			p, err := fa.PermissionsIn(e.Env, s.Params)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("%s: step %s: %w", s.Where(e.Runbook), s.Name, err))
			}
			perms = append(perms, p...)
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

// KillAfterRecordEnv names a test-only hook: with it set to N, the process
// kills itself (SIGKILL, no defers, no cleanup) right after appending its
// Nth journal record, to prove that `irctl resume` continues from any
// point of a run.
const KillAfterRecordEnv = "IRCTL_TEST_KILL_AFTER_RECORD"

// append journals r; a journal that cannot be written stops the run, so
// that nothing happens unrecorded.
func (e *Engine) append(r incident.Record) error {
	r.Incident, r.Operator = e.Incident.ID, e.Operator
	e.redactRecord(&r)
	if _, err := e.Journal.Append(r); err != nil {
		return journalError{fmt.Errorf("journal: %w; stopping so that nothing happens unrecorded", err)}
	}
	e.appended++
	if n, err := strconv.Atoi(os.Getenv(KillAfterRecordEnv)); err == nil && n == e.appended {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Kill()
			select {} // the kill is asynchronous; write nothing more meanwhile
		}
	}
	return nil
}

// record journals r for step s.
func (e *Engine) record(r incident.Record, s runbook.Step, a action.Action) error {
	r.Runbook, r.RunbookHash = e.Runbook.File, e.Runbook.Hash
	r.Phase, r.Step, r.Action = s.Phase, s.Name, s.Action
	r.DryRun = string(e.Env.DryRun)
	r.Params = s.Params.Display(a.Spec(), e.secrets().Secrets())
	return e.append(r)
}

func intp(n int) *int { return &n }
