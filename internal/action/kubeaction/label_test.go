package kubeaction

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// service creates a Service selecting app=name.
func (f *fixture) service(name string) {
	f.t.Helper()
	if _, err := f.cs.CoreV1().Services(f.ns).Create(f.t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 8080}}},
	}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// endpointIPs are the addresses the Service's EndpointSlices list.
func (f *fixture) endpointIPs(svc string) map[string]bool {
	f.t.Helper()
	return sandboxtest.EndpointIPs(f.t, f.cs, f.ns, svc)
}

// eventually retries check for up to two minutes.
func (f *fixture) eventually(what string, check func() string) {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *fixture) pod(name string) *corev1.Pod {
	f.t.Helper()
	p, err := f.cs.CoreV1().Pods(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// Quarantine with detach, on the working cluster: the pods leave their
// ReplicaSet and Service, the ReplicaSet brings its ready count back with
// clean replacements, the EndpointSlices drop the quarantined addresses,
// the quarantined pods stay (a rollout restart does not touch them), a
// rerun leaves the replacements alone, and undo puts the labels back.
func TestQuarantineDetachesFromReplicaSetAndService(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", 3, "example.com/web:v1")
	f.service("web")
	orig := f.readyPods("web", 3, "example.com/web:v1")
	ips := map[string]string{}
	f.eventually("endpoints of the original pods", func() string {
		eps := f.endpointIPs("web")
		for name := range orig {
			ip := f.pod(name).Status.PodIP
			if ip == "" || !eps[ip] {
				return "pod " + name + " (" + ip + ") not yet in the EndpointSlices"
			}
			ips[name] = ip
		}
		return ""
	})

	a := Label{}
	quarantine := map[string]string{"quarantine": "true"}
	bare := a.Spec().MustBind(map[string]any{"namespace": f.ns, "selector": "app=web", "labels": quarantine})

	// Without detach, isolating every replica in place is refused (exit 5)
	// unless allow_zero_ready says so.
	_, err := a.Plan(t.Context(), f.env(action.DryRunNone), bare)
	if err == nil || exitcode.Code(err) != exitcode.Precondition || !strings.Contains(err.Error(), "every replica of ReplicaSet web-") || !strings.Contains(err.Error(), "Service web would route only to isolated pods") {
		t.Fatalf("quarantining every pod in place: %v (exit %d), want a refusal naming the ReplicaSet and the Service", err, exitcode.Code(err))
	}
	if plan := f.plan(a, action.DryRunNone, bare.With("allow_zero_ready", true)); !contains(plan.Warnings, "allow_zero_ready: every replica of ReplicaSet") || plan.Count != 3 {
		t.Errorf("allow_zero_ready should plan with a warning: %+v", plan)
	}

	p := bare.With("detach", true)
	before := f.versions()
	plan, res := f.run(a, action.DryRunServer, p)
	f.sameVersions(before, "server dry run")
	if plan.Count != 3 || res.Changed != 3 || !contains(plan.Targets, "(remove app, pod-template-hash: selected by ReplicaSet web-") ||
		!contains(plan.Targets, ", Service web)") || !contains(plan.Warnings, "loses 3 pod(s) and starts as many clean replacements (3 replicas wanted)") ||
		!contains(plan.Warnings, "undo puts the removed labels back") {
		t.Fatalf("detach plan: %+v\nresult %+v", plan, res)
	}
	t.Logf("plan: %s\n%s\n%s", plan.Summary, strings.Join(plan.Targets, "\n"), strings.Join(plan.Warnings, "\n"))

	_, res = f.run(a, action.DryRunNone, p)
	if res.Changed != 3 || len(res.Failed) != 0 || !strings.Contains(res.Summary, "3 detached") {
		t.Fatalf("detach: %+v", res)
	}
	for name := range orig {
		pod := f.pod(name)
		if pod.Labels["quarantine"] != "true" || pod.Labels["app"] != "" || pod.Labels["pod-template-hash"] != "" ||
			pod.Annotations[QuarantinedForIncident] != f.incident || pod.Annotations[QuarantineSelector] != "app=web" ||
			!strings.HasPrefix(pod.Annotations[DetachedLabels], "app=web,pod-template-hash=") {
			t.Errorf("pod %s after detach: labels %v annotations %v", name, pod.Labels, pod.Annotations)
		}
	}
	// The ReplicaSet releases the pods and starts replacements; the
	// EndpointSlices list the replacements and none of the quarantined.
	fresh := f.readyPods("web", 3, "example.com/web:v1")
	for name := range fresh {
		if orig[name] {
			t.Errorf("pod %s is still counted as a replica", name)
		}
	}
	f.eventually("the quarantined pods released and out of the EndpointSlices", func() string {
		eps := f.endpointIPs("web")
		for name, ip := range ips {
			if eps[ip] {
				return "quarantined pod " + name + " (" + ip + ") is still an endpoint"
			}
			if o := metav1.GetControllerOf(f.pod(name)); o != nil {
				return "quarantined pod " + name + " still has controller " + o.Name
			}
		}
		if len(eps) != 3 {
			return "want the 3 replacements as endpoints"
		}
		return ""
	})
	d, err := f.cs.AppsV1().Deployments(f.ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || d.Status.ReadyReplicas != 3 {
		t.Errorf("Deployment ready replicas %d, want 3 (%v)", d.Status.ReadyReplicas, err)
	}

	// A rerun in the incident: the selector matches the replacements now,
	// and they are left alone.
	if again := f.plan(a, action.DryRunNone, p); !again.Noop || !strings.Contains(again.Summary, "already quarantined and detached for incident "+f.incident) {
		t.Errorf("rerun should be a no-op: %+v", again)
	}

	// A rollout restart replaces the Deployment's pods; the quarantined
	// ones are not its pods any more and stay.
	restart := RolloutRestart{}.Spec().MustBind(map[string]any{"namespace": f.ns, "deployment": "web", "timeout": 2 * time.Minute})
	f.run(RolloutRestart{}, action.DryRunNone, restart)
	time.Sleep(time.Second)
	for name := range orig {
		if pod := f.pod(name); pod.DeletionTimestamp != nil {
			t.Errorf("the rollout restart is deleting quarantined pod %s", name)
		}
	}

	// Release one pod from quarantine (remove), then undo that.
	var one string
	for name := range orig {
		one = name
		break
	}
	release := a.Spec().MustBind(map[string]any{"namespace": f.ns, "names": []string{one}, "remove": []string{"quarantine"}})
	_, rres := f.run(a, action.DryRunNone, release)
	if _, has := f.pod(one).Labels["quarantine"]; has || rres.Changed != 1 {
		t.Errorf("release: %+v, labels %v", rres, f.pod(one).Labels)
	}
	f.undo(a, rres)
	if f.pod(one).Labels["quarantine"] != "true" {
		t.Errorf("undo of the release: labels %v", f.pod(one).Labels)
	}

	// Undo of the detach puts every label back and takes the annotations
	// away. The Deployment rolled out since: the old ReplicaSet, scaled to
	// 0, adopts the pods again and deletes them, as the plan warned.
	out := f.undo(a, res)
	if out.Changed != 3 || !strings.Contains(out.Summary, "the ReplicaSet adopts them") {
		t.Errorf("undo: %+v", out)
	}
	for name := range orig {
		pod, err := f.cs.CoreV1().Pods(f.ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			continue // already deleted by its old ReplicaSet
		}
		if _, q := pod.Labels["quarantine"]; q || pod.Labels["app"] != "web" || pod.Annotations[QuarantinedForIncident] != "" {
			t.Errorf("pod %s after undo: labels %v annotations %v", name, pod.Labels, pod.Annotations)
		}
	}
}

// Undo of a detach before any rollout: the ReplicaSet adopts its pods
// again and scales back to its replica count.
func TestUndoOfDetachReattachesAndTheReplicaSetScalesBack(t *testing.T) {
	f := newFixture(t)
	f.deployment("api", 2, "example.com/api:v1")
	orig := f.readyPods("api", 2, "example.com/api:v1")
	a := Label{}
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "selector": "app=api", "labels": map[string]string{"quarantine": "true"}, "detach": true})
	_, res := f.run(a, action.DryRunNone, p)
	f.readyPods("api", 2, "example.com/api:v1")
	f.undo(a, res)
	// Two replicas again, all labelled app=api and owned by the ReplicaSet.
	f.eventually("the ReplicaSet back at 2 pods", func() string {
		list, err := f.cs.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		n, kept := 0, 0
		for _, pod := range list.Items {
			if pod.DeletionTimestamp != nil {
				continue
			}
			n++
			if orig[pod.Name] {
				kept++
			}
			if metav1.GetControllerOf(&pod) == nil || pod.Labels["app"] != "api" {
				return "pod " + pod.Name + " not back in its ReplicaSet"
			}
		}
		if n != 2 {
			return "want 2 pods"
		}
		t.Logf("the ReplicaSet kept %d of the 2 original pods", kept)
		return ""
	})
}

// A pod nothing replaces (no ReplicaSet) is refused when it is all a
// Service has, even with detach.
func TestDetachOfPodsNothingReplacesIsRefused(t *testing.T) {
	f := newFixture(t)
	f.service("solo")
	if _, err := f.cs.CoreV1().Pods(f.ns).Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "solo", Labels: map[string]string{"app": "solo"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/solo:v1"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := Label{}
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "names": []string{"solo"}, "labels": map[string]string{"quarantine": "true"}, "detach": true})
	_, err := a.Plan(t.Context(), f.env(action.DryRunNone), p)
	var ce *exitcode.CodedError
	if !errors.As(err, &ce) || ce.Code != exitcode.Precondition || !strings.Contains(err.Error(), "Service solo would have no pods") {
		t.Errorf("want a refusal: %v", err)
	}
	plan := f.plan(a, action.DryRunNone, p.With("allow_zero_ready", true))
	if !contains(plan.Targets, f.ns+"/solo (remove app: selected by Service solo)") {
		t.Errorf("plan: %+v", plan)
	}
}

func TestLabelValidatesWhatItSetsAndRemoves(t *testing.T) {
	v := Label{}.Spec().Validate
	for _, vals := range []map[string]any{
		{"namespace": "x", "selector": "app=a"},
		{"namespace": "x", "selector": "app=a", "remove": []string{"bad key!"}},
		{"namespace": "x", "selector": "app=a", "labels": map[string]string{"q": "1"}, "remove": []string{"q"}},
		{"namespace": "x", "selector": "app=a", "remove": []string{"q"}, "detach": true},
	} {
		if err := v(Label{}.Spec().MustBind(vals)); err == nil {
			t.Errorf("%v: accepted", vals)
		}
	}
}
