package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// k8s.apply through irctl: the step's path resolves beside a runbook file,
// the preflight reads the manifests, the plan prints the diff with its
// indentation, a server dry run writes nothing, a second run is a no-op
// and `undo recover` takes the objects back out.
func TestApplyStepFromARunbookFile(t *testing.T) {
	h := newHarness(t, 0)
	ctx := t.Context()
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("manifests/controls/policy.yaml", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)
	write("manifests/controls/psa.yaml", `apiVersion: v1
kind: Namespace
metadata:
  labels:
    pod-security.kubernetes.io/enforce: baseline
`)
	write("recover.yaml", `apiVersion: irctl/v1
kind: Runbook
name: apply-test
params:
  namespace: {default: x}
phases:
  recover:
    - name: re-enable-controls
      action: k8s.apply
      with: {path: manifests/controls, namespace: "{{ .namespace }}"}
`)
	write("broken.yaml", `apiVersion: irctl/v1
kind: Runbook
name: apply-broken
params:
  namespace: {default: x}
phases:
  recover:
    - name: re-enable-controls
      action: k8s.apply
      with: {path: manifests/missing, namespace: "{{ .namespace }}"}
`)
	rb := filepath.Join(dir, "recover.yaml")
	set := "namespace=" + h.ns
	nsVersion := func() (string, map[string]string) {
		ns, err := h.cs.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ns.ResourceVersion, ns.Labels
	}
	policy := func() bool {
		_, err := h.cs.NetworkingV1().NetworkPolicies(h.ns).Get(ctx, "default-deny-ingress", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	r := h.run("-f", filepath.Join(dir, "broken.yaml"), "--set", set, "recover", "--yes")
	if r.code != 2 || !strings.Contains(r.stderr, "broken.yaml:") || !strings.Contains(r.stderr, "manifests/missing") {
		t.Errorf("a missing manifest directory: exit %d, want 2 naming the step and the path\n%s%s", r.code, r.stdout, r.stderr)
	}

	rv, _ := nsVersion()
	r = h.run("-f", rb, "--set", set, "recover", "--dry-run=server")
	if r.code != 0 {
		t.Fatalf("recover --dry-run=server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"1 to create, 1 to change", "created: networkpolicy.networking.k8s.io " + h.ns + "/default-deny-ingress",
		"changed: namespace " + h.ns, "+    pod-security.kubernetes.io/enforce: baseline", "+  - Ingress"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the plan lacks %q:\n%s", want, r.stdout)
		}
	}
	if now, _ := nsVersion(); now != rv || policy() {
		t.Fatalf("a server dry run wrote (namespace resourceVersion %s -> %s, policy %v)", rv, now, policy())
	}

	r = h.run("-f", rb, "--set", set, "recover", "--yes")
	if r.code != 0 {
		t.Fatalf("recover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, labels := nsVersion(); labels["pod-security.kubernetes.io/enforce"] != "baseline" || !policy() {
		t.Fatalf("not applied: labels %v, policy %v\n%s", labels, policy(), r.stdout)
	}
	rv, _ = nsVersion()
	r = h.run("-f", rb, "--set", set, "recover", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "0 to create, 0 to change, 2 unchanged") {
		t.Errorf("second recover: exit %d, want a no-op\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now, _ := nsVersion(); now != rv {
		t.Errorf("the second recover wrote the namespace (resourceVersion %s -> %s)", rv, now)
	}

	r = h.run("undo", "recover", "--yes")
	if r.code != 0 {
		t.Fatalf("undo recover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, labels := nsVersion(); labels["pod-security.kubernetes.io/enforce"] != "" || policy() {
		t.Errorf("undo left labels %v, policy %v\n%s", labels, policy(), r.stdout)
	}
}

// A shipped runbook named on the command line has the embedded runbooks'
// directory as its steps' base, where the shipped manifests are.
func TestShippedRunbookResolvesEmbeddedManifests(t *testing.T) {
	f := &factory{}
	if _, _, err := f.readRunbook("security-incident"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"manifests/security-incident/network-policies", "manifests/security-incident/pod-security",
		"manifests/k8s-cluster-compromise/monitoring", "manifests/k8s-cluster-compromise/hardening"} {
		if st, err := fs.Stat(f.runbookDir, d); err != nil || !st.IsDir() {
			t.Errorf("%s in the embedded runbooks' directory: %v", d, err)
		}
	}
	file := filepath.Join(t.TempDir(), "mine.yaml")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.readRunbook(file); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(f.runbookDir, "mine.yaml"); err != nil {
		t.Errorf("a runbook file's steps resolve beside it: %v", err)
	}
}
