package kubeaction

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
)

// The workload actions on the sandbox's working cluster: the controller
// manager rolls Deployments out, the scheduler places the pods and kwok
// makes them Ready.

func (f *fixture) deployment(name string, replicas int32, image string, mutate ...func(*appsv1.Deployment)) {
	f.t.Helper()
	labels := map[string]string{"app": name}
	grace := int64(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
	for _, m := range mutate {
		m(d)
	}
	if _, err := f.cs.AppsV1().Deployments(f.ns).Create(f.t.Context(), d, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// readyPods waits until the Deployment has exactly n pods, all Ready and
// running image, and returns their names; it checks the pods themselves,
// not the controller's status that the action waits on.
func (f *fixture) readyPods(name string, n int, image string) map[string]bool {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := f.cs.CoreV1().Pods(f.ns).List(f.t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			f.t.Fatal(err)
		}
		names, msg := map[string]bool{}, ""
		for _, p := range list.Items {
			switch {
			case p.DeletionTimestamp != nil:
				msg = p.Name + " terminating"
			case p.Spec.Containers[0].Image != image:
				msg = fmt.Sprintf("%s runs %s", p.Name, p.Spec.Containers[0].Image)
			case notReady(&p) != "":
				msg = p.Name + ": " + notReady(&p)
			default:
				names[p.Name] = true
			}
		}
		if msg == "" && len(names) == n && len(list.Items) == n {
			return names
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: want %d Ready pods running %s: %d of %d; %s", name, n, image, len(names), len(list.Items), msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *fixture) depVersion(name string) string {
	f.t.Helper()
	d, err := f.cs.AppsV1().Deployments(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d.ResourceVersion
}

func TestSetImageRollsOutAndUndoRestoresThePreviousImage(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", 2, "example.com/web:1")
	before := f.readyPods("web", 2, "example.com/web:1")
	a := SetImage{}
	p := SetImage{}.Spec().MustBind(map[string]any{"namespace": f.ns, "deployment": "web", "images": map[string]string{"app": "example.com/web:2"}})

	// A server dry run changes nothing, and says what it would do.
	rv := f.depVersion("web")
	plan, res := f.run(a, action.DryRunServer, p)
	if !contains(plan.Targets, "container app: example.com/web:1 -> example.com/web:2") || !contains(plan.Warnings, "no digest") || res.Changed != 1 {
		t.Errorf("dry run: plan %+v, result %+v", plan, res)
	}
	if f.depVersion("web") != rv {
		t.Fatal("server dry run changed the Deployment")
	}

	_, res = f.run(a, action.DryRunNone, p)
	if len(res.Failed) > 0 || res.Changed != 1 {
		t.Fatalf("set-image: %+v", res)
	}
	// The action returns once the rollout is complete: the pods are new,
	// Ready and run the new image.
	after := f.readyPods("web", 2, "example.com/web:2")
	for n := range after {
		if before[n] {
			t.Errorf("pod %s was not replaced", n)
		}
	}
	if again := f.plan(a, action.DryRunNone, p); !again.Noop {
		t.Errorf("second plan should be a no-op: %+v", again)
	}

	undone := f.undo(a, res)
	if len(undone.Failed) > 0 || undone.Changed != 1 {
		t.Fatalf("undo: %+v", undone)
	}
	f.readyPods("web", 2, "example.com/web:1")

	// latest is warned about by name; a digest is not warned about.
	p = p.With("images", map[string]string{"app": "example.com/web:latest"})
	if plan := f.plan(a, action.DryRunNone, p); !contains(plan.Warnings, "mutable tag latest") {
		t.Errorf("latest: warnings %v", plan.Warnings)
	}
	p = p.With("images", map[string]string{"app": "example.com/web@sha256:" + strings.Repeat("a", 64)})
	if plan := f.plan(a, action.DryRunNone, p); len(plan.Warnings) != 0 {
		t.Errorf("digest: warnings %v", plan.Warnings)
	}
	p = p.With("images", map[string]string{"nope": "example.com/web:3"})
	if _, err := a.Plan(t.Context(), f.env(action.DryRunNone), p); err == nil || !strings.Contains(err.Error(), `no container "nope"`) {
		t.Errorf("unknown container: %v", err)
	}
}

func TestStuckRolloutFailsNamingThePods(t *testing.T) {
	f := newFixture(t)
	f.deployment("stuck", 1, "example.com/stuck:1", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"irctl-test/no-such-node": "true"}
	})
	p := SetImage{}.Spec().MustBind(map[string]any{"namespace": f.ns, "deployment": "stuck", "images": map[string]string{"app": "example.com/stuck:2"}, "timeout": 3 * time.Second})
	_, res := f.run(SetImage{}, action.DryRunNone, p)
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error, "did not finish within 3s") || !strings.Contains(res.Failed[0].Error, "not scheduled: Unschedulable") {
		t.Fatalf("want the rollout to fail naming the unschedulable pods: %+v", res)
	}
	// The images were set all the same: undo must know.
	if len(res.Undo) == 0 {
		t.Error("a failed rollout must still record the undo")
	}
}

func TestRolloutRestartReplacesThePods(t *testing.T) {
	f := newFixture(t)
	f.deployment("api", 2, "example.com/api:1")
	before := f.readyPods("api", 2, "example.com/api:1")
	a := RolloutRestart{}
	p := RolloutRestart{}.Spec().MustBind(map[string]any{"namespace": f.ns, "deployment": "api"})

	rv := f.depVersion("api")
	if _, res := f.run(a, action.DryRunServer, p); res.Changed != 1 {
		t.Errorf("dry run: %+v", res)
	}
	if f.depVersion("api") != rv {
		t.Fatal("server dry run changed the Deployment")
	}

	_, res := f.run(a, action.DryRunNone, p)
	if len(res.Failed) > 0 || res.Irreversible != "a restart cannot be undone; pods were replaced" || len(res.Undo) != 0 {
		t.Fatalf("restart: %+v", res)
	}
	if _, ok := any(a).(action.Undoer); ok {
		t.Error("a restart cannot be undone and must not offer to")
	}
	after := f.readyPods("api", 2, "example.com/api:1")
	for n := range after {
		if before[n] {
			t.Errorf("pod %s was not replaced", n)
		}
	}
	d, _ := f.cs.AppsV1().Deployments(f.ns).Get(t.Context(), "api", metav1.GetOptions{})
	if d.Spec.Template.Annotations[RestartedAtAnnotation] == "" {
		t.Errorf("no %s annotation on the template", RestartedAtAnnotation)
	}
}

func TestScaleChangesReadyReplicasAndUndoRestores(t *testing.T) {
	f := newFixture(t)
	f.deployment("worker", 1, "example.com/worker:1")
	f.readyPods("worker", 1, "example.com/worker:1")
	a := Scale{}
	p := Scale{}.Spec().MustBind(map[string]any{"namespace": f.ns, "deployment": "worker", "replicas": int64(3)})

	rv := f.depVersion("worker")
	plan, res := f.run(a, action.DryRunServer, p)
	if plan.Summary != fmt.Sprintf("scale deployment/%s/worker from 1 to 3 replica(s) and wait up to 5m0s for them", f.ns) || res.Changed != 1 {
		t.Errorf("dry run: plan %q, result %+v", plan.Summary, res)
	}
	if f.depVersion("worker") != rv {
		t.Fatal("server dry run changed the Deployment")
	}

	_, res = f.run(a, action.DryRunNone, p)
	if len(res.Failed) > 0 {
		t.Fatalf("scale: %+v", res)
	}
	d, _ := f.cs.AppsV1().Deployments(f.ns).Get(t.Context(), "worker", metav1.GetOptions{})
	if d.Status.ReadyReplicas != 3 {
		t.Errorf("scale returned with %d ready replicas, want 3", d.Status.ReadyReplicas)
	}
	f.readyPods("worker", 3, "example.com/worker:1")

	if undone := f.undo(a, res); len(undone.Failed) > 0 {
		t.Fatalf("undo: %+v", undone)
	}
	f.readyPods("worker", 1, "example.com/worker:1")

	// k8s.scale declares no daemonset param: the loader refuses it.
	if _, err := a.Spec().Bind(map[string]any{"namespace": f.ns, "daemonset": "x", "replicas": int64(1)}); err == nil {
		t.Error("a DaemonSet has no replica count: want an error")
	}
}

// StatefulSets and DaemonSets have rollouts of their own: a restart of
// each waits until every pod is replaced and Ready.
func TestRolloutRestartOfStatefulSetAndDaemonSet(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	grace := int64(0)
	template := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{Name: "app", Image: "example.com/" + app + ":1"}}},
		}
	}
	replicas := int32(2)
	if _, err := f.cs.AppsV1().StatefulSets(f.ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: template("db"), PodManagementPolicy: appsv1.ParallelPodManagement},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.AppsV1().DaemonSets(f.ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: template("agent")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes, err := f.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "kwok.x-k8s.io/node=fake"})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("kwok nodes: %v", err)
	}
	before := map[string]map[string]bool{
		"db":    f.readyPods("db", 2, "example.com/db:1"),
		"agent": f.readyPods("agent", len(nodes.Items), "example.com/agent:1"),
	}
	uids := func(app string) map[string]bool {
		list, _ := f.cs.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		out := map[string]bool{}
		for _, p := range list.Items {
			out[string(p.UID)] = true
		}
		return out
	}
	beforeUIDs := map[string]map[string]bool{"db": uids("db"), "agent": uids("agent")}
	for _, p := range []map[string]any{{"namespace": f.ns, "statefulset": "db"}, {"namespace": f.ns, "daemonset": "agent"}} {
		_, res := f.run(RolloutRestart{}, action.DryRunNone, RolloutRestart{}.Spec().MustBind(p))
		if len(res.Failed) > 0 {
			t.Fatalf("%v: %+v", p, res)
		}
	}
	// StatefulSet pods keep their names: compare UIDs.
	if after := f.readyPods("db", 2, "example.com/db:1"); len(after) != len(before["db"]) {
		t.Errorf("db pods: %v", after)
	}
	f.readyPods("agent", len(nodes.Items), "example.com/agent:1")
	for app, old := range beforeUIDs {
		for uid := range uids(app) {
			if old[uid] {
				t.Errorf("%s: pod %s was not replaced", app, uid)
			}
		}
	}
}
