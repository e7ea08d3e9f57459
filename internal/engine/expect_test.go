package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// tableAction returns a table of rows (one column "count" when it has
// one row of one cell).
func tableAction(name string, rows ...[]string) *fakeAction {
	return &fakeAction{name: name, apply: func(context.Context) (*action.Result, error) {
		cols := []string{"id", "who"}
		if len(rows) == 1 && len(rows[0]) == 1 {
			cols = []string{"count"}
		}
		return &action.Result{Summary: "queried", Table: &action.Table{Columns: cols, Rows: rows, Total: len(rows)}}, nil
	}}
}

// loadExpect reads an expectation the way the loader does.
func loadExpect(t *testing.T, yml string) *runbook.Expect {
	t.Helper()
	spec := runbook.Spec{Name: "fake.query", Table: true}
	src := "apiVersion: irctl/v1\nkind: Runbook\nname: x\nphases:\n  validate:\n    - name: s\n      action: fake.query\n      expect: " + yml + "\n"
	rb, err := runbook.Load("x.yaml", []byte(src), runbook.Options{Catalog: oneSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	return rb.Phases["validate"][0].Expect
}

type oneSpec struct{ s runbook.Spec }

func (o oneSpec) Spec(n string) (runbook.Spec, bool) { return o.s, n == o.s.Name }

func TestJudgeRowsAndValue(t *testing.T) {
	one := &action.Result{Table: &action.Table{Columns: []string{"count"}, Rows: [][]string{{"12"}}, Total: 1}}
	prom := &action.Result{Table: &action.Table{Columns: []string{"METRIC", "VALUE", "TIME"}, Rows: [][]string{{"up", "0.5", "t"}}, Total: 1}}
	// Total counts rows the action did not keep for display.
	many := &action.Result{Table: &action.Table{Columns: []string{"a", "b"}, Rows: [][]string{{"1", "2"}}, Total: 40}}
	for _, tc := range []struct {
		expect string
		res    *action.Result
		seen   string
		err    string
	}{
		{"{rows: 1}", one, "rows 1", ""},
		{"{rows: 0}", one, "rows 1", "expected rows = 0, got 1"},
		{"{value: 0}", one, "value 12", "expected value = 0, got 12"},
		{"{value: {ge: 10, lt: 13}}", one, "value 12", ""},
		{"{value: {le: 0.5}}", prom, "value 0.5", ""},
		{"{value: {gt: 1}}", prom, "value 0.5", "expected value > 1, got 0.5"},
		{"{rows: {le: 39}}", many, "rows 40", "expected rows <= 39, got 40"},
		{"{value: 0}", many, "value the result has 40 rows, not one", "expected value = 0, but the result has 40 rows, not one"},
		{"{value: ok}", &action.Result{Table: &action.Table{Columns: []string{"s"}, Rows: [][]string{{"ok"}}, Total: 1}}, "value ok", ""},
		{"{value: 3}", &action.Result{Table: &action.Table{Columns: []string{"s"}, Rows: [][]string{{"three"}}, Total: 1}}, "value three", `expected value = 3, got three ("three" is not a number)`},
		{"{rows: 0, value: 0}", &action.Result{Table: &action.Table{Columns: []string{"c"}, Total: 0}}, "rows 0, value the result has 0 rows, not one", "expected value = 0, but the result has 0 rows, not one"},
	} {
		seen, err := judge(loadExpect(t, tc.expect), tc.res)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if seen != tc.seen || gotErr != tc.err {
			t.Errorf("%s: seen %q, err %q; want %q, %q", tc.expect, seen, gotErr, tc.seen, tc.err)
		}
	}
}

// validateRig puts the rig's steps in the validate phase.
func validateRig(t *testing.T, expects map[string]string, actions ...*fakeAction) *rig {
	r := newRig(t, actions...)
	for _, s := range r.eng.Runbook.Phases["contain"] {
		s.Phase = runbook.PhaseValidate
		if x, ok := expects[s.Name]; ok {
			s.Expect = loadExpect(t, x)
		}
		r.eng.Runbook.Phases[runbook.PhaseValidate] = append(r.eng.Runbook.Phases[runbook.PhaseValidate], s)
	}
	delete(r.eng.Runbook.Phases, "contain")
	return r
}

// Every check runs though the first fails; the table says which passed;
// the phase exits 1 at the end; the failed expectation is the step's
// journaled outcome error.
func TestValidateRunsEveryCheckThenExits1WithTheTable(t *testing.T) {
	leftovers := tableAction("fake.leftovers", []string{"7", "mallory"}, []string{"9", "eve"})
	broken := &fakeAction{name: "fake.health", apply: func(context.Context) (*action.Result, error) {
		return nil, errors.New("GET /health: status 503")
	}}
	count := tableAction("fake.count", []string{"0"})
	after := &fakeAction{name: "fake.after"}
	r := validateRig(t, map[string]string{"fake.leftovers": "{rows: 0}", "fake.count": "{value: 0}"}, leftovers, broken, count, after)
	rep, err := r.eng.RunPhase(context.Background(), runbook.PhaseValidate)
	if exitcode.Code(err) != exitcode.Error {
		t.Fatalf("err %v (exit %d), want exit 1", err, exitcode.Code(err))
	}
	if !strings.Contains(err.Error(), "2 of 4 check(s) failed: fake.leftovers, fake.health") {
		t.Errorf("error: %v", err)
	}
	if count.applied != 1 || after.applied != 1 {
		t.Fatalf("checks after the failed ones did not run: %d, %d", count.applied, after.applied)
	}
	want := []Check{
		{Check: "fake.leftovers", Expected: "rows = 0", Seen: "rows 2", Result: CheckFail},
		{Check: "fake.health", Expected: "change 2 things", Result: CheckFail},
		{Check: "fake.count", Expected: "value = 0", Seen: "value 0", Result: CheckPass},
		{Check: "fake.after", Expected: "change 2 things", Seen: "changed 2 things", Result: CheckPass},
	}
	if len(rep.Checks) != len(want) {
		t.Fatalf("checks: %+v", rep.Checks)
	}
	for i, w := range want {
		g := rep.Checks[i]
		if i == 1 {
			if !strings.Contains(g.Seen, "status 503") {
				t.Errorf("the failed step's check should show its error: %+v", g)
			}
			g.Seen = ""
		}
		if g != w {
			t.Errorf("check %d: %+v, want %+v", i, g, w)
		}
	}
	if rep.Steps[0].Status != "failed" || rep.Steps[0].Error != "expected rows = 0, got 2" {
		t.Errorf("step report: %+v", rep.Steps[0])
	}
	var outcome incident.Record
	for _, rec := range r.journal() {
		if rec.Step == "fake.leftovers" && rec.Kind == incident.KindOutcome {
			outcome = rec
		}
	}
	if outcome.Error != "expected rows = 0, got 2" {
		t.Errorf("journal outcome: %+v", outcome)
	}
	out := r.out.String()
	for _, w := range []string{"validate: 2 of 4 check(s) passed", "CHECK", "EXPECTED", "fake.leftovers", "rows = 0", "rows 2", "FAIL", "PASS", "expect rows = 0: FAILED: expected rows = 0, got 2"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// -o json carries the table.
	b, _ := json.Marshal(rep)
	if !strings.Contains(string(b), `"checks":[{"check":"fake.leftovers","expected":"rows = 0","seen":"rows 2","result":"fail"}`) {
		t.Errorf("json: %s", b)
	}
}

func TestValidatePassesWhenEveryCheckHolds(t *testing.T) {
	r := validateRig(t, map[string]string{"fake.none": "{rows: 0}"}, tableAction("fake.none"))
	rep, err := r.eng.RunPhase(context.Background(), runbook.PhaseValidate)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Checks) != 1 || rep.Checks[0].Result != CheckPass || !strings.Contains(r.out.String(), "validate: 1 of 1 check(s) passed") {
		t.Errorf("checks %+v\n%s", rep.Checks, r.out)
	}
}

// An interrupt still stops a validate phase at once.
func TestValidateStopsOnInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := &fakeAction{name: "fake.slow", apply: func(ctx context.Context) (*action.Result, error) {
		cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	after := &fakeAction{name: "fake.after"}
	r := validateRig(t, nil, stop, after)
	_, err := r.eng.RunPhase(ctx, runbook.PhaseValidate)
	if exitcode.Code(err) != exitcode.Interrupted || after.planned != 0 {
		t.Errorf("err %v (exit %d), next step planned %d", err, exitcode.Code(err), after.planned)
	}
}

// Outside validate, a failed expectation lets the phase's other steps run
// and the phase exits 1 at its end; a plain step error still stops it.
func TestExpectationInAnotherPhaseFailsThePhaseAtItsEnd(t *testing.T) {
	q := tableAction("fake.query", []string{"1", "x"})
	after := &fakeAction{name: "fake.after"}
	r := newRig(t, q, after)
	r.eng.Runbook.Phases["contain"][0].Expect = loadExpect(t, "{rows: 0}")
	rep, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Error || after.applied != 1 {
		t.Fatalf("err %v, next step applied %d", err, after.applied)
	}
	if rep.Checks != nil {
		t.Errorf("only validate prints the table: %+v", rep.Checks)
	}
}

func TestDropRepeat(t *testing.T) {
	for _, tc := range []struct{ seen, expected, want string }{
		{"GET u expecting 200: passed on attempt 1 of 6", "GET u expecting 200, up to 6 attempts 2s apart", "passed on attempt 1 of 6"},
		{"GET u expecting 401: failed after 1 attempts; last: status 200", "GET u expecting 401", "failed after 1 attempts; last: status 200"},
		{"Secret a/b was not rotated", "check that Secrets b", "Secret a/b was not rotated"},
		{"value 3", "value = 0", "value 3"},
	} {
		if got := dropRepeat(tc.seen, tc.expected); got != tc.want {
			t.Errorf("dropRepeat(%q, %q) = %q, want %q", tc.seen, tc.expected, got, tc.want)
		}
	}
}

// A check that fails with a result (a table of what it found) shows it,
// and does not claim to have changed anything.
func TestFailedCheckShowsItsResultNotAChange(t *testing.T) {
	a := &fakeAction{name: "fake.rotated", apply: func(context.Context) (*action.Result, error) {
		return &action.Result{Summary: "1 Secret checked: 1 stale pod", Table: &action.Table{Columns: []string{"SECRET", "STALE PODS"}, Rows: [][]string{{"jwt", "api-1"}}, Total: 1}},
			errors.New("pods reading Secret ns/jwt started before its rotation: api-1")
	}}
	r := validateRig(t, nil, a)
	rep, err := r.eng.RunPhase(context.Background(), runbook.PhaseValidate)
	if exitcode.Code(err) != exitcode.Error {
		t.Fatal(err)
	}
	out := r.out.String()
	if strings.Contains(out, "changed before it stopped") || !strings.Contains(out, "  result: 1 Secret checked: 1 stale pod") || !strings.Contains(out, "api-1") {
		t.Errorf("output:\n%s", out)
	}
	if c := rep.Checks[0]; c.Result != CheckFail || !strings.Contains(c.Seen, "started before its rotation: api-1") || rep.Steps[0].Result == nil {
		t.Errorf("check %+v, step %+v", c, rep.Steps[0])
	}
}

// A client dry run runs no check: the table says so, and nothing fails.
func TestValidateUnderClientDryRunSkipsEveryCheck(t *testing.T) {
	r := validateRig(t, map[string]string{"fake.none": "{rows: 0}"}, tableAction("fake.none", []string{"1", "x"}))
	r.eng.Env.DryRun = action.DryRunClient
	rep, err := r.eng.RunPhase(context.Background(), runbook.PhaseValidate)
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Checks[0]; c.Result != CheckSkipped || c.Seen != "not run (client dry run)" || c.Expected != "rows = 0" {
		t.Errorf("check: %+v", c)
	}
}
