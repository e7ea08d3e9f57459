package kubeaction

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// orchRequest sends GET /v1/me to the orchestrator stand-in with a key it
// does not know, from the attacker's address, with ua as User-Agent: the
// stand-in refuses it (401) and logs it in one replica's log.
func orchRequest(t *testing.T, ua string) {
	t.Helper()
	sb := sandboxtest.Get(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, sb.OrchestratorURL+"/v1/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", "sk_live_leaked_then_revoked")
	req.Header.Set("X-Forwarded-For", "198.51.100.23")
	req.Header.Set("User-Agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the stand-in answered %d, want 401", resp.StatusCode)
	}
}

// readyOrchestrators returns the names of the demo orchestrator pods that
// are Ready and not being deleted.
func readyOrchestrators(t *testing.T, e *evEnv) map[string]bool {
	t.Helper()
	list, err := e.c.Core.CoreV1().Pods(sandbox.DemoNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=orchestrator"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				out[p.Name] = true
			}
		}
	}
	return out
}

func watchMatches(t *testing.T, e *evEnv, name string) []watchMatch {
	t.Helper()
	var out []watchMatch
	for l := range strings.Lines(e.read(t, name)) {
		var m watchMatch
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("evidence line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// The seed's `kubectl logs -l app=orchestrator -f | grep -E
// "(unauthorized|denied|failed)"`, bounded: a refused request made during
// the watch is reported and saved; one made before it is not; a replica
// that replaces a deleted one is followed from its start, and the requests
// it serves are reported too; a secret in a line is redacted.
func TestLogWatchReportsMatchesDuringTheWatchIncludingReplacementPods(t *testing.T) {
	e := newEvEnv(t)
	canary := "canary-" + randHex(6)
	e.Secrets = []string{canary}
	run := "watch-" + randHex(4)
	orchRequest(t, run+"-before")

	p := LogWatch{}.Spec().MustBind(map[string]any{"namespace": sandbox.DemoNamespace, "selector": "app=orchestrator",
		"pattern": "(unauthorized|denied|failed)", "for": 20 * time.Second, "show": int64(2), "name": "monitor"})
	plan, err := LogWatch{}.Plan(t.Context(), e.Env, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Targets) != 3 || !strings.Contains(plan.Summary, "for 20s") {
		t.Fatalf("plan: %+v", plan)
	}
	type outcome struct {
		res *action.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := LogWatch{}.Apply(context.Background(), e.Env, p, plan)
		done <- outcome{res, err}
	}()
	time.Sleep(1500 * time.Millisecond) // the watch has started: env.Now() was read
	orchRequest(t, run+"-during "+canary)

	// Replace one replica; its successor is followed once it runs.
	before := readyOrchestrators(t, e)
	var victim string
	for name := range before {
		victim = name
		break
	}
	if err := e.c.Core.CoreV1().Pods(sandbox.DemoNamespace).Delete(t.Context(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var successor string
	for deadline := time.Now().Add(12 * time.Second); successor == ""; time.Sleep(200 * time.Millisecond) {
		now := readyOrchestrators(t, e)
		for name := range now {
			if !before[name] && len(now) == 3 {
				successor = name
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Ready replacement for %s within 12 s", victim)
		}
	}
	// Ready pods serve requests in turn: 6 requests reach each twice.
	for range 6 {
		orchRequest(t, run+"-after-replacement")
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("apply: %v", o.err)
	}
	res := o.res
	if len(res.Failed) != 0 {
		t.Errorf("failures: %+v", res.Failed)
	}
	var mine []watchMatch
	for _, m := range watchMatches(t, e, "log-watch/monitor.jsonl") {
		if strings.Contains(m.Line, run) {
			mine = append(mine, m)
		}
		if strings.Contains(m.Line, canary) {
			t.Errorf("a secret in the evidence: %q", m.Line)
		}
	}
	onSuccessor := 0
	during := 0
	for _, m := range mine {
		switch {
		case strings.Contains(m.Line, run+"-before"):
			t.Errorf("a line printed before the watch was reported: %q", m.Line)
		case strings.Contains(m.Line, run+"-during"):
			during++
			if !strings.Contains(m.Line, `ua="`+run+`-during [redacted]"`) || !strings.Contains(m.Line, `error="unauthorized: invalid api key"`) {
				t.Errorf("line: %q", m.Line)
			}
		case m.Pod == successor:
			onSuccessor++
		}
		if m.Container != "orchestrator" || m.Namespace != sandbox.DemoNamespace || m.Time.IsZero() {
			t.Errorf("match: %+v", m)
		}
	}
	if during != 1 || onSuccessor != 2 {
		t.Errorf("want the request made during the watch once and 2 served by the replacement %s, got %d and %d of %+v", successor, during, onSuccessor, mine)
	}
	if res.Table == nil || len(res.Table.Rows) != 2 || res.Table.Total < 7 || res.Table.Columns[3] != "LINE" {
		t.Errorf("table: %+v", res.Table)
	}
	if !strings.Contains(res.Summary, "watched 4 container instance(s) for 20s") || !strings.Contains(res.Summary, successor+"/orchestrator 2") {
		t.Errorf("summary: %s", res.Summary)
	}
	entries := e.verify(t)
	if len(entries) != 1 || len(entries[0].Source.Objects) != 4 {
		t.Fatalf("evidence: %+v", entries)
	}
}

// fail_on_match makes a match fail the step (validation: nothing
// unauthorized any more), and the step's deadline bounds the watch.
func TestLogWatchFailsOnMatchAndFitsTheStepDeadline(t *testing.T) {
	e := newEvEnv(t)
	run := "failwatch-" + randHex(4)
	bind := func(pattern string) runbook.Params {
		return LogWatch{}.Spec().MustBind(map[string]any{"namespace": sandbox.DemoNamespace, "selector": "app=orchestrator",
			"pattern": pattern, "for": time.Hour, "fail_on_match": true, "name": "validate"})
	}
	watch := func(p runbook.Params, during func()) (*action.Plan, *action.Result, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		plan, err := LogWatch{}.Plan(ctx, e.Env, p)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(time.Second)
			during()
		}()
		res, err := LogWatch{}.Apply(ctx, e.Env, p, plan)
		return plan, res, err
	}
	plan, res, err := watch(bind(run), func() { orchRequest(t, run) })
	if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], "the step's deadline cuts the watch") {
		t.Errorf("plan warnings: %q", plan.Warnings)
	}
	if err == nil || res != nil || !strings.Contains(err.Error(), "1 line(s) matched /"+run+"/ during the watch") {
		t.Fatalf("a match with fail_on_match: %+v, %v", res, err)
	}
	_, res, err = watch(bind("no-such-line-"+run), func() { orchRequest(t, run) })
	if err != nil || !strings.Contains(res.Summary, "0 matching") || !strings.Contains(res.Summary, "cut short by the step's deadline") || res.Table == nil || res.Table.Total != 0 {
		t.Fatalf("no match: %+v, %v", res, err)
	}
	// since reads back before the start: the two earlier watches' requests.
	_, res, err = watch(bind(run).With("since", time.Minute), func() {})
	if err == nil || res != nil || !strings.Contains(err.Error(), "2 line(s) matched /"+run+"/ from 1m before the watch to its end") {
		t.Fatalf("since 1m: %+v, %v", res, err)
	}
	if len(e.verify(t)) != 3 {
		t.Error("each watch saves its evidence, matches or not")
	}
}

func TestLogWatchValidatesItsParams(t *testing.T) {
	spec := LogWatch{}.Spec()
	for _, c := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"pattern": "(", "selector": "app=x"}, "pattern:"},
		{map[string]any{"pattern": "x", "selector": "app in (x"}, "invalid selector"},
		{map[string]any{"pattern": "x", "selector": "app=x", "for": "0s"}, "for must be more than 0"},
		{map[string]any{"pattern": "x", "selector": "app=x", "show": -1}, "show must not be negative"},
	} {
		c.with["namespace"] = "ns"
		p, err := spec.Bind(c.with)
		if err == nil {
			err = spec.Validate(p)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.with, err, c.want)
		}
	}
}

// The table shows the earliest matches in time order, whatever order the
// pods' streams delivered them in.
func TestLogWatchShowsTheEarliestMatches(t *testing.T) {
	wt := &logWatcher{show: 3}
	base := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	for _, sec := range []int{5, 9, 1, 7, 3, 2, 8} {
		wt.keepEarliest(watchMatch{Time: base.Add(time.Duration(sec) * time.Second), Line: strconv.Itoa(sec)})
	}
	var got []string
	for _, m := range wt.shown {
		got = append(got, m.Line)
	}
	if strings.Join(got, ",") != "1,2,3" {
		t.Errorf("shown %v, want the 3 earliest in order", got)
	}
	none := &logWatcher{show: 0}
	none.keepEarliest(watchMatch{Time: base})
	if len(none.shown) != 0 {
		t.Error("show: 0 keeps none")
	}
}

// A follow stream that ends while the container runs on (a kubelet
// restart, a proxy's timeout) is asked for again from the last line seen:
// every request made before, between and after two cuts is reported
// exactly once.
func TestLogWatchFollowsAgainWhenTheStreamIsCut(t *testing.T) {
	e := newEvEnv(t)
	sb := sandboxtest.Get(t)
	run := "cut-" + randHex(4)
	p := LogWatch{}.Spec().MustBind(map[string]any{"namespace": sandbox.DemoNamespace, "selector": "app=orchestrator",
		"pattern": run, "for": 9 * time.Second, "name": "cut"})
	plan, err := LogWatch{}.Plan(t.Context(), e.Env, p)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := LogWatch{}.Apply(context.Background(), e.Env, p, plan)
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	for _, phase := range []string{"a", "b", "c"} {
		for i := range 3 {
			orchRequest(t, run+"-"+phase+strconv.Itoa(i))
		}
		if phase != "c" {
			// The stream ends with lines sent and, perhaps, some not
			// yet: both must come out once.
			time.Sleep(700 * time.Millisecond)
			sb.CutLogStreams()
			time.Sleep(300 * time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("apply: %v", err)
	}
	seen := map[string]int{}
	for _, m := range watchMatches(t, e, "log-watch/cut.jsonl") {
		for _, phase := range []string{"a", "b", "c"} {
			for i := range 3 {
				if strings.Contains(m.Line, `ua="`+run+"-"+phase+strconv.Itoa(i)+`"`) {
					seen[phase+strconv.Itoa(i)]++
				}
			}
		}
	}
	for _, phase := range []string{"a", "b", "c"} {
		for i := range 3 {
			if n := seen[phase+strconv.Itoa(i)]; n != 1 {
				t.Errorf("request %s-%s%d reported %d times, want once (all: %v)", run, phase, i, n, seen)
			}
		}
	}
}
