package promaction

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
)

// These tests talk HTTP to a small server that answers /api/v1/query with
// canned Prometheus responses: chosen series, warnings, errors, a result
// that shows up late, which the sandbox's real Prometheus does not give on
// demand. The real one answers the cluster compromise runbook's queries in
// internal/cli's TestClusterCompromiseRunbookEndToEnd.

const vectorResponse = `{"status":"success","data":{"resultType":"vector","result":[` +
	`{"metric":{"__name__":"container_network_receive_bytes_total","namespace":"llm-orchestrator","pod":"orchestrator-7b9d5f8c46-x2k9p"},"value":[1795482000.5,"4194304.25"]},` +
	`{"metric":{"namespace":"llm-orchestrator","pod":"postgres-0"},"value":[1795482000.5,"1048577"]}]},"warnings":["query hit the sample limit"]}`

func newEnv(t *testing.T) (*action.Env, string) {
	t.Helper()
	dir := t.TempDir()
	store, err := evidence.Open(dir, evidence.Meta{Operator: "test@host", ToolVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &action.Env{DryRun: action.DryRunNone, Log: zerolog.Nop(), Now: time.Now, Incident: "SEC-20261122-044",
		Evidence: func() (*evidence.Store, error) { return store, nil }}, dir
}

func TestInstantQueryTableAndEvidence(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if r.URL.Path != "/prom/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, vectorResponse)
	}))
	defer srv.Close()
	env, dir := newEnv(t)
	q := Query{}
	p := Query{}.Spec().MustBind(map[string]any{"url": srv.URL + "/prom", "query": `rate(container_network_receive_bytes_total[5m]) > 1000000`, "time": "2026-11-22T03:00:00Z", "name": "network"})
	if err := q.Spec().Validate(p); err != nil {
		t.Fatal(err)
	}
	plan, err := q.Plan(context.Background(), env, p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.Apply(context.Background(), env, p, plan)
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodGet || got.URL.Query().Get("query") != p.String("query") || got.URL.Query().Get("time") != "2026-11-22T03:00:00Z" {
		t.Errorf("request: %s %s", got.Method, got.URL)
	}
	want := [][]string{
		{`container_network_receive_bytes_total{namespace="llm-orchestrator",pod="orchestrator-7b9d5f8c46-x2k9p"}`, "4194304.25", "2026-11-24T01:00:00Z"},
		{`{namespace="llm-orchestrator",pod="postgres-0"}`, "1048577", "2026-11-24T01:00:00Z"},
	}
	if fmt.Sprint(res.Table.Rows) != fmt.Sprint(want) {
		t.Errorf("table:\n%v\nwant\n%v", res.Table.Rows, want)
	}
	if !strings.Contains(res.Summary, "2 series (vector)") || !strings.Contains(res.Summary, "sample limit") {
		t.Errorf("summary: %s", res.Summary)
	}
	body, err := os.ReadFile(filepath.Join(evidence.Dir(dir), "prometheus", "network.json"))
	if err != nil || string(body) != vectorResponse {
		t.Fatalf("evidence is not the raw response: %v", err)
	}
	entries, _ := evidence.ReadManifest(dir)
	if s := entries[0].Source; s.Kind != evidence.KindPrometheus || s.Query != p.String("query") || *s.Rows != 2 {
		t.Errorf("source: %+v", s)
	}
}

func TestQueryErrorsAreReported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("query") {
		case "bad(":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}`)
		case "slow":
			time.Sleep(time.Second)
		default:
			fmt.Fprint(w, "<html>not prometheus</html>")
		}
	}))
	defer srv.Close()
	env, dir := newEnv(t)
	for query, want := range map[string]string{
		"bad(": "prometheus query failed (HTTP 400, bad_data): 1:5: parse error",
		"up":   "not its API's JSON",
		"slow": "context deadline exceeded",
	} {
		p := Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": query, "timeout": 300 * time.Millisecond})
		_, err := Query{}.Apply(context.Background(), env, p, &action.Plan{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", query, err, want)
		}
	}
	if entries, _ := evidence.ReadManifest(dir); len(entries) != 0 {
		t.Errorf("failed queries left evidence: %+v", entries)
	}
	p := Query{}.Spec().MustBind(map[string]any{"url": "http://user:s3cret@prometheus:9090", "query": "up"})
	plan, err := Query{}.Plan(context.Background(), env, p)
	if err != nil || strings.Contains(plan.Summary, "s3cret") {
		t.Errorf("plan shows the password or fails: %v %s", err, plan.Summary)
	}
	if err := (Query{}).Spec().Validate(Query{}.Spec().MustBind(map[string]any{"url": "file:///etc/passwd", "query": "up"})); err == nil {
		t.Error("a file URL was accepted")
	}
}

// retries re-query while the result is empty (a rule not loaded yet) and
// stop at the first series; the evidence is the last response.
func TestQueryRetriesWhileTheResultIsEmpty(t *testing.T) {
	const empty = `{"status":"success","data":{"resultType":"vector","result":[]}}`
	var calls, emptyFor atomic.Int32
	emptyFor.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= emptyFor.Load() {
			fmt.Fprint(w, empty)
			return
		}
		fmt.Fprint(w, vectorResponse)
	}))
	defer srv.Close()
	env, dir := newEnv(t)
	p := Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": "up", "retries": 5, "interval": 100 * time.Millisecond, "name": "late"})
	if err := (Query{}).Spec().Validate(p); err != nil {
		t.Fatal(err)
	}
	res, err := Query{}.Apply(context.Background(), env, p, &action.Plan{})
	if err != nil || calls.Load() != 3 || len(res.Table.Rows) != 2 || !strings.Contains(res.Summary, "3 of at most 6 queries") {
		t.Fatalf("%d queries, %v: %+v", calls.Load(), err, res)
	}
	body, err := os.ReadFile(filepath.Join(evidence.Dir(dir), "prometheus", "late.json"))
	if err != nil || string(body) != vectorResponse {
		t.Errorf("evidence is not the last response: %v %s", err, body)
	}

	// Retries run out: the empty result is the answer, judged by expect.
	calls.Store(0)
	emptyFor.Store(100)
	p = Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": "up", "retries": 2, "interval": 100 * time.Millisecond, "name": "never"})
	res, err = Query{}.Apply(context.Background(), env, p, &action.Plan{})
	if err != nil || calls.Load() != 3 || len(res.Table.Rows) != 0 || !strings.Contains(res.Summary, "0 series") {
		t.Fatalf("%d queries, %v: %+v", calls.Load(), err, res)
	}
	if err := (Query{}).Spec().Validate(Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": "up", "retries": -1})); err == nil {
		t.Error("retries -1 was accepted")
	}
	if err := (Query{}).Spec().Validate(Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": "up", "retries": 5, "interval": time.Duration(0)})); err == nil {
		t.Error("retries back to back (interval 0) were accepted")
	}

	// The step's deadline bounds the retries: the last answer before it
	// is judged and saved, not lost to "deadline exceeded".
	calls.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p = Query{}.Spec().MustBind(map[string]any{"url": srv.URL, "query": "up", "retries": 1000, "interval": 100 * time.Millisecond, "timeout": 200 * time.Millisecond, "name": "bounded"})
	res, err = Query{}.Apply(ctx, env, p, &action.Plan{})
	if err != nil || calls.Load() >= 1000 || len(res.Table.Rows) != 0 {
		t.Fatalf("%d queries, %v: %+v", calls.Load(), err, res)
	}
	if _, err := os.Stat(filepath.Join(evidence.Dir(dir), "prometheus", "bounded.json")); err != nil {
		t.Errorf("the last answer was not saved: %v", err)
	}
	plan, err := Query{}.Plan(context.Background(), env, p)
	if err != nil || !strings.Contains(plan.Summary, "asked again up to 1000 times, 100ms apart") {
		t.Errorf("the plan does not say it waits: %v %+v", err, plan)
	}
}

func TestResultTableShapes(t *testing.T) {
	tb, n, typ, err := ResultTable([]byte(`{"resultType":"matrix","result":[{"metric":{"job":"api"},"values":[[1,"1"],[2,"5"]]}]}`))
	if err != nil || n != 1 || typ != "matrix" || fmt.Sprint(tb.Rows) != `[[{job="api"} 2 5 1970-01-01T00:00:02Z]]` {
		t.Errorf("matrix: %v %d %s %v", tb, n, typ, err)
	}
	tb, _, typ, err = ResultTable([]byte(`{"resultType":"scalar","result":[1795482000,"42"]}`))
	if err != nil || typ != "scalar" || tb.Rows[0][0] != "42" {
		t.Errorf("scalar: %v %v", tb, err)
	}
}
