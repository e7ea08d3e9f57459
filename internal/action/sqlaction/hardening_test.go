package sqlaction_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// logStatements has the server log every statement of role's new
// sessions (log_statement=all) until the test ends, and returns the
// server log's current size: what the test causes is logged after it.
func logStatements(t testing.TB, sb *sandbox.Sandbox, role string) int64 {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" SET log_statement = 'all'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), sb.AdminDatabaseURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" RESET log_statement"); err != nil {
			t.Error(err)
		}
	})
	fi, err := os.Stat(sb.PostgresLog)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// serverLog returns what the server logged from offset on.
func serverLog(t testing.TB, sb *sandbox.Sandbox, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(sb.PostgresLog)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[offset:])
}

// loadSteps loads a runbook given as text with the built-in actions.
func loadSteps(t testing.TB, text string, set map[string]string) *runbook.Runbook {
	t.Helper()
	rb, err := runbook.Load("test.yaml", []byte(text), runbook.Options{Catalog: builtin.Registry(), Set: set})
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

func userCount(t testing.TB, e *sqlEnv) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM users WHERE disabled_at IS NULL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const hostileRunbook = `apiVersion: irctl/v1
kind: Runbook
name: hostile
params:
  who: {default: nobody}
phases:
  contain:
    - name: disable
      action: sql.exec
      with:
        sql: UPDATE users SET disabled_at = now() WHERE email = $1 AND disabled_at IS NULL
        args: ["{{ .who }}"]
`

// A database URL asking for the simple protocol (pgx would interpolate the
// values into the SQL text on the client) or for exec mode does not
// change how values travel: the server's log shows the statement with $1
// and the value as a bound parameter, and a hostile --set value matches
// nothing.
func TestExecModeIsPinnedWhateverTheURLSays(t *testing.T) {
	sb := sandboxtest.Get(t)
	sandboxtest.ResetDB(t, sb)
	for _, mode := range []string{"simple_protocol", "exec"} {
		t.Run(mode, func(t *testing.T) {
			offset := logStatements(t, sb, "orchestrator")
			e := newSQLEnvURL(t, sb.DatabaseURL+"&default_query_exec_mode="+mode)
			if got := e.pool.Config().ConnConfig.DefaultQueryExecMode; got != pgx.QueryExecModeCacheStatement {
				t.Fatalf("exec mode %v, want cache_statement", got)
			}
			before := userCount(t, e)
			marker := "inj-" + mode + "' OR '1'='1'; --"
			rb := loadSteps(t, hostileRunbook, map[string]string{"who": marker})
			_, res, err := runStep(context.Background(), e.Env, rb.Phases["contain"][0])
			if err != nil {
				t.Fatal(err)
			}
			if res != nil && res.Changed != 0 {
				t.Fatalf("the hostile value changed %d rows", res.Changed)
			}
			if after := userCount(t, e); after != before {
				t.Fatalf("active users %d -> %d", before, after)
			}
			log := serverLog(t, sb, offset)
			sawPlaceholder, sawParam := false, false
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "WHERE email = $1 AND disabled_at IS NULL") && strings.Contains(line, "execute") {
					sawPlaceholder = true
				}
				if strings.Contains(line, "parameters: $1 = 'inj-"+mode) {
					sawParam = true
				}
				if strings.Contains(line, "inj-"+mode) && strings.Contains(line, "statement:") {
					t.Errorf("the value reached the server inside SQL text: %s", line)
				}
			}
			if !sawPlaceholder || !sawParam {
				t.Fatalf("server log should show the statement with $1 and the value as a bound parameter (placeholder %v, parameter %v):\n%s", sawPlaceholder, sawParam, log)
			}
		})
	}
}

func isStatementTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57014"
}

// sleeping counts the server sessions still running the statement marked
// by marker.
func sleeping(t testing.TB, e *sqlEnv, marker string) int {
	t.Helper()
	var n int
	err := e.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", marker).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A runaway statement is cancelled by the server when the step's timeout
// param, or its context deadline, runs out: the error is PostgreSQL's
// statement timeout and no session is left running it.
func TestStatementTimeoutStopsRunawayStatementsOnTheServer(t *testing.T) {
	e := newSQLEnv(t)
	sleepy := func(marker, timeout string) runbook.Step {
		with := "sql: SELECT pg_sleep(60) /* " + marker + " */"
		if timeout != "" {
			with += "\n        timeout: " + timeout
		}
		rb := loadSteps(t, `apiVersion: irctl/v1
kind: Runbook
name: sleepy
phases:
  contain:
    - name: sleep
      action: sql.exec
      with:
        `+with+"\n", nil)
		return rb.Phases["contain"][0]
	}
	t.Run("timeout param", func(t *testing.T) {
		_, _, err := runStep(context.Background(), e.Env, sleepy("sleep-param", "500ms"))
		if !strings.Contains(err.Error(), "statement timeout (SQLSTATE 57014)") {
			t.Fatalf("want the server's statement timeout, got %v", err)
		}
		if n := sleeping(t, e, "sleep-param"); n != 0 {
			t.Fatalf("%d session(s) still running the statement", n)
		}
	})
	t.Run("step deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _, err := runStep(ctx, e.Env, sleepy("sleep-deadline", ""))
		if err == nil {
			t.Fatal("a 60s statement finished within a 2s deadline")
		}
		// Whichever side noticed first, the server must have stopped it.
		if n := sleeping(t, e, "sleep-deadline"); n != 0 {
			t.Fatalf("%d session(s) still running the statement after the step's deadline: %v", n, err)
		}
	})
	d, err := db.StatementTimeout(context.Background(), time.Minute)
	if err != nil || d != time.Minute {
		t.Fatalf("no deadline: %v %v, want the default", d, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d, _ := db.StatementTimeout(ctx, time.Hour); d > 10*time.Second || d <= 0 {
		t.Fatalf("with a 10s deadline the timeout is %v", d)
	}
}

// --dry-run=client never runs the write: a row locked by the application
// is not waited on (the UPDATE would wait for lock_timeout and fail), the
// server log shows no UPDATE executed, and count_sql gives the count.
func TestClientDryRunRunsNoWrite(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, e.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var id int64
	if err := tx.QueryRow(ctx, "SELECT id FROM users WHERE disabled_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE").Scan(&id); err != nil {
		t.Fatal(err)
	}
	offset := logStatements(t, e.sb, "orchestrator")
	client := newSQLEnvURL(t, e.sb.DatabaseURL)
	client.DryRun = action.DryRunClient
	rb, err := loadRunbook(map[string]string{"compromised_user_ids": strconv.FormatInt(id, 10)})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := builtin.Registry().Get("sql.exec")
	plan, err := a.Plan(ctx, client.Env, step(t, rb, "contain", "disable-compromised-accounts").Params)
	if err != nil {
		t.Fatalf("client dry run with a row locked: %v", err)
	}
	if plan.Count != 1 || !strings.Contains(plan.Summary, "counted by count_sql; the write did not run") {
		t.Fatalf("plan = %+v", plan)
	}
	log := serverLog(t, e.sb, offset)
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "execute") && strings.Contains(l, "UPDATE users") {
			t.Errorf("client dry run executed the write: %s", l)
		}
	}
	if !strings.Contains(log, "SELECT count(*) FROM users") {
		t.Errorf("the server log should show count_sql (so the check above looked at the right log):\n%s", log)
	}
	// The shipped runbook's count_sql counts what the write would change:
	// the client dry run predicts the server dry run's count.
	revoke := step(t, rb, "contain", "revoke-api-keys").Params
	cplan, err := a.Plan(ctx, client.Env, revoke)
	if err != nil {
		t.Fatal(err)
	}
	server := *client.Env
	server.DryRun = action.DryRunServer
	splan, err := a.Plan(ctx, &server, revoke)
	if err != nil {
		t.Fatal(err)
	}
	if cplan.Count != splan.Count || cplan.Count == 0 {
		t.Fatalf("revoke-api-keys: client dry run counts %d, server dry run %d", cplan.Count, splan.Count)
	}
	// Without count_sql the plan says it cannot count.
	noCount := loadSteps(t, hostileRunbook, nil).Phases["contain"][0]
	plan, err = a.Plan(ctx, client.Env, noCount.Params)
	if err != nil || !strings.Contains(plan.Summary, "rows not counted") || plan.Noop {
		t.Fatalf("plan without count_sql = %+v, %v", plan, err)
	}
}

// A secret bound where the server logs every statement with its
// parameters, by a role that may not turn that off, is refused before the
// statement is sent; the server log does not get it.
func TestSecretArgsAreRefusedWhereTheServerWouldLogThem(t *testing.T) {
	e := newSQLEnv(t)
	offset := logStatements(t, e.sb, "orchestrator")
	env := newSQLEnvURL(t, e.sb.DatabaseURL)
	secret := "secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	env.Secrets = []string{secret}
	rb := loadSteps(t, hostileRunbook, map[string]string{"who": "Bearer " + secret})
	_, _, err := runStep(context.Background(), env.Env, rb.Phases["contain"][0])
	var logged *db.ErrParamsLogged
	if !errors.As(err, &logged) || !strings.Contains(err.Error(), "GRANT SET ON PARAMETER log_parameter_max_length") {
		t.Fatalf("want the step refused, got %v", err)
	}
	if log := serverLog(t, e.sb, offset); strings.Contains(log, secret) {
		t.Fatalf("the secret reached the server log:\n%s", log)
	}
	// Without a secret in its args the same step runs.
	rb = loadSteps(t, hostileRunbook, map[string]string{"who": "nobody@example.com"})
	if _, _, err := runStep(context.Background(), env.Env, rb.Phases["contain"][0]); err != nil {
		t.Fatal(err)
	}
}
