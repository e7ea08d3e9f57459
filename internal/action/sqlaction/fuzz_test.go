package sqlaction_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/action/sqlaction"
	"irctl.dev/irctl/internal/runbook"
)

// Every input that reaches SQL is fuzzed here against the sandbox's
// PostgreSQL, with a canary table that must survive with its one row:
// --set values of each type the shipped runbook binds (strings, ints; ips
// and cidrs are FuzzSuspiciousIPs), sql.exec and sql.query args, and
// sql.export's table, columns and window. `go test` runs the seed corpus;
// `make fuzz` (part of `make test`) fuzzes each target for a while.

// fuzzEnv is the sandbox database and canary table a fuzz target uses. The
// coordinator starts the sandbox and hands both to its workers through the
// environment, as FuzzSuspiciousIPs explains.
func fuzzEnv(f *testing.F) (*sqlEnv, string) {
	name := os.Getenv(envFuzzCanary)
	if url := os.Getenv(envFuzzDB); url != "" && name != "" {
		return newSQLEnvURL(f, url), name
	}
	e := newSQLEnv(f)
	name = canary(f, e.pool)
	os.Setenv(envFuzzDB, e.sb.DatabaseURL)
	os.Setenv(envFuzzCanary, name)
	f.Cleanup(func() { os.Unsetenv(envFuzzDB); os.Unsetenv(envFuzzCanary) })
	return e, name
}

// hostile values, with %s standing for the canary table.
var hostile = []string{
	"x' OR '1'='1'; --",
	"'; DROP TABLE %s; --",
	"x'); DROP TABLE %s; --",
	"$1; DELETE FROM %s",
	"\\'; DROP TABLE %s; --",
	"1; DROP TABLE %s",
	"a\x00b'; DROP TABLE %s",
	"{a,b}'; DROP TABLE %s",
	"%s\" ; DROP TABLE %s; --",
	"",
	"ünïcödé ☃",
}

func withCanary(s, name string) string {
	if strings.Contains(s, "%s") {
		return strings.ReplaceAll(s, "%s", name)
	}
	return s
}

// loadOrReject loads the shipped runbook with set; a value the loader
// rejects is a usage error (exit 2), never anything else.
func loadOrReject(t *testing.T, set map[string]string) *runbook.Runbook {
	rb, err := loadRunbook(set)
	if err != nil {
		var ps runbook.Problems
		if !errors.As(err, &ps) {
			t.Fatalf("load failed with a non-usage error: %v", err)
		}
		return nil
	}
	return rb
}

// planServer plans a step as --dry-run=server does: the write runs and is
// rolled back.
func planServer(t *testing.T, e *sqlEnv, s runbook.Step) {
	a, _ := builtin.Registry().Get(s.Action)
	env := *e.Env
	env.DryRun = action.DryRunServer
	// A guard that refuses the value, or text PostgreSQL cannot store, is
	// the value handled as a value.
	if _, err := a.Plan(context.Background(), &env, s.Params); err != nil && !invalidText(err) && !strings.Contains(err.Error(), "guard failed") {
		t.Fatalf("%s: %v", s.Name, err)
	}
}

// FuzzSetStrings: break_glass_key_prefixes (strings, bound as text[]) through
// revoke-api-keys, planned on the server.
func FuzzSetStrings(f *testing.F) {
	e, name := fuzzEnv(f)
	for _, h := range hostile {
		f.Add(withCanary(h, name))
	}
	f.Add("sk_live_bg01a7f3,sk_live_bg02c9e8")
	f.Fuzz(func(t *testing.T, keys string) {
		if rb := loadOrReject(t, map[string]string{"break_glass_key_prefixes": keys}); rb != nil {
			planServer(t, e, step(t, rb, "contain", "revoke-api-keys"))
		}
		canaryAlive(t, e.pool, name)
	})
}

// FuzzSetInts: compromised_user_ids (ints, bound as bigint[]) through
// disable-compromised-accounts, planned on the server.
func FuzzSetInts(f *testing.F) {
	e, name := fuzzEnv(f)
	for _, h := range hostile {
		f.Add(withCanary(h, name))
	}
	f.Add("1,2,3")
	f.Add("-9223372036854775808,9223372036854775807")
	f.Add("9223372036854775808")
	f.Fuzz(func(t *testing.T, ids string) {
		if rb := loadOrReject(t, map[string]string{"compromised_user_ids": ids}); rb != nil {
			planServer(t, e, step(t, rb, "contain", "disable-compromised-accounts"))
		}
		canaryAlive(t, e.pool, name)
	})
}

// FuzzSetString: a string param, bound as $1 of a write that commits.
func FuzzSetString(f *testing.F) {
	e, name := fuzzEnv(f)
	for _, h := range hostile {
		f.Add(withCanary(h, name))
	}
	f.Fuzz(func(t *testing.T, who string) {
		rb, err := runbook.Load("h.yaml", []byte(strings.Replace(hostileRunbook, "disabled_at = now()", "disabled_at = disabled_at", 1)),
			runbook.Options{Catalog: builtin.Registry(), Set: map[string]string{"who": who}})
		if err != nil {
			t.Fatalf("a string value was rejected: %v", err)
		}
		if _, _, err := runStep(context.Background(), e.Env, rb.Phases["contain"][0]); err != nil && !invalidText(err) {
			t.Fatal(err)
		}
		canaryAlive(t, e.pool, name)
	})
}

// invalidText is PostgreSQL refusing a value it cannot store as text (a NUL
// byte, invalid UTF-8): refused as a value, never parsed as SQL.
func invalidText(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 22021") || strings.Contains(s, "SQLSTATE 22P05") || strings.Contains(s, "invalid byte sequence")
}

// collided reports the fuzz workers' own concurrency, not a finding: two
// workers updating the same users rows at once can deadlock (40P01) or
// wait out irctl's lock_timeout (55P03); PostgreSQL refuses one of them
// and nothing is written.
func collided(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 40P01") || strings.Contains(s, "SQLSTATE 55P03")
}

// FuzzExecAndQueryArgs: values given straight as sql.exec and sql.query
// args (a string, an integer and a list), bound and run, the write
// committed.
func FuzzExecAndQueryArgs(f *testing.F) {
	e, name := fuzzEnv(f)
	for _, h := range hostile {
		f.Add(withCanary(h, name), int64(1), withCanary(h, name))
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, s string, id int64, item string) {
		args := []any{s, id, []any{item, s}}
		exec := sqlaction.Exec{}.Spec().MustBind(map[string]any{"sql": "UPDATE users SET name = name WHERE email = $1 OR id = $2 OR name = ANY($3::text[])", "args": args})
		if _, _, err := runStep(context.Background(), e.Env, runbook.Step{Name: "exec", Action: "sql.exec", Params: exec}); err != nil && !invalidText(err) && !collided(err) {
			t.Fatal(err)
		}
		query := sqlaction.Query{}.Spec().MustBind(map[string]any{
			"sql":  "SELECT id, email FROM users WHERE email = $1 OR id = $2 OR name = ANY($3::text[])",
			"args": args, "name": fmt.Sprintf("fuzz-%d-%d", os.Getpid(), n.Add(1)),
		})
		if _, _, err := runStep(context.Background(), e.Env, runbook.Step{Name: "query", Action: "sql.query", Params: query}); err != nil && !invalidText(err) {
			t.Fatal(err)
		}
		canaryAlive(t, e.pool, name)
	})
}

// FuzzExportFilters: sql.export's table, time column, columns and window.
// A name that is not a plain identifier is refused by Validate (at load);
// one that is, is quoted and looked up in the catalog before use.
func FuzzExportFilters(f *testing.F) {
	e, name := fuzzEnv(f)
	for _, h := range hostile {
		f.Add(withCanary(h, name), "timestamp", withCanary(h, name), int64(3600))
	}
	f.Add("audit_events", "timestamp", "event_type", int64(86400))
	f.Add("public.audit_events", "timestamp", "", int64(1))
	f.Add(name, "x", "x", int64(60))
	f.Fuzz(func(t *testing.T, table, timeCol, column string, secs int64) {
		p := sqlaction.Export{}.Spec().MustBind(map[string]any{"table": table, "time_column": timeCol, "since": time.Duration(secs) * time.Second})
		if column != "" {
			p = p.With("columns", []string{column})
		}
		a, _ := builtin.Registry().Get("sql.export")
		if err := a.Spec().Validate(p); err != nil {
			return // refused with a message at load, nothing sent
		}
		env := *e.Env
		env.DryRun = action.DryRunServer
		_, err := a.Plan(context.Background(), &env, p)
		if err != nil && !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "has no column") &&
			!strings.Contains(err.Error(), "not a timestamp") && !strings.Contains(err.Error(), "SQLSTATE 22008") {
			t.Fatalf("table %q time_column %q column %q: %v", table, timeCol, column, err)
		}
		canaryAlive(t, e.pool, name)
	})
}
