package kubeaction

import (
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
)

// A detach that stopped after its first pod (Ctrl-C, a crash): the
// ReplicaSet has started a replacement for that one, and the selector
// matches the replacement and the two originals left. The rerun detaches
// exactly the two originals, whatever their creation times (a Deployment
// creates its pods within the same second), and a third run does nothing.
func TestRerunOfAPartialDetachFinishesTheOriginals(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", 3, "example.com/web:v1")
	orig := f.readyPods("web", 3, "example.com/web:v1")
	a := Label{}
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "selector": "app=web", "labels": map[string]string{"quarantine": "true"}, "detach": true})

	plan, err := a.Plan(t.Context(), f.env(action.DryRunNone), p)
	if err != nil {
		t.Fatal(err)
	}
	changes := plan.State.([]labelChange)
	if len(changes) != 3 {
		t.Fatalf("plan: %+v", plan)
	}
	// Only the first pod's patch went through.
	plan.State = changes[:1]
	if res, err := a.Apply(t.Context(), f.env(action.DryRunNone), p, plan); err != nil || res.Changed != 1 {
		t.Fatalf("partial apply: %+v %v", res, err)
	}
	first := changes[0].Name
	now := f.readyPods("web", 3, "example.com/web:v1")
	var replacement string
	var left []string
	for name := range now {
		if orig[name] {
			left = append(left, name)
		} else {
			replacement = name
		}
	}
	sort.Strings(left)
	if replacement == "" || len(left) != 2 {
		t.Fatalf("after the partial detach the ReplicaSet runs %v (originals %v)", now, orig)
	}

	again := f.plan(a, action.DryRunNone, p)
	if again.Noop {
		t.Fatalf("the rerun does nothing, leaving originals %v attached: %s", left, again.Summary)
	}
	var targets []string
	for _, ch := range again.State.([]labelChange) {
		targets = append(targets, ch.Name)
	}
	sort.Strings(targets)
	if strings.Join(targets, ",") != strings.Join(left, ",") {
		t.Fatalf("rerun targets %v, want the originals left %v (not %s, the replacement of %s): %+v", targets, left, replacement, first, again)
	}
	if _, res := f.run(a, action.DryRunNone, p); res.Changed != 2 {
		t.Fatalf("rerun: %+v", res)
	}
	for name := range orig {
		if pod := f.pod(name); pod.Labels["quarantine"] != "true" || pod.Annotations[QuarantinedForIncident] != f.incident {
			t.Errorf("original %s after the rerun: labels %v", name, pod.Labels)
		}
	}
	if pod := f.pod(replacement); pod.Labels["quarantine"] != "" {
		t.Errorf("the replacement %s was quarantined: %v", replacement, pod.Labels)
	}
	f.readyPods("web", 3, "example.com/web:v1")
	if third := f.plan(a, action.DryRunNone, p); !third.Noop {
		t.Errorf("a third run should do nothing: %+v", third)
	}
}

// Without the names (more than maxQuarantineSet pods), the plan time
// tells: a pod from an earlier second is an original, one from the plan's
// second or later may be a replacement.
func TestMissedByPlanTimeWithoutTheNames(t *testing.T) {
	planned := time.Date(2026, 12, 3, 16, 0, 5, 500_000_000, time.UTC)
	pod := func(name string, created time.Time) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
	}
	byTime := detached{plannedAt: planned}
	if !byTime.missed(pod("orig", planned.Add(-2*time.Second).Truncate(time.Second))) {
		t.Error("a pod from an earlier second is an original the run missed")
	}
	if byTime.missed(pod("repl", planned.Add(300*time.Millisecond).Truncate(time.Second))) {
		t.Error("a pod from the plan's second may be a replacement: left alone")
	}
	byName := detached{plannedAt: planned, chosen: map[string]bool{"orig": true}}
	if !byName.missed(pod("orig", planned)) || byName.missed(pod("repl", planned.Add(-time.Hour))) {
		t.Error("with the names recorded, they alone tell")
	}
	if (detached{}).missed(pod("x", planned)) {
		t.Error("nothing recorded: nothing counts as missed")
	}
	// Detached by an irctl that recorded neither: older than the newest
	// detached pod.
	legacy := detached{newest: planned.Truncate(time.Second)}
	if !legacy.missed(pod("orig", planned.Add(-time.Minute))) || legacy.missed(pod("repl", planned.Truncate(time.Second))) {
		t.Error("the creation-time fallback")
	}
}
