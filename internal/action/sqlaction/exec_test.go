package sqlaction_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/sqlaction"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// TestExecCountPlansWithoutWriting: with a count query, sql.exec plans by
// counting, not by running the write rolled back, and the guard still
// stops the write before COMMIT. The write draws from a sequence, which a
// rollback does not rewind, so a plan that ran it would show.
func TestExecCountPlansWithoutWriting(t *testing.T) {
	e := newSQLEnv(t)
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "exec_" + hex.EncodeToString(b)
	if _, err := e.pool.Exec(ctx, "CREATE TABLE "+name+" (id int, v bigint); CREATE SEQUENCE "+name+"_seq; INSERT INTO "+name+" SELECT g, 0 FROM generate_series(1, 5) g"); err != nil {
		t.Fatal(err)
	}
	drawn := func() int64 {
		var n int64
		if err := e.pool.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM "+name+"_seq").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	vals := map[string]any{
		"sql":       "UPDATE " + name + " SET v = nextval('" + name + "_seq') WHERE id > $1",
		"args":      []any{int64(2)},
		"count_sql": "SELECT count(*) FROM " + name + " WHERE id > $1",
		"guard":     "SELECT $1::bool", "guard_args": []any{false}, "guard_message": "test guard",
	}
	p := sqlaction.Exec{}.Spec().MustBind(vals)
	x := sqlaction.Exec{}
	plan, err := x.Plan(ctx, e.Env, p)
	if err != nil || plan.Count != 3 || drawn() != 0 {
		t.Fatalf("plan with count: %+v, %v; sequence at %d, want untouched", plan, err, drawn())
	}
	// The guard runs before COMMIT: false rolls the write back.
	if _, err := x.Apply(ctx, e.Env, p, plan); err == nil || !strings.Contains(err.Error(), "test guard") {
		t.Fatalf("apply with a false guard: %v", err)
	}
	var changed int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM "+name+" WHERE v <> 0").Scan(&changed); err != nil || changed != 0 {
		t.Fatalf("a false guard left %d rows changed (%v)", changed, err)
	}
	vals["guard_args"] = []any{true}
	p = sqlaction.Exec{}.Spec().MustBind(vals)
	before := drawn()
	res, err := x.Apply(ctx, e.Env, p, plan)
	if err != nil || res.Changed != 3 || drawn() != before+3 || strings.Contains(res.Summary, "planned") {
		t.Fatalf("apply: %+v, %v; sequence drew %d, want 3", res, err, drawn()-before)
	}

	// max_rows refuses at plan time on the count.
	vals["max_rows"] = int64(2)
	p = sqlaction.Exec{}.Spec().MustBind(vals)
	if _, err := x.Plan(ctx, e.Env, p); err == nil || !strings.Contains(err.Error(), "more than max_rows 2") {
		t.Errorf("max_rows with count: %v", err)
	}
	// Without count the plan runs the write, rolled back: it draws.
	delete(vals, "count_sql")
	delete(vals, "max_rows")
	p = sqlaction.Exec{}.Spec().MustBind(vals)
	before = drawn()
	if _, err := x.Plan(ctx, e.Env, p); err != nil || drawn() != before+3 {
		t.Errorf("plan without count: %v; sequence drew %d, want 3", err, drawn()-before)
	}
}

// TestShippedRevokeCountAgreesWithTheWrite: the shipped revoke step's
// count query predicts what its UPDATE changes (under a server dry run,
// which rolls the UPDATE back).
func TestShippedRevokeCountAgreesWithTheWrite(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	rb, err := loadRunbook(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := step(t, rb, "contain", "revoke-api-keys")
	if s.Params.String("count_sql") == "" {
		t.Fatal("the shipped revoke step has no count query")
	}
	dry := *e.Env
	dry.DryRun = action.DryRunServer
	plan, res, err := runStep(context.Background(), &dry, s)
	if err != nil || plan.Count == 0 || res.Changed != plan.Count {
		t.Fatalf("revoke: planned %+v, changed %+v, %v", plan, res, err)
	}
}
