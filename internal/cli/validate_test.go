package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/sandbox"
)

// leakedKey is the seeded attacker's API key (the sandbox stores only its
// hash); validKey is an ordinary user's.
const (
	leakedKey = "attacker-key-1"
	validKey  = "sandbox-key-1"
)

// The validate phase's assertions, in the runbook's form, on the working
// sandbox. The SQL checks count what containment must have stopped:
// requests accepted from the attacker's addresses in the window, and any
// request accepted for a key after its revocation or a user after being
// disabled. Refused attempts (authentication_failed) do not count: a
// locked-out attacker still knocks, and every knock is audited.
const validateRunbook = `apiVersion: irctl/v1
kind: Runbook
name: validate-test
params:
  namespace: {default: x}
  find_ns: {default: x}
  api: {default: "http://127.0.0.1:1"}
  prom: {default: "http://127.0.0.1:1"}
  attacker_ranges: {type: cidrs, default: ["203.0.113.0/24", "198.51.100.23/32", "2001:db8::/32"]}
  window: {type: duration, default: 24h}
  response_window: {type: duration, default: 24h}
  leaked_key: {secret: true, default: x}
  valid_key: {secret: true, default: x}
phases:
  eradicate:
    - name: remove-persistence
      action: k8s.delete
      with: {kinds: [cronjobs, jobs], selector: malicious=true, namespace: "{{ .namespace }}"}
    - name: remove-rogue-deployment
      action: k8s.delete
      with: {kinds: [deployments], names: [kube-metrics-proxy], namespace: "{{ .namespace }}"}
  validate:
    - name: attacker-requests-accepted
      action: sql.query
      with:
        sql: |
          SELECT count(*) FROM audit_events
          WHERE timestamp > now() - $2::interval AND ip_address <<= ANY($1::cidr[])
            AND event_type <> 'authentication_failed'
        args: ["{{ .attacker_ranges }}", "{{ .window }}"]
      expect: {value: 0}
    - name: revoked-credentials-accepted
      action: sql.query
      with:
        sql: |
          SELECT count(*) FROM audit_events e
          WHERE e.event_type <> 'authentication_failed' AND e.timestamp > now() - $1::interval
            AND (EXISTS (SELECT 1 FROM api_keys k WHERE k.key_prefix = e.details->>'key_prefix'
                         AND k.revoked_at > now() - $1::interval AND k.revoked_at < e.timestamp)
              OR EXISTS (SELECT 1 FROM users u WHERE u.id = e.user_id
                         AND u.disabled_at > now() - $1::interval AND u.disabled_at < e.timestamp))
        args: ["{{ .response_window }}"]
      expect: {value: 0}
    - name: leaked-key-refused
      action: http.check
      with: {url: "{{ .api }}/v1/me", bearer: "{{ .leaked_key }}", headers: {X-Forwarded-For: 203.0.113.77}, status: 401}
    - name: valid-key-accepted
      action: http.check
      with: {url: "{{ .api }}/v1/me", bearer: "{{ .valid_key }}", status: 200}
    - name: no-indicators
      action: k8s.find
      with: {namespace: "{{ .find_ns }}", indicators: [malicious], registries: ["203.0.113.66:5000"]}
      expect: {rows: 0}
    - name: no-critical-alerts
      action: prom.query
      with: {url: "{{ .prom }}", query: 'count(ALERTS{alertstate="firing",severity="critical"}) or vector(0)'}
      expect: {value: 0}
`

// promStub answers instant queries with one sample whose value the test
// sets (firing alerts, which the sandbox's real Prometheus has none of).
func promStub(t *testing.T, firing *atomic.Int64) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"%d"]}]}}`, time.Now().Unix(), firing.Load())
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// attackCopy puts the seeded attack's indicators into ns: a CronJob and a
// Job labelled malicious=true and a Deployment running the rogue
// registry's image, so that deleting them leaves the shared sandbox's
// kube-system as seeded.
func (h *harness) attackCopy() {
	h.t.Helper()
	ctx := h.t.Context()
	mal := map[string]string{"app": "kube-cleanup", "malicious": "true"}
	grace := int64(0)
	pod := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: mal}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "init", Image: sandbox.MinerImage}}}}
	if _, err := h.cs.BatchV1().CronJobs(h.ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: sandbox.AttackCronJob, Labels: mal},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: pod}}}}, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.cs.BatchV1().Jobs(h.ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: sandbox.AttackJob, Labels: mal},
		Spec: batchv1.JobSpec{Template: pod}}, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	labels := map[string]string{"app": sandbox.AttackDeployment}
	one := int32(1)
	if _, err := h.cs.AppsV1().Deployments(h.ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: sandbox.AttackDeployment, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{Name: "proxy", Image: sandbox.RogueRegistryImage}}}}}}, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// callAPI sends one request to the orchestrator stand-in as the caller at
// addr with key, returning the status.
func (h *harness) callAPI(key, addr string) int {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(h.t.Context(), http.MethodGet, h.sb.OrchestratorURL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (h *harness) sql(q string, args ...any) int64 {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.sb.DatabaseURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if strings.HasPrefix(q, "SELECT") {
		err = conn.QueryRow(context.Background(), q, args...).Scan(&n)
	} else {
		var tag interface{ RowsAffected() int64 }
		tag, err = conn.Exec(context.Background(), q, args...)
		if err == nil {
			n = tag.RowsAffected()
		}
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func checksByName(t *testing.T, rep engine.Report) map[string]engine.Check {
	t.Helper()
	out := map[string]engine.Check{}
	for _, c := range rep.Checks {
		out[c.Check] = c
	}
	return out
}

// Validate fails on the seeded attack with every check run and reported,
// and passes once the key is revoked, the indicators are deleted and the
// alerts have cleared.
func TestValidateFailsOnTheSeededAttackAndPassesAfterContainment(t *testing.T) {
	h := newHarness(t, 0)
	var firing atomic.Int64
	firing.Store(2)
	promURL := promStub(t, &firing)
	h.attackCopy()
	rb := filepath.Join(t.TempDir(), "validate.yaml")
	if err := os.WriteFile(rb, []byte(validateRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	sets := func(findNS, window string) []string {
		return []string{"-f", rb, "--set", "api=" + h.sb.OrchestratorURL, "--set", "prom=" + promURL, "--set", "find_ns=" + findNS,
			"--set", "window=" + window, "--set", "leaked_key=" + leakedKey, "--set", "valid_key=" + validKey}
	}

	// The leaked key works, from the attacker's address.
	if st := h.callAPI(leakedKey, "203.0.113.77"); st != http.StatusOK {
		t.Fatalf("the seeded leaked key should work before containment: %d", st)
	}

	// On the seeded sandbox (kube-system's real leftovers): every check runs
	// and four fail.
	r := h.run(append(sets("kube-system", "24h"), "validate", "-o", "json")...)
	if r.code != 1 {
		t.Fatalf("validate on the seeded attack: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	reps := parseReports(t, r.stdout)
	if len(reps) != 1 || len(reps[0].Checks) != 6 {
		t.Fatalf("want one report with 6 checks: %+v", reps)
	}
	got := checksByName(t, reps[0])
	want := map[string]string{
		"attacker-requests-accepted": engine.CheckFail, "revoked-credentials-accepted": engine.CheckPass,
		"leaked-key-refused": engine.CheckFail, "valid-key-accepted": engine.CheckPass,
		"no-indicators": engine.CheckFail, "no-critical-alerts": engine.CheckFail,
	}
	for name, w := range want {
		if got[name].Result != w {
			t.Errorf("%s: %+v, want %s", name, got[name], w)
		}
	}
	if c := got["attacker-requests-accepted"]; c.Expected != "value = 0" || c.Seen == "value 0" {
		t.Errorf("the SQL check: %+v", c)
	}
	if c := got["no-indicators"]; c.Expected != "rows = 0" || c.Seen == "rows 0" {
		t.Errorf("the indicators check: %+v", c)
	}
	if c := got["no-critical-alerts"]; c.Seen != "value 2" {
		t.Errorf("the alerts check: %+v", c)
	}
	if c := got["leaked-key-refused"]; !strings.Contains(c.Seen, "status 200") || !strings.Contains(c.Expected, "with Authorization, X-Forwarded-For expecting 401") {
		t.Errorf("the leaked key check: %+v", c)
	}

	// The text table, on this test's copy of the indicators.
	r = h.run(append(sets(h.ns, "24h"), "validate")...)
	if r.code != 1 || !strings.Contains(r.stdout, "validate: 2 of 6 check(s) passed") || !strings.Contains(r.stderr+r.stdout, "4 of 6 check(s) failed") {
		t.Fatalf("validate (text): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"CHECK", "EXPECTED", "SEEN", "RESULT", "no-indicators", "rows = 0", "FAIL", "PASS"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("the table lacks %q:\n%s", w, r.stdout)
		}
	}

	// Containment and eradication: the key revoked (as contain's revoke
	// step does), the indicators deleted through irctl, the alerts clear.
	if n := h.sql(`UPDATE api_keys SET revoked_at = now() WHERE key_hash = encode(sha256(convert_to($1, 'UTF8')), 'hex')`, leakedKey); n != 1 {
		t.Fatalf("revoked %d keys", n)
	}
	contained := time.Now()
	r = h.run(append(sets(h.ns, "24h"), "eradicate", "--yes")...)
	if r.code != 0 {
		t.Fatalf("eradicate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	firing.Store(0)
	h.waitNoRogueObjects()

	// The window starts at containment: the attacker's requests accepted
	// before it are history, its refused ones after it do not count.
	time.Sleep(time.Until(contained.Add(1100 * time.Millisecond)))
	r = h.run(append(sets(h.ns, "1s"), "validate", "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("validate after containment: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, c := range parseReports(t, r.stdout)[0].Checks {
		if c.Result != engine.CheckPass {
			t.Errorf("after containment: %+v", c)
		}
	}
	// The leaked-key check knocked and was refused: audited as such.
	if n := h.sql(`SELECT count(*) FROM audit_events WHERE event_type = 'authentication_failed' AND ip_address = '203.0.113.77' AND timestamp > $1`, contained); n < 1 {
		t.Errorf("the refused attempt was not audited (%d rows)", n)
	}

	// A request accepted for the revoked key (as a stand-in that ignored
	// the revocation would audit it) fails the revoked-credentials check.
	h.sql(`INSERT INTO audit_events (event_type, user_id, ip_address, details) VALUES ('api_call', 13, '10.0.0.5', '{"key_prefix": "sk_live_5f3a9c1e"}')`)
	r2 := h.run(append(sets(h.ns, "1s"), "validate", "-o", "json")...)
	if c := checksByName(t, parseReports(t, r2.stdout)[0])["revoked-credentials-accepted"]; r2.code != 1 || c.Result != engine.CheckFail || c.Seen != "value 1" {
		t.Errorf("a request accepted after revocation: exit %d, %+v", r2.code, c)
	}

	// No key in any output or the journal.
	inc, err := incident.Open(h.stateDir, h.incident)
	if err != nil {
		t.Fatal(err)
	}
	journal, err := os.ReadFile(inc.JournalPath())
	if err != nil || len(journal) == 0 {
		t.Fatalf("journal: %v", err)
	}
	for _, key := range []string{leakedKey, validKey} {
		if strings.Contains(r.stdout+r.stderr+r2.stdout+r2.stderr+string(journal), key) {
			t.Errorf("%s appears in the output or the journal", key)
		}
	}
}

// waitNoRogueObjects waits for the garbage collector to remove the
// deleted Deployment's ReplicaSets and pods and the Job's pods.
func (h *harness) waitNoRogueObjects() {
	h.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		rs, err := h.cs.AppsV1().ReplicaSets(h.ns).List(h.t.Context(), metav1.ListOptions{})
		if err != nil {
			h.t.Fatal(err)
		}
		pods, err := h.cs.CoreV1().Pods(h.ns).List(h.t.Context(), metav1.ListOptions{})
		if err != nil {
			h.t.Fatal(err)
		}
		if len(rs.Items) == 0 && len(pods.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the deleted objects' ReplicaSets (%d) and pods (%d) are still there", len(rs.Items), len(pods.Items))
		}
	}
}

// A bad expectation is bad input: exit 2 naming file and line, for
// `runbook validate` and before a phase runs anything.
func TestBadExpectExits2WithFileAndLine(t *testing.T) {
	rb := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: bad-expect
phases:
  validate:
    - name: no-attacker-requests
      action: sql.query
      with: {sql: "SELECT count(*) FROM audit_events"}
      expect: {value: {lte: 0}}
    - name: health
      action: http.check
      with: {url: "http://127.0.0.1:1/health"}
      expect: {rows: 0}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runOffline("runbook", "validate", rb)
	for _, w := range []string{
		rb + `:9: step no-attacker-requests: expect: value: unknown comparison "lte"`,
		rb + ":13: step health: expect: action http.check returns no table to judge",
	} {
		if r.code != 2 || !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("exit %d, want 2 and %q:\n%s%s", r.code, w, r.stdout, r.stderr)
		}
	}
	r = runOffline("--state-dir", t.TempDir(), "-f", rb, "validate")
	if r.code != 2 || !strings.Contains(r.stderr, rb+":9:") {
		t.Errorf("validate with a bad runbook: exit %d\n%s", r.code, r.stderr)
	}
	// `irctl actions` says which actions expect can judge.
	r = runOffline("actions")
	if !strings.Contains(r.stdout, "sql.query (safe; its result is a table that expect: can judge)") {
		t.Errorf("actions:\n%s", r.stdout)
	}
}

// k8s.secrets-rotated through irctl: the declaration time comes from the
// incident itself; pods older than the rotation fail validate, naming
// them.
func TestSecretsRotatedCheckUsesTheIncidentsDeclaration(t *testing.T) {
	h := newHarness(t, 0)
	ctx := t.Context()
	// A pod bound to a node directly: other tests may leave nodes
	// cordoned, which the scheduler would respect.
	nodes, err := h.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no nodes: %v", err)
	}
	grace := int64(0)
	pod := "reader"
	if _, err := h.cs.CoreV1().Pods(h.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod}, Spec: corev1.PodSpec{
		NodeName: nodes.Items[0].Name, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "api", Image: "example.com/api:1", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "jwt"}}}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		p, err := h.cs.CoreV1().Pods(h.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Running != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s on node %s not running after a minute: %+v", pod, nodes.Items[0].Name, p.Status)
		}
	}
	time.Sleep(1100 * time.Millisecond) // rotated-at has whole seconds
	if _, err := h.cs.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "jwt", Annotations: map[string]string{
		"irctl.dev/rotated-for-incident": h.incident, "irctl.dev/rotated-at": time.Now().UTC().Format(time.RFC3339)}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := filepath.Join(t.TempDir(), "rotated.yaml")
	if err := os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: rotated
params:
  namespace: {default: x}
phases:
  validate:
    - name: secrets-rotated
      action: k8s.secrets-rotated
      with: {namespace: "{{ .namespace }}", names: [jwt]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.run("-f", rb, "validate", "-o", "json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	c := parseReports(t, r.stdout)[0].Checks[0]
	if c.Result != engine.CheckFail || !strings.Contains(c.Seen, "started before its rotation: "+pod) {
		t.Errorf("check: %+v", c)
	}
	// Rotated before the incident was declared: not this incident's rotation.
	sec, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "jwt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Annotations["irctl.dev/rotated-at"] = time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	if _, err := h.cs.CoreV1().Secrets(h.ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = h.run("-f", rb, "validate", "-o", "json")
	if c := parseReports(t, r.stdout)[0].Checks[0]; r.code != 1 || !strings.Contains(c.Seen, "before the incident was declared") {
		t.Errorf("exit %d, check %+v", r.code, c)
	}
}
