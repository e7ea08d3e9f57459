package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/kube/faultproxy"
	"irctl.dev/irctl/internal/sandbox"
)

// faultPods is how many pods the fault tests quarantine.
const faultPods = 16

// TestContainSurvivesInjectedFaults runs the contain phase of the shipped
// runbook once straight against the API server and once through a proxy
// that injects a fault into every second write and every fourth read in
// the test's namespace: 409s, 429s with Retry-After, 500s, and connections
// dropped before the request reaches the server or after the server has
// applied it. It checks that the faulted run ends as the clean one did,
// that no write reached the server twice, that the journal's undo records
// name everything changed, and that undo (through faults too) restores
// the state before contain. It logs the number of faults injected.
func TestContainSurvivesInjectedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the contain phase against the sandbox")
	}
	clean := newHarness(t, faultPods)
	if r := clean.run("contain", "--yes"); r.code != 0 {
		t.Fatalf("clean contain: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	want := clean.kubeState()
	total := 0
	for _, seed := range []uint64{8, 21, 34} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { total += containThroughFaults(t, seed, want) })
	}
	t.Logf("faults injected and survived over the three seeds: %d", total)
}

// containThroughFaults runs contain, then undo, through the fault proxy
// seeded with seed, checks the outcome and returns the faults injected.
func containThroughFaults(t *testing.T, seed uint64, want string) int {
	h := newHarness(t, faultPods)
	before := h.kubeState()
	p, err := faultproxy.Start(faultproxy.Options{
		Upstream:      h.sb.RESTConfig,
		Match:         faultproxy.InNamespace(h.ns),
		EveryNthWrite: 2,
		EveryNthRead:  4,
		Seed:          seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(kc, sandbox.DemoNamespace); err != nil {
		t.Fatal(err)
	}

	r := h.run("contain", "--yes", "--kubeconfig", kc)
	if r.code != 0 {
		t.Fatalf("contain through faults: exit %d\n%s\n%s\nfaults: %v", r.code, r.stdout, r.stderr, p.Injected())
	}
	containFaults := p.Injected()
	if got := h.kubeState(); got != want {
		t.Errorf("state after contain through faults differs from a clean run's:\n got %s\nwant %s", got, want)
	}
	if twice := faultproxy.Twice(p.Applied()); len(twice) > 0 {
		t.Errorf("contain applied writes twice: %s", strings.Join(twice, "; "))
	}
	h.checkUndoRecords()

	r = h.run("undo", "contain", "--yes", "--kubeconfig", kc)
	if r.code != 0 {
		t.Fatalf("undo through faults: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The rotated Secret stays rotated (that cannot be undone): the rest
	// is as before contain.
	if got := h.kubeState(); stripSecret(got) != stripSecret(before) {
		t.Errorf("undo through faults did not restore the state before contain:\n got %s\nwant %s", got, before)
	}
	if twice := faultproxy.Twice(p.Applied()); len(twice) > 0 {
		t.Errorf("undo applied writes twice: %s", strings.Join(twice, "; "))
	}

	all := p.Injected()
	if len(containFaults) < 10 {
		t.Errorf("only %d faults injected into contain; the test means little", len(containFaults))
	}
	t.Logf("faults injected and survived: %d (%d in contain, %d in undo): %s", len(all), len(containFaults), len(all)-len(containFaults), describe(all))
	return len(all)
}

// describe counts injections by fault and by kind of object.
func describe(in []faultproxy.Injection) string {
	n := map[string]int{}
	for _, x := range in {
		kind := "other"
		for _, k := range []string{"pods", "networkpolicies", "secrets"} {
			if strings.Contains(x.Path, "/"+k) {
				kind = k
			}
		}
		n[fmt.Sprintf("%s %s %s", x.Fault, x.Method, kind)]++
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// kubeState describes what contain changes in the harness's namespace,
// without names that differ between namespaces: the pods' label sets
// (sorted), the quarantine policy's labels and spec, and the rotated
// Secret's labels, annotations and key length (never its value).
func (h *harness) kubeState() string {
	h.t.Helper()
	ctx := context.Background()
	pods, err := h.cs.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var sets []string
	for _, p := range pods.Items {
		sets = append(sets, kubeaction.FormatLabels(p.Labels))
	}
	sort.Strings(sets)
	var b strings.Builder
	fmt.Fprintf(&b, "pods[%s]", strings.Join(sets, " "))
	np, err := h.cs.NetworkingV1().NetworkPolicies(h.ns).Get(ctx, "quarantine-policy", metav1.GetOptions{})
	if err == nil {
		spec, _ := json.Marshal(np.Spec)
		fmt.Fprintf(&b, " policy[%s %s]", kubeaction.FormatLabels(np.Labels), spec)
	}
	s, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "orchestrator-jwt-secret-emergency", metav1.GetOptions{})
	if err == nil {
		ann := maps.Clone(s.Annotations)
		if _, ok := ann[kubeaction.RotatedAt]; ok {
			ann[kubeaction.RotatedAt] = "set" // when, which differs between runs
		}
		fmt.Fprintf(&b, " secret[%s %s %s len=%d keys=%d]", kubeaction.FormatLabels(s.Labels), kubeaction.FormatLabels(ann), s.Type, len(s.Data["secret"]), len(s.Data))
	}
	return b.String()
}

func stripSecret(state string) string {
	if i := strings.Index(state, " secret["); i >= 0 {
		return state[:i]
	}
	return state
}

// checkUndoRecords checks that the journal's undo records of contain name
// every pod labelled and the policy as it is on the server.
func (h *harness) checkUndoRecords() {
	h.t.Helper()
	ctx := context.Background()
	undo := map[string]json.RawMessage{}
	for _, rec := range h.journal() {
		if rec.Kind == "outcome" {
			undo[rec.Step] = rec.Undo
		}
	}
	var labels struct {
		Pods []struct{ Name string } `json:"pods"`
	}
	if err := json.Unmarshal(undo["quarantine-pods"], &labels); err != nil || len(labels.Pods) != faultPods {
		h.t.Errorf("undo record of quarantine-pods names %d pods, want %d (%v): %s", len(labels.Pods), faultPods, err, undo["quarantine-pods"])
	}
	var policy struct {
		UID      string          `json:"uid"`
		Previous json.RawMessage `json:"previous"`
	}
	np, err := h.cs.NetworkingV1().NetworkPolicies(h.ns).Get(ctx, "quarantine-policy", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := json.Unmarshal(undo["isolate-quarantined-pods"], &policy); err != nil || policy.UID != string(np.UID) || string(policy.Previous) != "null" {
		h.t.Errorf("undo record of isolate-quarantined-pods: %s (%v), want the created policy's UID %s", undo["isolate-quarantined-pods"], err, np.UID)
	}
}
