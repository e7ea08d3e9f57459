package kubeaction

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/kube/faultproxy"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// lossyClients returns clients through a proxy that lets every write in
// namespace ns (and to node, if given) reach the server and then loses the
// response: a 500 or a dropped connection.
func lossyClients(t *testing.T, ns, node string) (*kube.Clients, *faultproxy.Proxy) {
	t.Helper()
	inNS := faultproxy.InNamespace(ns)
	p, err := faultproxy.Start(faultproxy.Options{
		Upstream: sandboxtest.Get(t).RESTConfig,
		// Server dry runs change nothing; they are left alone, or every
		// one of the isolate plan's would fail.
		Match: func(r *http.Request) bool {
			return r.URL.Query().Get("dryRun") == "" && (inNS(r) || (node != "" && r.URL.Path == "/api/v1/nodes/"+node))
		},
		EveryNthWrite: 1,
		WriteFaults:   []faultproxy.Fault{{Kind: faultproxy.ServerError, When: faultproxy.After}, {Kind: faultproxy.Drop, When: faultproxy.After}},
		Seed:          7,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	clients, err := kube.NewClients(p.Config(), "irctl-test")
	if err != nil {
		t.Fatal(err)
	}
	return clients, p
}

// lossy is the fixture with lossyClients.
func (f *fixture) lossy(node string) (*fixture, *faultproxy.Proxy) {
	f.t.Helper()
	clients, p := lossyClients(f.t, f.ns, node)
	g := *f
	g.clients = clients
	return &g, p
}

// once fails unless every write of the ledger reached the server once.
func once(t *testing.T, what string, p *faultproxy.Proxy, want int) {
	t.Helper()
	applied := p.Applied()
	if twice := faultproxy.Twice(applied); len(twice) > 0 {
		t.Errorf("%s: %s", what, strings.Join(twice, "; "))
	}
	if len(applied) != want {
		t.Errorf("%s: %d objects written, want %d: %v", what, len(applied), want, applied)
	}
}

// TestWritesWhoseResponseIsLostAreNotRepeated: every write of the label,
// isolate, secret-rotate and cordon actions, and of their undos, reaches
// the server and then loses its response. Each must find its write done
// on the fresh read, report it as a change, keep it in the undo record,
// and never send it again.
func TestWritesWhoseResponseIsLostAreNotRepeated(t *testing.T) {
	f := newFixture(t)
	if err := sandbox.SeedPods(t.Context(), f.cs, f.ns, 3, map[string]string{"app": "orchestrator"}); err != nil {
		t.Fatal(err)
	}
	node := f.node(false)
	g, p := f.lossy(node)

	lp := Label{}.Spec().MustBind(map[string]any{"namespace": f.ns, "selector": "app=orchestrator", "labels": map[string]string{"quarantine": "true"}})
	_, res := g.run(Label{}, action.DryRunNone, lp)
	var lu labelUndo
	_ = json.Unmarshal(res.Undo, &lu)
	if res.Changed != 3 || len(res.Failed) != 0 || len(lu.Pods) != 3 {
		t.Errorf("label: %+v, undo %s", res, res.Undo)
	}
	once(t, "label", p, 3)

	ip := Isolate{}.Spec().MustBind(map[string]any{"namespace": f.ns})
	_, ires := g.run(Isolate{}, action.DryRunNone, ip)
	np, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).Get(t.Context(), defaultPolicyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var iu isolateUndo
	_ = json.Unmarshal(ires.Undo, &iu)
	if iu.UID != np.UID || iu.Previous != nil || !strings.HasPrefix(ires.Summary, "created") {
		t.Errorf("isolate: %+v, undo %s, policy UID %s", ires, ires.Undo, np.UID)
	}
	once(t, "isolate", p, 1)

	sp := SecretRotate{}.Spec().MustBind(map[string]any{"namespace": f.ns, "name": "jwt"})
	_, sres := g.run(SecretRotate{}, action.DryRunNone, sp)
	first := f.secret("jwt")
	if first == nil || !strings.HasPrefix(sres.Summary, "created Secret") || !strings.Contains(sres.Summary, g.fingerprint(first.Data["secret"])) {
		t.Errorf("secret create: %q", sres.Summary)
	}
	once(t, "secret create", p, 1)
	g.incident = "SEC-TEST-OTHER"
	_, sres = g.run(SecretRotate{}, action.DryRunNone, sp)
	second := f.secret("jwt")
	if !strings.HasSuffix(sres.Summary, ": "+g.fingerprint(second.Data["secret"])+" (was "+g.fingerprint(first.Data["secret"])+")") {
		t.Errorf("secret replace: %q", sres.Summary)
	}
	once(t, "secret replace", p, 1)

	cp := Cordon{}.Spec().MustBind(map[string]any{"nodes": []string{node}})
	_, cres := g.run(Cordon{}, action.DryRunNone, cp)
	if !f.unschedulable(node) || cres.Changed != 1 || len(cres.Undo) == 0 {
		t.Errorf("cordon: %+v", cres)
	}
	once(t, "cordon", p, 1)

	// Undo, through the same lost responses, restores everything.
	if out := g.undo(Label{}, res); out.Changed != 3 || len(out.Failed) != 0 {
		t.Errorf("label undo: %+v", out)
	}
	once(t, "label undo", p, 3)
	if list, _ := f.cs.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "quarantine"}); len(list.Items) != 0 {
		t.Errorf("label undo left %d pods labelled", len(list.Items))
	}
	if out := g.undo(Isolate{}, ires); out.Changed != 1 {
		t.Errorf("isolate undo: %+v", out)
	}
	once(t, "isolate undo", p, 1)
	if _, err := f.cs.NetworkingV1().NetworkPolicies(f.ns).Get(t.Context(), defaultPolicyName, metav1.GetOptions{}); err == nil {
		t.Error("isolate undo left the policy")
	}
	if out := g.undo(Cordon{}, cres); out.Changed != 1 || f.unschedulable(node) {
		t.Errorf("cordon undo: %+v", out)
	}
	once(t, "cordon undo", p, 1)
	t.Logf("faults injected and survived: %d, all responses lost after the write: %v", len(p.Injected()), p.Counts())
}

// TestForensicCopyWhoseResponseIsLostIsKept: a create whose response is
// lost finds its own object on the read back: the copy counts as made,
// stays in the undo record and is recorded as evidence, created once.
func TestForensicCopyWhoseResponseIsLostIsKept(t *testing.T) {
	e := newEvEnv(t)
	orig := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-1", Labels: map[string]string{"app": "orchestrator"}},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: sandbox.OrchestratorImage}}},
	}
	if _, err := e.c.Core.CoreV1().Pods(e.ns).Create(t.Context(), orig, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clients, p := lossyClients(t, e.ns, "")
	env := *e.Env
	env.Kube = func() (*kube.Clients, error) { return clients, nil }
	_, res := run(t, DebugCopy{}, &env, DebugCopy{}.Spec().MustBind(map[string]any{"namespace": e.ns, "selector": "app=orchestrator"}))
	var u copyUndo
	_ = json.Unmarshal(res.Undo, &u)
	if res.Changed != 1 || len(res.Failed) != 0 || len(u.Copies) != 1 {
		t.Fatalf("debug copy: %+v", res)
	}
	once(t, "debug copy", p, 1)
	e.verify(t)
	if s := e.read(t, "forensic-copies/"+e.ns+"/app-1.yaml"); !strings.Contains(s, "name: "+CopyName("app-1", testIncident)) {
		t.Error("evidence lacks the copy")
	}
	out, err := (DebugCopy{}).Undo(t.Context(), &env, res.Undo)
	if err != nil || out.Changed != 1 || len(out.Failed) != 0 {
		t.Fatalf("undo: %+v %v", out, err)
	}
	once(t, "debug copy undo", p, 1)
	if _, err := e.c.Core.CoreV1().Pods(e.ns).Get(t.Context(), u.Copies[0].Name, metav1.GetOptions{}); err == nil {
		t.Error("undo left the copy")
	}
	t.Logf("faults injected and survived: %d (%v)", len(p.Injected()), p.Counts())
}
