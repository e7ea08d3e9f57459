package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// fakeAction is an action whose Plan and Apply the test scripts; it counts
// what the engine called, so tests can prove what did not happen.
type fakeAction struct {
	name        string
	destructive bool
	plan        func(ctx context.Context) (*action.Plan, error)
	apply       func(ctx context.Context) (*action.Result, error)
	undo        func(ctx context.Context, data json.RawMessage) (*action.Result, error)

	planned, applied, undone int
	undoData                 []json.RawMessage
}

func (a *fakeAction) Spec() runbook.Spec {
	return runbook.Spec{Name: a.name, Destructive: a.destructive, Params: []runbook.ParamDef{{Name: "target", Type: runbook.String}}}
}

func (a *fakeAction) Plan(ctx context.Context, _ *action.Env, _ runbook.Params) (*action.Plan, error) {
	a.planned++
	if a.plan != nil {
		return a.plan(ctx)
	}
	return &action.Plan{Summary: "change 2 things", Targets: []string{"a", "b"}, Count: 2}, nil
}

func (a *fakeAction) Apply(ctx context.Context, _ *action.Env, _ runbook.Params, _ *action.Plan) (*action.Result, error) {
	a.applied++
	if a.apply != nil {
		return a.apply(ctx)
	}
	return &action.Result{Summary: "changed 2 things", Changed: 2, Undo: json.RawMessage(`{"was":["a","b"]}`)}, nil
}

func (a *fakeAction) Undo(ctx context.Context, _ *action.Env, data json.RawMessage) (*action.Result, error) {
	a.undone++
	a.undoData = append(a.undoData, data)
	if a.undo != nil {
		return a.undo(ctx, data)
	}
	return &action.Result{Summary: "reversed", Changed: 2}, nil
}

// fakePrompter answers every question with answer, or cannot ask at all.
type fakePrompter struct {
	terminal bool
	answer   bool
	asked    []string
	// seen, when set, is called at each question (to look at what was
	// shown before it).
	seen func()
}

func (p *fakePrompter) CanConfirm() bool { return p.terminal }
func (p *fakePrompter) Confirm(_ context.Context, title, _ string) (bool, error) {
	p.asked = append(p.asked, title)
	if p.seen != nil {
		p.seen()
	}
	if !p.terminal {
		return false, errors.New("no terminal to confirm on")
	}
	return p.answer, nil
}

// failingJournal passes the first ok appends to the real journal and
// fails the rest, like a full disk.
type failingJournal struct {
	real Journal
	ok   int
}

func (j *failingJournal) Append(r incident.Record) (incident.Record, error) {
	if j.ok == 0 {
		return r, errors.New("write journal.jsonl: no space left on device")
	}
	j.ok--
	return j.real.Append(r)
}

type rig struct {
	t   *testing.T
	eng *Engine
	out *bytes.Buffer
	inc *incident.Incident
	p   *fakePrompter
}

// newRig builds an engine over the given actions, one step each in the
// contain phase, in an incident of its own; no server is involved.
func newRig(t *testing.T, actions ...*fakeAction) *rig {
	t.Helper()
	inc, err := incident.Declare(t.TempDir(), "P1", "engine test", "tester", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	var as []action.Action
	rb := &runbook.Runbook{Name: "fake", File: "fake.yaml", Hash: "abc", Phases: map[string][]runbook.Step{}}
	for i, a := range actions {
		as = append(as, a)
		rb.Phases["contain"] = append(rb.Phases["contain"], runbook.Step{Phase: "contain", Name: a.name, Action: a.name, Line: 10 + i, Params: a.Spec().MustBind(map[string]any{"target": "x"})})
	}
	out := &bytes.Buffer{}
	p := &fakePrompter{terminal: true, answer: true}
	eng := &Engine{
		Registry: action.NewRegistry(as...), Env: &action.Env{DryRun: action.DryRunNone},
		Runbook: rb, Incident: inc, Journal: j, Prompter: p, Operator: "tester", Out: out, ErrOut: io.Discard,
	}
	return &rig{t: t, eng: eng, out: out, inc: inc, p: p}
}

func (r *rig) journal() []incident.Record {
	r.t.Helper()
	recs, err := incident.ReadJournal(r.inc.JournalPath())
	if err != nil {
		r.t.Fatal(err)
	}
	return recs
}

// kinds lists the kinds of the journal's records for step.
func (r *rig) kinds(step string) []string {
	var out []string
	for _, rec := range r.journal() {
		if rec.Step == step {
			out = append(out, rec.Kind)
		}
	}
	return out
}

func (r *rig) last() incident.Record {
	recs := r.journal()
	if len(recs) == 0 {
		r.t.Fatal("empty journal")
	}
	return recs[len(recs)-1]
}
