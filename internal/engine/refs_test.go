package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// queryAction stands for sql.query: it commits its rows as JSON lines.
type queryAction struct {
	rows string
	noop bool // nothing to query (an empty only_if)
}

func (queryAction) Spec() runbook.Spec {
	return runbook.Spec{Name: "test.query", Params: []runbook.ParamDef{{Name: "name", Type: runbook.String}}}
}
func (q queryAction) Plan(context.Context, *action.Env, runbook.Params) (*action.Plan, error) {
	if q.noop {
		return &action.Plan{Summary: "query: skipped: no addresses given", Noop: true}, nil
	}
	return &action.Plan{Summary: "query", Count: 0}, nil
}
func (q queryAction) Apply(_ context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	st, err := env.Evidence()
	if err != nil {
		return nil, err
	}
	if _, err := st.WriteFile(p.String("name")+".jsonl", evidence.Source{Kind: "sql"}, []byte(q.rows), evidence.Extra{}); err != nil {
		return nil, err
	}
	return &action.Result{Summary: "rows saved"}, nil
}

// disableAction records the ids it was given.
type disableAction struct{ got *[]int64 }

func (disableAction) Spec() runbook.Spec {
	return runbook.Spec{Name: "test.disable", Params: []runbook.ParamDef{{Name: "ids", Type: runbook.Ints}}}
}
func (disableAction) Plan(_ context.Context, _ *action.Env, p runbook.Params) (*action.Plan, error) {
	return &action.Plan{Summary: fmt.Sprintf("disable %v", p.Ints("ids")), Count: len(p.Ints("ids"))}, nil
}
func (d disableAction) Apply(_ context.Context, _ *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	*d.got = p.Ints("ids")
	return &action.Result{Summary: "disabled", Changed: len(p.Ints("ids"))}, nil
}

const refsRunbook = `apiVersion: irctl/v1
kind: Runbook
name: refs
params:
  ids:
    type: ints
    from: {step: assess/accounts, column: user_id}
phases:
  assess:
    - name: accounts
      action: test.query
      with: {name: accounts}
  eradicate:
    - name: disable
      action: test.disable
      with: {ids: "{{ .ids }}"}
`

type refsRig struct {
	eng  *Engine
	inc  *incident.Incident
	out  *bytes.Buffer
	got  []int64
	load func(set map[string]string) (*runbook.Runbook, error)
}

func newRefsRig(t *testing.T, rows, doc string) *refsRig {
	return newRefsRigQ(t, queryAction{rows: rows}, doc)
}

func newRefsRigQ(t *testing.T, q queryAction, doc string) *refsRig {
	t.Helper()
	inc, err := incident.Declare(t.TempDir(), "P1", "refs test", "tester", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	r := &refsRig{inc: inc, out: &bytes.Buffer{}}
	reg := action.NewRegistry(q, disableAction{got: &r.got})
	r.load = func(set map[string]string) (*runbook.Runbook, error) {
		return runbook.Load("refs.yaml", []byte(doc), runbook.Options{Catalog: reg, Set: set, Results: JournalResults{Dir: inc.Dir()}})
	}
	rb, err := r.load(nil)
	if err != nil {
		t.Fatal(err)
	}
	var store *evidence.Store
	env := &action.Env{DryRun: action.DryRunNone, Evidence: func() (*evidence.Store, error) {
		if store == nil {
			s, err := evidence.Open(inc.Dir(), evidence.Meta{Operator: "tester"})
			if err != nil {
				return nil, err
			}
			store = s
		}
		return store, nil
	}}
	r.eng = &Engine{Registry: reg, Env: env, Runbook: rb, Incident: inc, Journal: j,
		Prompter: &fakePrompter{terminal: true, answer: true}, Operator: "tester", Out: r.out, ErrOut: io.Discard,
		Reload: func() (*runbook.Runbook, error) { return r.load(nil) }}
	return r
}

func TestParamFromEarlierStepResolvedFromJournalBetweenPhases(t *testing.T) {
	r := newRefsRig(t, `{"user_id":7,"ip":"203.0.113.5"}
{"user_id":13,"ip":"203.0.113.5"}
{"user_id":7,"ip":"203.0.113.9"}
{"user_id":null,"ip":"203.0.113.9"}
`, refsRunbook)
	// Before assess ran, eradicate alone is refused, saying where the
	// value would come from; nothing is journaled.
	_, err := r.eng.RunPhase(context.Background(), "eradicate")
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "ids, which comes from assess/accounts.user_id") || !strings.Contains(err.Error(), "run phase assess first") {
		t.Fatalf("eradicate before assess: %v", err)
	}
	// One run of both phases: the up-front check lets eradicate wait for
	// assess, and the reload before eradicate reads what assess saved.
	reps, err := r.eng.Run(context.Background(), RunOptions{Command: "run", Phases: []string{"assess", "eradicate"}})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, r.out)
	}
	if fmt.Sprint(r.got) != "[7 13]" {
		t.Fatalf("disable got %v, want [7 13] (distinct, in order, nulls dropped)", r.got)
	}
	in := reps[1].Inputs["ids"]
	if in == nil || in.Values != 2 || !strings.Contains(in.Source, "accounts.jsonl") {
		t.Fatalf("eradicate inputs: %+v", reps[1].Inputs)
	}
	if !strings.Contains(r.out.String(), "ids = [7 13]: 2 value(s) from assess/accounts.user_id") {
		t.Fatalf("the plan does not show where ids came from:\n%s", r.out)
	}
	// --set wins over the journal.
	rb, err := r.load(map[string]string{"ids": "21"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rb.Values["ids"]) != "[21]" {
		t.Fatalf("--set ids=21 gave %v", rb.Values["ids"])
	}
}

func TestParamFromResultRefusesTamperedEvidence(t *testing.T) {
	r := newRefsRig(t, "{\"user_id\":7}\n", refsRunbook)
	if _, err := r.eng.RunPhase(context.Background(), "assess"); err != nil {
		t.Fatal(err)
	}
	p := evidence.Dir(r.inc.Dir()) + "/accounts.jsonl"
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("{\"user_id\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := r.load(nil)
	if err == nil || !strings.Contains(err.Error(), "does not match its manifest entry") {
		t.Fatalf("tampered evidence was used: %v", err)
	}
}

func TestParamFromLoadErrors(t *testing.T) {
	reg := action.NewRegistry(queryAction{}, disableAction{got: new([]int64)})
	cases := map[string]string{
		"missing step":  strings.Replace(refsRunbook, "assess/accounts", "assess/acounts", 1),
		"same phase":    strings.Replace(refsRunbook, "  eradicate:\n", "", 1),
		"scalar type":   strings.Replace(refsRunbook, "type: ints", "type: int", 1),
		"with default":  strings.Replace(refsRunbook, "type: ints\n", "type: ints\n    default: []\n", 1),
		"bad step form": strings.Replace(refsRunbook, "assess/accounts", "accounts", 1),
	}
	want := map[string]string{
		"missing step":  `refs.yaml:7: param ids: from.step assess/acounts: phase assess has no step "acounts"`,
		"same phase":    "uses param ids, which comes from assess/accounts: only a later phase can use it",
		"scalar type":   "from: needs a list type",
		"with default":  "takes no default",
		"bad step form": "want phase/step",
	}
	for name, doc := range cases {
		_, err := runbook.Load("refs.yaml", []byte(doc), runbook.Options{Catalog: reg})
		if err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: got %v, want %q", name, err, want[name])
		}
	}
}

// A source step that had nothing to do found nothing: a run goes on with an
// empty list, and the plan says where it came from, rather than stopping
// halfway after earlier phases changed things.
func TestParamFromAStepThatDidNothingIsEmpty(t *testing.T) {
	r := newRefsRigQ(t, queryAction{noop: true}, refsRunbook)
	reps, err := r.eng.Run(context.Background(), RunOptions{Command: "run", Phases: []string{"assess", "eradicate"}})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, r.out)
	}
	if len(r.got) != 0 || reps[1].Inputs["ids"] == nil || !strings.Contains(reps[1].Inputs["ids"].Source, "it did nothing (query: skipped: no addresses given)") {
		t.Fatalf("got %v, inputs %+v\n%s", r.got, reps[1].Inputs, r.out)
	}
}

// What a phase took from earlier results is journaled, and a resume of the
// run gets those values back (as --set), whatever a later rerun of the
// source step recorded.
func TestParamsFromResultsArePinnedForResume(t *testing.T) {
	r := newRefsRig(t, "{\"user_id\":7}\n{\"user_id\":13}\n", refsRunbook)
	if _, err := r.eng.Run(context.Background(), RunOptions{Command: "run", Phases: []string{"assess", "eradicate"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := incident.ReadJournal(r.inc.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	lr, err := FindLastRun(recs)
	if err != nil {
		t.Fatal(err)
	}
	if lr.Inputs["ids"] != "7,13" {
		t.Fatalf("pinned inputs %v, want ids=7,13", lr.Inputs)
	}
	var said string
	for _, rec := range recs {
		if rec.Kind == incident.KindInputs {
			said = rec.Result
		}
	}
	if !strings.Contains(said, "ids=7,13 from assess/accounts.user_id") {
		t.Errorf("the inputs record says %q", said)
	}
}

// _finished_at is when the step last finished successfully; a rerun that
// has nothing to do does not move it.
func TestParamFromFinishedAt(t *testing.T) {
	const doc = `apiVersion: irctl/v1
kind: Runbook
name: refs
params:
  at:
    type: strings
    from: {step: assess/accounts, column: _finished_at}
phases:
  assess:
    - name: accounts
      action: test.query
      with: {name: accounts}
  eradicate:
    - name: use
      action: test.query
      with: {name: "used-{{ len .at }}"}
`
	r := newRefsRig(t, "{\"user_id\":7}\n", doc)
	before := time.Now()
	if _, err := r.eng.RunPhase(context.Background(), "assess"); err != nil {
		t.Fatal(err)
	}
	rb, err := r.load(nil)
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := rb.Values["at"].([]string)
	if len(vals) != 1 {
		t.Fatalf("_finished_at gave %v, want one time (%+v)", rb.Values["at"], rb.Origins["at"])
	}
	at, err := time.Parse(time.RFC3339Nano, vals[0])
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
		t.Fatalf("_finished_at %q (%v): not the time assess ran", vals[0], err)
	}
	if !strings.Contains(rb.Origins["at"].Source, "it finished") {
		t.Fatalf("origin %+v", rb.Origins["at"])
	}
	// A rerun that has nothing to do keeps the first finish.
	if _, err := r.eng.Journal.Append(incident.Record{Kind: incident.KindNoop, Phase: "assess", Step: "accounts", Plan: "already done"}); err != nil {
		t.Fatal(err)
	}
	rb2, err := r.load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := rb2.Values["at"].([]string); len(got) != 1 || got[0] != vals[0] {
		t.Fatalf("a noop rerun moved _finished_at from %s to %v", vals[0], got)
	}
}

// A step that only ever had nothing to do finished when it first found
// that out; an outcome with failed targets is no finish.
func TestFinishedAtOfASkippedStepIsItsFirstNoop(t *testing.T) {
	inc, err := incident.Declare(t.TempDir(), "P1", "refs test", "tester", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, r := range []incident.Record{
		{Kind: incident.KindNoop, Phase: "contain", Step: "restart", Plan: "skipped: none given", Time: t0},
		{Kind: incident.KindNoop, Phase: "contain", Step: "restart", Plan: "skipped: none given", Time: t0.Add(time.Hour)},
		{Kind: incident.KindIntent, Phase: "contain", Step: "restart", DryRun: "none", Time: t0.Add(2 * time.Hour)},
		{Kind: incident.KindOutcome, Phase: "contain", Step: "restart", DryRun: "none", Failed: []byte(`[{"target":"x"}]`), Time: t0.Add(2 * time.Hour)},
	} {
		if _, err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	vals, src, err := JournalResults{Dir: inc.Dir()}.Column("contain", "restart", runbook.FinishedAtColumn)
	if err != nil || len(vals) != 1 || vals[0] != t0.Format(time.RFC3339Nano) || !strings.Contains(src, "it had nothing to do") {
		t.Fatalf("got %v %q %v, want the first noop's time %s", vals, src, err, t0)
	}
}
