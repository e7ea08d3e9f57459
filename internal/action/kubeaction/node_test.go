package kubeaction

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// node creates a Node of the test's own (no kubelet runs behind it).
func (f *fixture) node(cordoned bool) string {
	f.t.Helper()
	name := "ka-node-" + randHex(4)
	_, err := f.cs.CoreV1().Nodes().Create(f.t.Context(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"test-group": f.ns}},
		Spec:       corev1.NodeSpec{Unschedulable: cordoned},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return name
}

func (f *fixture) unschedulable(node string) bool {
	f.t.Helper()
	n, err := f.cs.CoreV1().Nodes().Get(f.t.Context(), node, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return n.Spec.Unschedulable
}

// podOn creates a pod bound to node, owned by owner (nil: no controller).
// Its grace period is 0, so an eviction deletes it at once.
func (f *fixture) podOn(node string, owner *metav1.OwnerReference, lbls map[string]string, emptyDir bool) string {
	f.t.Helper()
	name := "pod-" + randHex(4)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if emptyDir {
		pod.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	}
	created, err := f.cs.CoreV1().Pods(f.ns).Create(f.t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	// Report it Running and Ready, as its kubelet would: the eviction API
	// lets Pending pods go without consulting disruption budgets.
	updatePodStatus(f.t, f.cs, f.ns, created.Name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	return name
}

// controllerRef returns a controller reference to an object of the test's
// own that no controller of the sandbox acts on (a ConfigMap), for pods a
// drain may evict and nothing replaces. It must exist: the sandbox's
// garbage collector deletes pods whose owner is gone.
func (f *fixture) controllerRef() *metav1.OwnerReference {
	f.t.Helper()
	cm, err := f.cs.CoreV1().ConfigMaps(f.ns).Create(f.t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "owner-" + randHex(3)},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID, Controller: ptr.To(true)}
}

// updatePodStatus applies mutate to the pod's status and writes it,
// retrying on a conflict: kwok reports the status of new pods too.
func updatePodStatus(t *testing.T, cs kubernetes.Interface, ns, name string, mutate func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	var out *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(p)
		out, err = cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// updateNodeStatus is updatePodStatus for a Node, which kwok initializes.
func updateNodeStatus(t *testing.T, cs kubernetes.Interface, name string, mutate func(*corev1.Node)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(n)
		_, err = cs.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// daemonSetRef creates a DaemonSet for node (the drain library looks it
// up) and returns the controller reference its pods carry. It targets node
// alone and replaces pods only when they are deleted, so the DaemonSet
// controller leaves the test's pod as it is.
func (f *fixture) daemonSetRef(node string) *metav1.OwnerReference {
	f.t.Helper()
	lbls := map[string]string{"app": "agent"}
	ds, err := f.cs.AppsV1().DaemonSets(f.ns).Create(f.t.Context(), &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: lbls},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
							MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
						}}},
					}},
					Containers: []corev1.Container{{Name: "agent", Image: "example.invalid/agent:1"}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}
}

func (f *fixture) podExists(name string) bool {
	f.t.Helper()
	_, err := f.cs.CoreV1().Pods(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return true
}

// nodeVersions adds the nodes' resourceVersions to versions().
func (f *fixture) nodeVersions(nodes ...string) map[string]string {
	f.t.Helper()
	out := f.versions()
	for _, n := range nodes {
		node, err := f.cs.CoreV1().Nodes().Get(f.t.Context(), n, metav1.GetOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		out["node/"+n] = node.ResourceVersion
	}
	return out
}

func (f *fixture) sameNodeVersions(before map[string]string, nodes []string, what string) {
	f.t.Helper()
	after := f.nodeVersions(nodes...)
	for k, v := range before {
		if after[k] != v {
			f.t.Errorf("%s changed %s (resourceVersion %s -> %s)", what, k, v, after[k])
		}
	}
}

func TestCordonCordonsOnlyWhatIsSchedulableAndUndoUncordonsOnlyThat(t *testing.T) {
	f := newFixture(t)
	fresh, already := f.node(false), f.node(true)
	nodes := []string{fresh, already}
	p := runbook.Params{"nodes": nodes}
	a := Cordon{}

	before := f.nodeVersions(nodes...)
	plan, res := f.run(a, action.DryRunServer, p)
	if plan.Count != 1 || plan.Summary != "cordon 1 of 2 nodes: "+fresh || res.Changed != 1 {
		t.Errorf("plan %+v, result %+v", plan, res)
	}
	f.sameNodeVersions(before, nodes, "server dry run")

	_, res = f.run(a, action.DryRunNone, p)
	if !f.unschedulable(fresh) || res.Changed != 1 {
		t.Errorf("node %s not cordoned: %+v", fresh, res)
	}
	if again := f.plan(a, action.DryRunNone, p); !again.Noop || !strings.Contains(again.Summary, "already cordoned") {
		t.Errorf("second plan should be a no-op: %+v", again)
	}

	u := f.undo(a, res)
	if u.Changed != 1 || f.unschedulable(fresh) {
		t.Errorf("undo should uncordon %s: %+v", fresh, u)
	}
	if !f.unschedulable(already) {
		t.Errorf("undo uncordoned %s, which was cordoned before irctl", already)
	}

	// By selector: the same nodes, found by their label.
	bySelector := runbook.Params{"node_selector": "test-group=" + f.ns}
	if plan := f.plan(a, action.DryRunNone, bySelector); plan.Count != 1 || !contains(plan.Targets, fresh) {
		t.Errorf("plan by selector: %+v", plan)
	}
}

func TestEvictedNoteNamesThePodsAndIsBounded(t *testing.T) {
	if got, want := evictedNote([]string{"b/p2", "a/p1"}), evictedIrreversible+": a/p1, b/p2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var many []string
	for i := range maxNotedPods + 5 {
		many = append(many, fmt.Sprintf("ns/pod-%02d", i))
	}
	got := evictedNote(many)
	if !strings.HasSuffix(got, ", ns/pod-19, ... and 5 more") || strings.Contains(got, "pod-20") {
		t.Errorf("a long note should name %d pods and count the rest: %q", maxNotedPods, got)
	}
}

func TestCordonAndDrainOfNoNodesIsANoop(t *testing.T) {
	f := newFixture(t)
	for _, a := range []action.Action{Cordon{}, Drain{}} {
		plan := f.plan(a, action.DryRunNone, runbook.Params{"nodes": []string{}})
		if !plan.Noop || !strings.Contains(plan.Summary, "no nodes given") {
			t.Errorf("%s of an empty node list: %+v", a.Spec().Name, plan)
		}
	}
	if err := (Cordon{}).Spec().Validate(runbook.Params{}); err == nil {
		t.Error("a step naming no nodes at all should not validate")
	}
	if _, err := (Cordon{}).Plan(t.Context(), f.env(action.DryRunNone), runbook.Params{"node_selector": "test-group=nothing-" + f.ns}); err == nil {
		t.Error("a node selector matching nothing should be an error")
	}
}

func TestDrainEvictsCordonsAndUndoUncordons(t *testing.T) {
	f := newFixture(t)
	node := f.node(false)
	web := []string{f.podOn(node, f.controllerRef(), nil, false), f.podOn(node, f.controllerRef(), nil, false)}
	scratch := f.podOn(node, f.controllerRef(), nil, true)
	agent := f.podOn(node, f.daemonSetRef(node), map[string]string{"app": "agent"}, false)
	// A quarantined pod stays where it is, as evidence.
	quarantined := f.podOn(node, f.controllerRef(), map[string]string{"quarantine": "true"}, false)
	a := Drain{}
	p := runbook.Params{"nodes": []string{node}, "pod_selector": "quarantine!=true"}

	// Without delete_emptydir_data the plan refuses, naming the param.
	f.validate(a, p)
	if _, err := a.Plan(t.Context(), f.env(action.DryRunNone), p); err == nil || !strings.Contains(err.Error(), "delete_emptydir_data: true") {
		t.Fatalf("want a refusal naming delete_emptydir_data, got %v", err)
	}
	p["delete_emptydir_data"] = true

	before := f.nodeVersions(node)
	plan, res := f.run(a, action.DryRunServer, p)
	if plan.Count != 4 || !strings.Contains(plan.Summary, "cordon 1, evict 3 pods") {
		t.Errorf("plan: %+v", plan)
	}
	if !contains(plan.Warnings, "ignoring DaemonSet-managed Pods: "+f.ns+"/"+agent) {
		t.Errorf("plan should say the DaemonSet pod stays: %q", plan.Warnings)
	}
	if res.Changed != plan.Count || len(res.Failed) != 0 {
		t.Errorf("server dry run result: %+v", res)
	}
	f.sameNodeVersions(before, []string{node}, "server dry run")

	start := time.Now()
	_, res = f.run(a, action.DryRunNone, p)
	t.Logf("drain took %s: %s", time.Since(start), res.Summary)
	if res.Changed != 4 || len(res.Failed) != 0 || len(res.Undo) == 0 {
		t.Errorf("result: %+v", res)
	}
	// The note names the evicted pods, and only those: undo uncordons the
	// node and lists them as not undone.
	evicted := []string{f.ns + "/" + web[0], f.ns + "/" + web[1], f.ns + "/" + scratch}
	slices.Sort(evicted)
	if want := evictedIrreversible + ": " + strings.Join(evicted, ", "); res.Irreversible != want {
		t.Errorf("irreversible note:\n got %q\nwant %q", res.Irreversible, want)
	}
	for _, pod := range append(web, scratch) {
		if f.podExists(pod) {
			t.Errorf("pod %s not evicted", pod)
		}
	}
	if !f.podExists(agent) || !f.podExists(quarantined) || !f.unschedulable(node) {
		t.Error("the DaemonSet pod and the quarantined pod should stay, and the node be cordoned")
	}
	if again := f.plan(a, action.DryRunNone, p); !again.Noop {
		t.Errorf("second plan should be a no-op: %+v", again)
	}

	if u := f.undo(a, res); u.Changed != 1 || f.unschedulable(node) {
		t.Errorf("undo should uncordon %s: %+v", node, u)
	}
}

func TestDrainThatStopsPartwayKeepsTheNodeCordonedAndListsWhatIsLeft(t *testing.T) {
	f := newFixture(t)
	node := f.node(false)
	free := f.podOn(node, f.controllerRef(), map[string]string{"app": "free"}, false)
	guarded := f.podOn(node, f.controllerRef(), map[string]string{"app": "guarded"}, false)
	// No disruption controller runs in the sandbox, so the budget's status
	// is never computed and the API server refuses (429) every eviction it
	// covers: the pod cannot leave before the timeout.
	_, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).Create(t.Context(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := runbook.Params{"nodes": []string{node}, "timeout": 3 * time.Second}
	start := time.Now()
	_, res := f.run(Drain{}, action.DryRunNone, p)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the drain should stop at its timeout, took %s", took)
	}
	if len(res.Failed) != 1 || res.Failed[0].Target != f.ns+"/"+guarded || !strings.Contains(res.Failed[0].Error, "still on "+node) {
		t.Errorf("want exactly the guarded pod left: %+v", res.Failed)
	}
	if res.Changed != 2 || f.podExists(free) || !f.podExists(guarded) {
		t.Errorf("want the node cordoned and the free pod evicted: %+v", res)
	}
	if !f.unschedulable(node) {
		t.Error("a drain that stopped partway must leave the node cordoned")
	}
	if !strings.Contains(res.Failed[0].Error, "3s timeout") {
		t.Errorf("the failure should name the timeout: %s", res.Failed[0].Error)
	}
	if !strings.Contains(f.logs.String(), "evicting pod "+f.ns+"/"+guarded) {
		t.Errorf("the library's progress should reach the log:\n%s", f.logs.String())
	}
}

func TestDrainRefusesPodsWithoutAControllerUnlessForced(t *testing.T) {
	f := newFixture(t)
	node := f.node(false)
	bare := f.podOn(node, nil, nil, false)
	p := runbook.Params{"nodes": []string{node}}
	_, err := Drain{}.Plan(t.Context(), f.env(action.DryRunNone), p)
	if err == nil || !strings.Contains(err.Error(), "force: true") || !strings.Contains(err.Error(), bare) {
		t.Fatalf("want a refusal naming force and the pod, got %v", err)
	}
	p["force"] = true
	if plan := f.plan(Drain{}, action.DryRunNone, p); plan.Count != 2 {
		t.Errorf("forced plan: %+v", plan)
	}
}

func TestDrainDeclaresEveryPermissionItUses(t *testing.T) {
	got := map[string]bool{}
	for _, perm := range (Drain{}).Permissions(runbook.Params{"node_selector": "pool=web"}) {
		got[perm.String()] = true
	}
	for _, want := range []string{
		"list nodes cluster-wide", "get nodes cluster-wide", "patch nodes cluster-wide", "list pods cluster-wide", "get pods cluster-wide",
		"create pods/eviction cluster-wide", "delete pods cluster-wide", "get daemonsets.apps cluster-wide",
	} {
		if !got[want] {
			t.Errorf("missing %q in %v", want, got)
		}
	}
}
