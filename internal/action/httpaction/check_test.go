package httpaction

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// server answers /health with 503 for the first failures requests, then
// 200 and a JSON body; it counts the requests it got.
func server(t *testing.T, failures int32) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= failures {
			http.Error(w, `{"status":"degraded"}`, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"status":"ok","db":"up"}`)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func run(t *testing.T, p runbook.Params) (*action.Plan, *action.Result, error) {
	t.Helper()
	a := Check{}
	if err := a.Spec().Validate(p); err != nil {
		t.Fatalf("params rejected: %v", err)
	}
	env := &action.Env{DryRun: action.DryRunNone}
	plan, err := a.Plan(t.Context(), env, p)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if plan.Noop {
		t.Fatal("a check must not plan as a no-op: the engine would skip it")
	}
	res, err := a.Apply(t.Context(), env, p, plan)
	return plan, res, err
}

func TestCheckPasses(t *testing.T) {
	s, n := server(t, 0)
	_, res, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": s.URL + "/health", "body": `"db":"up"`}))
	if err != nil || !strings.Contains(res.Summary, "passed on attempt 1 of 1") || res.Changed != 0 {
		t.Fatalf("want a pass changing nothing: %+v, %v", res, err)
	}
	if n.Load() != 1 {
		t.Errorf("want 1 request, got %d", n.Load())
	}
}

func TestCheckFailsOnWrongStatus(t *testing.T) {
	s, n := server(t, 100)
	_, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": s.URL + "/health", "retries": int64(1), "interval": time.Millisecond}))
	if err == nil || !strings.Contains(err.Error(), "failed after 2 attempts; last: status 503") {
		t.Fatalf("want a failure naming the status: %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("want 2 requests (1 retry), got %d", n.Load())
	}
	// The expected status can be something else than 200.
	if _, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": s.URL, "status": int64(503)})); err != nil {
		t.Errorf("status 503 expected and answered: %v", err)
	}
}

func TestCheckFailsOnBodyMismatch(t *testing.T) {
	s, _ := server(t, 0)
	_, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": s.URL, "body": `"db":"down"`}))
	if err == nil || !strings.Contains(err.Error(), "body does not match") {
		t.Fatalf("want a body mismatch: %v", err)
	}
}

func TestCheckRetriesUntilSuccess(t *testing.T) {
	s, n := server(t, 3)
	_, res, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": s.URL, "retries": int64(5), "interval": 10 * time.Millisecond}))
	if err != nil || !strings.Contains(res.Summary, "passed on attempt 4 of 6") {
		t.Fatalf("want a pass on the 4th attempt: %+v, %v", res, err)
	}
	if n.Load() != 4 {
		t.Errorf("want no request after the pass: %d", n.Load())
	}
}

func TestCheckTimeoutAndRefusedConnection(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	_, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": slow.URL, "timeout": 50 * time.Millisecond}))
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("want a timeout: %v", err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if _, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": closed.URL})); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("want connection refused: %v", err)
	}
}

func TestCheckNeverShowsUserinfo(t *testing.T) {
	const password = "hunter2-s3cr3t"
	s, _ := server(t, 100)
	u := strings.Replace(s.URL, "http://", "http://svc-token:"+password+"@", 1) + "/health"
	plan, _, err := run(t, Check{}.Spec().MustBind(map[string]any{"url": u, "retries": int64(1), "interval": time.Millisecond}))
	b, _ := json.Marshal(plan)
	all := string(b) + fmt.Sprint(err)
	if strings.Contains(all, password) || strings.Contains(all, "svc-token") {
		t.Errorf("userinfo leaked: %s", all)
	}
	if !strings.Contains(all, s.URL+"/health") {
		t.Errorf("the URL without userinfo should be shown: %s", all)
	}
	// The journal shows the param redacted.
	if d := (Check{}.Spec().MustBind(map[string]any{"url": u})).Display(Check{}.Spec(), nil); d["url"] != "[redacted]" {
		t.Errorf("journal display: %v", d)
	}
	// And so does a validation error.
	if err := (Check{}).Spec().Validate(Check{}.Spec().MustBind(map[string]any{"url": "ftp://u:" + password + "@h/"})); err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("want an error without the password: %v", err)
	}
}

func TestCheckValidatesParams(t *testing.T) {
	v := Check{}.Spec().Validate
	for _, p := range []map[string]any{
		{"url": "not a url"},
		{"url": "http://h/", "status": int64(42)},
		{"url": "http://h/", "body": "("},
		{"url": "http://h/", "retries": int64(-1)},
		{"url": "http://h/", "timeout": time.Duration(0)},
	} {
		if err := v(Check{}.Spec().MustBind(p)); err == nil {
			t.Errorf("%v: want an error", p)
		}
	}
}
