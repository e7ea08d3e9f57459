package kubeaction

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// fixture is one test's view of the sandbox: admin clients and a
// namespace of its own, so tests sharing the sandbox do not collide.
type fixture struct {
	t        *testing.T
	cs       kubernetes.Interface
	clients  *kube.Clients
	ns       string
	incident string
	logs     *syncBuffer
}

// syncBuffer collects the actions' log output (the drain library logs from
// several goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sb := sandboxtest.Get(t)
	clients, err := kube.NewClients(sb.RESTConfig, "irctl-test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cs: clients.Core, clients: clients, ns: "ka-" + randHex(4), incident: "SEC-TEST-" + randHex(3), logs: &syncBuffer{}}
	if _, err := f.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *fixture) env(dry action.DryRun) *action.Env {
	return &action.Env{
		Kube:     func() (*kube.Clients, error) { return f.clients, nil },
		DryRun:   dry,
		Log:      zerolog.New(f.logs).Level(zerolog.DebugLevel),
		Incident: f.incident,
	}
}

// validate checks params as the runbook loader would.
func (f *fixture) validate(a action.Action, p runbook.Params) {
	f.t.Helper()
	if v := a.Spec().Validate; v != nil {
		if err := v(p); err != nil {
			f.t.Fatalf("%s: params rejected: %v", a.Spec().Name, err)
		}
	}
}

func (f *fixture) plan(a action.Action, dry action.DryRun, p runbook.Params) *action.Plan {
	f.t.Helper()
	f.validate(a, p)
	plan, err := a.Plan(f.t.Context(), f.env(dry), p)
	if err != nil {
		f.t.Fatalf("%s plan: %v", a.Spec().Name, err)
	}
	return plan
}

// run plans and applies, failing the test on an error.
func (f *fixture) run(a action.Action, dry action.DryRun, p runbook.Params) (*action.Plan, *action.Result) {
	f.t.Helper()
	plan := f.plan(a, dry, p)
	if plan.Noop {
		f.t.Fatalf("%s: plan is a no-op: %s", a.Spec().Name, plan.Summary)
	}
	res, err := a.Apply(f.t.Context(), f.env(dry), p, plan)
	if err != nil {
		f.t.Fatalf("%s apply: %v", a.Spec().Name, err)
	}
	return plan, res
}

func (f *fixture) undo(a action.Action, res *action.Result) *action.Result {
	f.t.Helper()
	if len(res.Undo) == 0 {
		f.t.Fatalf("%s recorded nothing to undo: %+v", a.Spec().Name, res)
	}
	out, err := a.(action.Undoer).Undo(f.t.Context(), f.env(action.DryRunNone), res.Undo)
	if err != nil {
		f.t.Fatalf("%s undo: %v", a.Spec().Name, err)
	}
	return out
}

// versions maps every pod and NetworkPolicy of the namespace to its
// resourceVersion: a write that should not have happened shows here.
func (f *fixture) versions() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	pods, err := f.cs.CoreV1().Pods(f.ns).List(f.t.Context(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, p := range pods.Items {
		out["pod/"+p.Name] = p.ResourceVersion
	}
	nps, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).List(f.t.Context(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, np := range nps.Items {
		out["networkpolicy/"+np.Name] = np.ResourceVersion
	}
	return out
}

func (f *fixture) sameVersions(before map[string]string, what string) {
	f.t.Helper()
	after := f.versions()
	if len(before) != len(after) {
		f.t.Errorf("%s: objects changed: before %v, after %v", what, before, after)
	}
	for k, v := range before {
		if after[k] != v {
			f.t.Errorf("%s changed %s (resourceVersion %s -> %s)", what, k, v, after[k])
		}
	}
}

func (f *fixture) policy(name string) *networkingv1.NetworkPolicy {
	f.t.Helper()
	np, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return np
}

func contains(items []string, s string) bool {
	for _, it := range items {
		if strings.Contains(it, s) {
			return true
		}
	}
	return false
}

func TestIsolateCreatesTheQuarantinePolicyAndUndoDeletesIt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := sandbox.SeedPods(ctx, f.cs, f.ns, 2, map[string]string{"app": "orchestrator", "quarantine": "true"}); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.SeedPods(ctx, f.cs, f.ns, 1, map[string]string{"app": "orchestrator"}); err != nil {
		t.Fatal(err)
	}
	// Another policy that admits ingress to the same pods: the plan must
	// say that the quarantine does not override it.
	_, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-ingress-orchestrator"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orchestrator"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8080))}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := Isolate{}.Spec().MustBind(map[string]any{"namespace": f.ns})
	a := Isolate{}

	// Server dry run: planned and sent, nothing stored.
	before := f.versions()
	plan, res := f.run(a, action.DryRunServer, p)
	if !strings.HasPrefix(plan.Summary, "create NetworkPolicy "+f.ns+"/quarantine-policy") || !strings.Contains(plan.Summary, "selects 2 pods") {
		t.Errorf("plan summary: %s", plan.Summary)
	}
	if len(plan.Targets) != 2 || plan.Count != 1 {
		t.Errorf("plan targets %v, count %d: want the 2 quarantined pods, 1 object", plan.Targets, plan.Count)
	}
	if !contains(plan.Warnings, "allow-ingress-orchestrator also selects 2 of these pods and admits ingress") || !contains(plan.Warnings, "network plugin") {
		t.Errorf("plan warnings: %q", plan.Warnings)
	}
	if res.Changed != 1 {
		t.Errorf("dry-run result: %+v", res)
	}
	f.sameVersions(before, "server dry run")
	if f.policy("quarantine-policy") != nil {
		t.Fatal("server dry run created the policy")
	}

	// For real.
	_, res = f.run(a, action.DryRunNone, p)
	np := f.policy("quarantine-policy")
	if np == nil {
		t.Fatal("policy not created")
	}
	want := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"quarantine": "true"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "forensics"}},
		}}}},
	}
	if !equality.Semantic.DeepEqual(np.Spec, want) {
		t.Errorf("policy spec:\n got %+v\nwant %+v", np.Spec, want)
	}
	if len(np.ManagedFields) == 0 || np.ManagedFields[0].Manager != kube.FieldManager || np.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("policy should be server-side applied by %s: %+v", kube.FieldManager, np.ManagedFields)
	}

	// Idempotent: the second plan has nothing to do.
	if again := f.plan(a, action.DryRunNone, p); !again.Noop || again.Count != 0 {
		t.Errorf("second plan should be a no-op: %+v", again)
	}

	// Undo removes what irctl created; a second undo finds it gone.
	if u := f.undo(a, res); u.Changed != 1 || f.policy("quarantine-policy") != nil {
		t.Errorf("undo should delete the policy: %+v", u)
	}
	if u := f.undo(a, res); u.Changed != 0 || len(u.Failed) != 0 {
		t.Errorf("second undo: %+v", u)
	}
}

func TestIsolateReplacesAnExistingPolicyAndUndoRestoresIt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := sandbox.SeedPods(ctx, f.cs, f.ns, 1, map[string]string{"app": "orchestrator", "isolated": "yes"}); err != nil {
		t.Fatal(err)
	}
	// A policy of the same name made by somebody else, with an ingress
	// rule that server-side apply alone would leave in place.
	prev := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"isolated": "yes"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
	}
	created, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "emergency-isolation"}, Spec: prev},
		metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"})
	if err != nil {
		t.Fatal(err)
	}
	prev = created.Spec // as defaulted by the server
	// Deny all: an empty forensics selector, DNS allowed.
	p := Isolate{}.Spec().MustBind(map[string]any{
		"namespace": f.ns, "name": "emergency-isolation",
		"pod_selector": map[string]string{"isolated": "yes"}, "forensics_selector": map[string]string{}, "allow_dns": true,
	})
	a := Isolate{}

	before := f.versions()
	plan, _ := f.run(a, action.DryRunServer, p)
	if !strings.HasPrefix(plan.Summary, "update NetworkPolicy") || !strings.Contains(plan.Summary, "egress only to DNS") {
		t.Errorf("plan summary: %s", plan.Summary)
	}
	if !contains(plan.Warnings, "kubectl-client-side-apply") {
		t.Errorf("plan should warn about the other manager's rules: %q", plan.Warnings)
	}
	f.sameVersions(before, "server dry run")

	_, res := f.run(a, action.DryRunNone, p)
	np := f.policy("emergency-isolation")
	if len(np.Spec.Ingress) != 0 || len(np.Spec.Egress) != 1 || len(np.Spec.Egress[0].Ports) != 2 || np.Spec.Egress[0].To[0].NamespaceSelector == nil {
		t.Errorf("want no ingress and egress only to DNS, got %+v", np.Spec)
	}
	if np.UID != created.UID {
		t.Error("the policy should be updated in place, not recreated")
	}
	if again := f.plan(a, action.DryRunNone, p); !again.Noop {
		t.Errorf("second plan should be a no-op: %s", again.Summary)
	}

	f.undo(a, res)
	if np := f.policy("emergency-isolation"); np == nil || !equality.Semantic.DeepEqual(np.Spec, prev) {
		t.Errorf("undo should restore the previous spec; got %+v", np)
	}
}

func TestIsolateRejectsAnEmptyPodSelector(t *testing.T) {
	err := Isolate{}.Spec().Validate(Isolate{}.Spec().MustBind(map[string]any{"namespace": "x", "pod_selector": map[string]string{}}))
	if err == nil || !strings.Contains(err.Error(), "every pod") {
		t.Errorf("want a refusal to isolate the whole namespace, got %v", err)
	}
}
