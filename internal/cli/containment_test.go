package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

const shippedRunbook = "../../runbooks/security-incident.yaml"

// apiStatus is the stand-in API's status for GET /v1/me with header k: v.
func (h *harness) apiStatus(k, v string) int {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), http.MethodGet, h.sb.OrchestratorURL+"/v1/me", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set(k, v)
	req.Header.Set("User-Agent", "irctl-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// until retries check for up to two minutes.
func until(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// demoPods maps the demo namespace's pods matching selector to their IPs.
func (h *harness) demoPods(selector string) map[string]*corev1.Pod {
	h.t.Helper()
	list, err := h.cs.CoreV1().Pods(sandbox.DemoNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			out[list.Items[i].Name] = &list.Items[i]
		}
	}
	return out
}

func (h *harness) demoEndpointIPs() map[string]bool {
	h.t.Helper()
	return sandboxtest.EndpointIPs(h.t, h.cs, sandbox.DemoNamespace, sandbox.OrchestratorDeployment)
}

func (h *harness) jwtKey() []byte {
	h.t.Helper()
	s, err := h.cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(h.t.Context(), "orchestrator-jwt-secret", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return s.Data["secret"]
}

func (h *harness) orchestratorReady() string {
	d, err := h.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(context.Background(), sandbox.OrchestratorDeployment, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.ReadyReplicas != *d.Spec.Replicas || st.UpdatedReplicas != *d.Spec.Replicas || st.Replicas != *d.Spec.Replicas {
		return fmt.Sprintf("orchestrator not rolled out: %+v", st)
	}
	return ""
}

// The shipped runbook's contain phase on the demo platform, with its
// defaults: the orchestrator's pods are quarantined and detached (the
// ReplicaSet replaces them, the Service's EndpointSlices drop them, they
// stay through the restart), the JWT key the orchestrator reads is
// rotated and the Deployment restarted, so a token signed with the old
// key works before and is refused (401) after; the attacker's key named
// break-glass-primary is revoked while the break-glass keys (by id and
// prefix) work. A rerun changes nothing; undo puts the labels back.
func TestContainPhaseEndToEndOnTheDemoPlatform(t *testing.T) {
	h := newHarness(t, 0)
	ctx := t.Context()
	until(t, "the orchestrator before contain", h.orchestratorReady)
	t.Cleanup(func() {
		// Leave the demo platform as the next test expects it: labels
		// back (or the quarantined pods gone), no policy, 3 ready pods.
		if r := h.run("undo", "contain", "--yes"); r.code != 0 {
			t.Errorf("undo contain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for name := range h.demoPods(kubeaction.LabelForensicCopyOf) {
			_ = h.cs.CoreV1().Pods(sandbox.DemoNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		for name := range h.demoPods("quarantine") {
			_ = h.cs.CoreV1().Pods(sandbox.DemoNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		until(t, "the orchestrator after undo", h.orchestratorReady)
	})

	orig := h.demoPods("app=orchestrator")
	if len(orig) != 3 {
		t.Fatalf("want the 3 orchestrator pods, got %d", len(orig))
	}
	oldKey := h.jwtKey()
	oldToken, err := sandbox.SignOrchestratorJWT(oldKey, 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	until(t, "old-key JWT before contain", func() string {
		if c := h.apiStatus("Authorization", "Bearer "+oldToken); c != http.StatusOK {
			return fmt.Sprintf("status %d, want 200", c)
		}
		return ""
	})
	for key, want := range map[string]int{"attacker-key-3": 200, "break-glass-1": 200, "break-glass-2": 200} {
		if c := h.apiStatus("X-API-Key", key); c != want {
			t.Errorf("%s before contain: %d, want %d", key, c, want)
		}
	}

	set := []string{"-f", shippedRunbook, "--set", "namespace=" + sandbox.DemoNamespace}
	r := h.run(append([]string{"contain", "--yes"}, set...)...)
	t.Logf("contain:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("contain: exit %d", r.code)
	}
	for _, want := range []string{"(remove app, pod-template-hash: selected by ReplicaSet orchestrator-", ", Service orchestrator)",
		"loses 3 pod(s) and starts as many clean replacements", "read as environment variables by deployment/orchestrator (env JWT_SECRET)",
		"restarted deployment/llm-orchestrator/orchestrator at"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("contain output lacks %q", want)
		}
	}

	// The quarantined pods stay, released by their ReplicaSet and out of
	// the Service; the Deployment is back at 3 ready pods, all new.
	until(t, "the orchestrator after contain", h.orchestratorReady)
	fresh := h.demoPods("app=orchestrator")
	for name := range fresh {
		if orig[name] != nil {
			t.Errorf("pod %s is still one of the Deployment's", name)
		}
	}
	until(t, "quarantined pods kept, released and out of the EndpointSlices", func() string {
		eps := h.demoEndpointIPs()
		q := h.demoPods("quarantine=true")
		for name, p := range orig {
			qp := q[name]
			if qp == nil {
				return "quarantined pod " + name + " is gone"
			}
			if o := metav1.GetControllerOf(qp); o != nil {
				return "quarantined pod " + name + " still has controller " + o.Name
			}
			if qp.Annotations[kubeaction.QuarantinedForIncident] != h.incident {
				return "pod " + name + " lacks the incident annotation"
			}
			if eps[p.Status.PodIP] {
				return "quarantined pod " + name + " (" + p.Status.PodIP + ") is still an endpoint"
			}
		}
		if len(eps) != 3 {
			return fmt.Sprintf("want the 3 replacements as endpoints, have %d", len(eps))
		}
		return ""
	})

	// The new key is live: the old token is refused, one signed with the
	// new key accepted.
	sec, err := h.cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(ctx, "orchestrator-jwt-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Annotations[kubeaction.RotatedForIncident] != h.incident || sec.Annotations[kubeaction.RotatedAt] == "" || string(sec.Data["secret"]) == string(oldKey) {
		t.Errorf("orchestrator-jwt-secret not rotated for %s: %v", h.incident, sec.Annotations)
	}
	newToken, err := sandbox.SignOrchestratorJWT(sec.Data["secret"], 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	until(t, "the rotation live on the stand-in", func() string {
		if c := h.apiStatus("Authorization", "Bearer "+oldToken); c != http.StatusUnauthorized {
			return fmt.Sprintf("old-key JWT: %d, want 401", c)
		}
		if c := h.apiStatus("Authorization", "Bearer "+newToken); c != http.StatusOK {
			return fmt.Sprintf("new-key JWT: %d, want 200", c)
		}
		return ""
	})
	t.Logf("old-key JWT: 200 before contain, 401 after")
	// Keys: the attacker's "break-glass-primary" revoked, the real ones not.
	for key, want := range map[string]int{"attacker-key-3": 401, "attacker-key-1": 401, "break-glass-1": 200, "break-glass-2": 200} {
		if c := h.apiStatus("X-API-Key", key); c != want {
			t.Errorf("%s after contain: %d, want %d", key, c, want)
		}
	}

	// A rerun changes nothing: the replacements are left alone, the key
	// is not rotated again, the Deployment not restarted again.
	dep, _ := h.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, sandbox.OrchestratorDeployment, metav1.GetOptions{})
	r = h.run(append([]string{"contain", "--yes"}, set...)...)
	if r.code != 0 || strings.Count(r.stdout, "nothing to change") != 6 || !strings.Contains(r.stdout, "already quarantined and detached for incident "+h.incident) ||
		!strings.Contains(r.stdout, "was restarted after Secret llm-orchestrator/orchestrator-jwt-secret was rotated") {
		t.Errorf("rerun: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if again, _ := h.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, sandbox.OrchestratorDeployment, metav1.GetOptions{}); again.Generation != dep.Generation {
		t.Errorf("the rerun restarted the orchestrator (generation %d -> %d)", dep.Generation, again.Generation)
	}
	if len(h.demoPods("quarantine=true")) != 3 {
		t.Errorf("the rerun quarantined more pods: %v", h.demoPods("quarantine=true"))
	}

	// Preserve collects the quarantined pods (evidence_selector), not
	// their replacements: their logs, and forensic copies of them.
	r = h.run(append([]string{"preserve", "--yes"}, set...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "saved 3 of 3 container log(s)") || !strings.Contains(r.stdout, "created 3 forensic copies") {
		t.Fatalf("preserve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	copies := h.demoPods(kubeaction.LabelForensicCopyOf)
	for _, c := range copies {
		if orig[c.Labels[kubeaction.LabelForensicCopyOf]] == nil {
			t.Errorf("forensic copy %s is of %s, not of a quarantined pod", c.Name, c.Labels[kubeaction.LabelForensicCopyOf])
		}
	}
	if len(copies) != 3 {
		t.Errorf("want 3 forensic copies, have %d", len(copies))
	}
}

// The revoke step's guard: an empty break-glass list, or one naming no
// active key (ids that do not exist or are revoked), fails before COMMIT
// with exit 1 and nothing revoked; allow_no_break_glass lets it revoke
// every key.
func TestRevokeGuardRefusesWithoutAnActiveBreakGlassKey(t *testing.T) {
	h := newHarness(t, 1)
	revoked := func() int {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), h.sb.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := revoked()
	for _, tc := range []struct{ name, ids, prefixes string }{
		{"empty list", "", ""},
		{"ids that do not exist or are revoked", "9999,9", ""},
		{"a prefix nobody has", "", "sk_live_nothere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run("contain", "--yes", "--set", "break_glass_key_ids="+tc.ids, "--set", "break_glass_key_prefixes="+tc.prefixes)
			t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
			if r.code != exitcode.Error || !strings.Contains(r.stdout+r.stderr, "guard failed: no break-glass key (break_glass_key_ids, break_glass_key_prefixes) would remain active") ||
				!strings.Contains(r.stdout+r.stderr, "rolled back, nothing changed") {
				t.Errorf("exit %d, want %d naming the guard\n%s%s", r.code, exitcode.Error, r.stdout, r.stderr)
			}
			if n := revoked(); n != before {
				t.Errorf("revoked keys %d -> %d: the guard's failure committed", before, n)
			}
		})
	}
	// By id alone: the attacker's key named break-glass-primary (121) is
	// revoked, the break-glass keys 119 and 120 are not.
	if r := h.run("contain", "--yes", "--set", "break_glass_key_ids=119,120", "--set", "break_glass_key_prefixes="); r.code != 0 {
		t.Fatalf("contain sparing ids 119,120: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if total, bg := h.activeKeys(); total != 2 || bg != 2 {
		t.Errorf("after revoke by id: %d active keys (%d break-glass), want only 119 and 120", total, bg)
	}
	// Locking everyone out is allowed when the runbook says so.
	if r := h.run("contain", "--yes", "--set", "break_glass_key_ids=", "--set", "break_glass_key_prefixes=", "--set", "allow_no_break_glass=true"); r.code != 0 {
		t.Fatalf("contain with allow_no_break_glass: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if total, _ := h.activeKeys(); total != 0 {
		t.Errorf("allow_no_break_glass left %d active keys", total)
	}
}
