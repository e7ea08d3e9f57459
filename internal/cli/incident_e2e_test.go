package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// The seeded attack's source addresses (testdata/sandbox/seed.sql).
const seededAttackers = "198.51.100.23,203.0.113.77,2001:db8:bad:1::21"

// e2e runs irctl against a sandbox of its own: the shipped runbook
// changes the demo platform for good (passwords, images), which other
// tests share.
type e2e struct {
	t        *testing.T
	sb       *sandbox.Sandbox
	cs       kubernetes.Interface
	stateDir string
	incident string
	dbURL    string   // the responder's role, not the application's, whose password eradicate rotates
	outputs  []string // every run's stdout and stderr, searched for secrets at the end
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	bin := sandboxtest.RequireBins(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, sandbox.Options{BinDir: bin, Seed: true})
	if err != nil {
		t.Fatalf("integration: starting the sandbox: %v", err)
	}
	t.Cleanup(func() { _ = sb.Stop() })
	cs, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, sb: sb, cs: cs, stateDir: t.TempDir(), dbURL: sb.ResponderDatabaseURL}
	r := e.run("declare", "--severity", "P0", "--title", "end to end")
	if r.code != 0 {
		t.Fatalf("declare: %+v", r)
	}
	e.incident = strings.TrimSpace(r.stdout)
	return e
}

func (e *e2e) run(args ...string) result { return e.runStdin("", args...) }

func (e *e2e) runStdin(stdin string, args ...string) result {
	full := []string{"--kubeconfig", e.sb.KubeconfigPath, "--database-url", e.dbURL, "--state-dir", e.stateDir}
	if e.incident != "" {
		full = append(full, "--incident", e.incident)
	}
	var out, errb bytes.Buffer
	code := Run(context.Background(), append(full, args...), IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
	e.outputs = append(e.outputs, out.String(), errb.String())
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (e *e2e) mustRun(args ...string) string {
	e.t.Helper()
	return e.mustRunStdin("", args...)
}

func (e *e2e) mustRunStdin(stdin string, args ...string) string {
	e.t.Helper()
	r := e.runStdin(stdin, args...)
	if r.code != 0 {
		e.t.Fatalf("irctl %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// settled waits until the service runs the Deployment's current
// generation (its /health says which), as it does a moment after a
// rollout completes: probing before that would measure the stand-in's
// polling, not irctl.
func (e *e2e) settled() {
	e.t.Helper()
	d, err := e.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(context.Background(), "orchestrator", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(e.sb.OrchestratorURL + "/health")
		if err != nil {
			e.t.Fatal(err)
		}
		var h struct{ Generation int64 }
		_ = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if h.Generation >= d.Generation {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the service still runs generation %d of the Deployment, not %d", h.Generation, d.Generation)
		}
	}
}

// api calls the orchestrator stand-in as the attacker would.
func (e *e2e) api(header, value string) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.sb.OrchestratorURL+"/v1/me", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.77")
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// health is the stand-in's /health, given a few seconds to settle: it
// takes up a new configuration shortly after a rollout completes, as a
// load balancer's health check would see.
func (e *e2e) health() int {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(e.sb.OrchestratorURL + "/health")
		if err != nil {
			e.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			return resp.StatusCode
		}
	}
}

// state is what the eradicate phase changes, so a dry run can be shown to
// change none of it: the Deployment's and the password Secret's
// resourceVersions, the role's password verifier and disabled users.
func (e *e2e) state() string {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, "orchestrator", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(ctx, "orchestrator-db", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	query := func(url, sql string) string {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			e.t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
			e.t.Fatal(err)
		}
		return v
	}
	verifier := query(e.sb.AdminDatabaseURL, `SELECT rolpassword FROM pg_authid WHERE rolname = 'orchestrator'`)
	disabled := query(e.sb.ResponderDatabaseURL, `SELECT count(*)::text FROM users WHERE disabled_at IS NOT NULL`)
	return d.ResourceVersion + " " + s.ResourceVersion + " " + verifier + " " + disabled
}

// The shipped security-incident runbook, phase by phase on the seeded
// platform, proving each phase's effect on the servers and on the service
// the attacker uses.
func TestSecurityIncidentRunbookEndToEnd(t *testing.T) {
	e := newE2E(t)
	if got := e.api("X-API-Key", e.sb.AttackerAPIKey); got != http.StatusOK {
		t.Fatalf("before contain, the leaked key gets %d, want 200", got)
	}
	if got := e.api("Authorization", "Bearer "+e.sb.AttackerJWT); got != http.StatusOK {
		t.Fatalf("before contain, the stolen JWT gets %d, want 200", got)
	}

	e.mustRun("contain", "--yes")
	e.settled()
	if got := e.api("X-API-Key", e.sb.AttackerAPIKey); got != http.StatusUnauthorized {
		t.Errorf("after contain, the leaked key gets %d, want 401", got)
	}
	if got := e.api("Authorization", "Bearer "+e.sb.AttackerJWT); got != http.StatusUnauthorized {
		t.Errorf("after contain, the stolen JWT gets %d, want 401 (the signing secret rotated and the service restarted)", got)
	}

	e.mustRun("assess", "--yes", "--set", "suspicious_ips="+seededAttackers)

	// Validate fails while the attack is in place, naming what is not
	// over, and every check ran.
	validate := func() result {
		return e.run("validate", "-o", "json", "--set", "api_url="+e.sb.OrchestratorURL,
			"--set", "leaked_api_key="+e.sb.AttackerAPIKey, "--set", "stolen_jwt="+e.sb.AttackerJWT)
	}
	r := validate()
	if r.code != 1 {
		t.Fatalf("validate before eradicate: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	failed := map[string]bool{}
	for _, rep := range parseReports(t, r.stdout) {
		for _, c := range rep.Checks {
			failed[c.Check] = c.Result != "pass"
		}
	}
	if len(failed) != 6 || !failed["secrets-rotated"] || failed["leaked-key-refused"] || failed["stolen-jwt-refused"] {
		t.Errorf("validate before eradicate: %v, want 6 checks, the database password not yet rotated, the leaked key and the stolen JWT refused", failed)
	}

	// Eradicate rehearsed: nothing changes, and the plan counts what the
	// real run then changes.
	before := e.state()
	// The new LLM provider key a person obtained, from stdin as an
	// operator would give it.
	const newLLMKey = "sk-provider-e2e-canary-7f3c"
	out := e.mustRunStdin(newLLMKey+"\n", "eradicate", "--dry-run=server", "-o", "json", "--set-stdin", "new_llm_key")
	if after := e.state(); after != before {
		t.Fatalf("eradicate --dry-run=server changed the servers: %s -> %s", before, after)
	}
	planned := map[string]int{}
	for _, rep := range parseReports(t, out) {
		if rep.Inputs["account_ids"] == nil || rep.Inputs["account_ids"].Values != 3 {
			t.Errorf("eradicate's account_ids should come from assess (3 accounts): %+v", rep.Inputs)
		}
		for _, s := range rep.Steps {
			if s.Plan != nil {
				planned[s.Step] = s.Plan.Count
			}
		}
	}
	out = e.mustRunStdin(newLLMKey+"\n", "eradicate", "--yes", "-o", "json", "--set-stdin", "new_llm_key")
	for _, rep := range parseReports(t, out) {
		for _, s := range rep.Steps {
			if s.Step == "disable-compromised-accounts" && planned[s.Step] != 3 {
				t.Errorf("disable-compromised-accounts: planned %d, want 3", planned[s.Step])
			}
			// The rehearsal predicted what the real run changed, step by
			// step (the manual steps change nothing on a server).
			if s.Status == "applied" && s.Action != "manual" && (s.Result == nil || s.Result.Changed != planned[s.Step]) {
				t.Errorf("%s: the rehearsal planned %d change(s), the run made %+v", s.Step, planned[s.Step], s.Result)
			}
			if s.Step == "review-recent-changes" && s.Status != "skipped" {
				t.Errorf("the manual step under --yes: %s, want skipped", s.Status)
			}
		}
	}
	d, err := e.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(t.Context(), "orchestrator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/llm-orchestrator/orchestrator:v0.1.0-verified" {
		t.Errorf("after eradicate the service runs %s", img)
	}
	// The old database password no longer logs in, and the service, which
	// was restarted with the new one from the Secret, is healthy.
	if conn, err := pgx.Connect(t.Context(), e.sb.DatabaseURL); err == nil {
		conn.Close(context.Background())
		t.Error("the old database password still logs in after eradicate")
	}
	if got := e.health(); got != http.StatusOK {
		t.Errorf("after eradicate /health is %d, want 200", got)
	}

	// Recover rehearsed: nothing changes (the Deployment, the namespace's
	// labels and policies), then run.
	recoverState := func() string {
		d, err := e.cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(t.Context(), "orchestrator", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := e.cs.CoreV1().Namespaces().Get(t.Context(), sandbox.DemoNamespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pols, err := e.cs.NetworkingV1().NetworkPolicies(sandbox.DemoNamespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s %s %d", d.ResourceVersion, ns.ResourceVersion, len(pols.Items))
	}
	before = recoverState()
	out = e.mustRun("recover", "--dry-run=server", "-o", "json", "--set", "api_url="+e.sb.OrchestratorURL, "--set", "monitor_for=1s")
	if after := recoverState(); after != before {
		t.Errorf("recover --dry-run=server changed the servers: %s -> %s", before, after)
	}
	planned = map[string]int{}
	for _, rep := range parseReports(t, out) {
		for _, s := range rep.Steps {
			if s.Plan != nil {
				planned[s.Step] = s.Plan.Count
			}
		}
	}
	out = e.mustRun("recover", "--yes", "-o", "json", "--set", "api_url="+e.sb.OrchestratorURL, "--set", "monitor_for=3s")
	for _, rep := range parseReports(t, out) {
		for _, s := range rep.Steps {
			if s.Status == "applied" && (s.Result == nil || s.Result.Changed != planned[s.Step]) {
				t.Errorf("recover %s: the rehearsal planned %d change(s), the run made %+v", s.Step, planned[s.Step], s.Result)
			}
		}
	}
	if after := recoverState(); after == before {
		t.Error("recover changed nothing")
	}
	if got := e.health(); got != http.StatusOK {
		t.Errorf("after recover /health is %d, want 200", got)
	}
	if r := validate(); r.code != 0 {
		t.Fatalf("validate after the incident: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	llm, err := e.cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(t.Context(), "orchestrator-llm-keys", metav1.GetOptions{})
	if err != nil || string(llm.Data["api-key"]) != newLLMKey {
		t.Errorf("the new LLM key is not in the Secret the service reads (%v)", err)
	}
	// The secrets given on the command line and stdin are nowhere: not in
	// any output, nor in any file of the incident (journal, evidence).
	files := e.incidentFiles()
	for _, secret := range []string{e.sb.AttackerAPIKey, e.sb.AttackerJWT, newLLMKey} {
		for _, out := range e.outputs {
			if strings.Contains(out, secret) {
				t.Fatalf("a secret value is in irctl's output")
			}
		}
		for name, data := range files {
			if strings.Contains(data, secret) {
				t.Fatalf("a secret value is in %s", name)
			}
		}
	}
	if len(files) < 10 {
		t.Fatalf("only %d incident files searched", len(files))
	}
}

// incidentFiles reads every file of the incident's directory.
func (e *e2e) incidentFiles() map[string]string {
	e.t.Helper()
	inc, err := incident.Open(e.stateDir, e.incident)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	err = filepath.WalkDir(inc.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// The shipped k8s-cluster-compromise runbook on the seeded cluster: the
// attack's leftovers in kube-system (a CronJob and Job labelled
// malicious=true, a ServiceAccount bound to cluster-admin, a Deployment
// from the attacker's registry) are found by validate, removed by
// eradicate; assess queries the sandbox's Prometheus; the alert rules
// recover applies are loaded by it, so validate passes every check; and
// the recover phase's applied objects are undone.
func TestClusterCompromiseRunbookEndToEnd(t *testing.T) {
	e := newE2E(t)
	ctx := t.Context()
	sets := []string{"-f", "k8s-cluster-compromise",
		"--set", "namespace=" + sandbox.DemoNamespace, "--set", "affected_selector=app=orchestrator",
		"--set", "affected_deployment=orchestrator", "--set", "compromised_secret=orchestrator-jwt-secret",
		"--set", "compromised_secret_key=secret",
		"--set", "compromised_identity=system:serviceaccount:kube-system:" + sandbox.AttackServiceAccount,
		"--set", "malicious_names=" + sandbox.AttackDeployment, "--set", "malicious_namespace=kube-system",
		"--set", "normal_replicas=3", "--set", "health_url=" + e.sb.OrchestratorURL + "/health",
		"--set", "prometheus_url=" + e.sb.PrometheusURL}
	run := func(args ...string) result { return e.run(append(args, sets...)...) }
	must := func(args ...string) string {
		t.Helper()
		r := run(args...)
		if r.code != 0 {
			t.Fatalf("irctl %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	checks := func(wantCode int, extra ...string) map[string]string {
		t.Helper()
		r := run(append([]string{"validate", "-o", "json"}, extra...)...)
		if r.code != wantCode {
			t.Fatalf("validate: exit %d, want %d\n%s%s", r.code, wantCode, r.stdout, r.stderr)
		}
		out := map[string]string{}
		for _, rep := range parseReports(t, r.stdout) {
			for _, c := range rep.Checks {
				out[c.Check] = c.Result
				if c.Result != "pass" {
					t.Logf("validate: %s %s: %s", c.Check, c.Result, c.Seen)
				}
			}
		}
		return out
	}

	must("contain", "--yes")
	e.settled()
	if got := e.api("Authorization", "Bearer "+e.sb.AttackerJWT); got != http.StatusUnauthorized {
		t.Errorf("after contain the stolen JWT gets %d, want 401", got)
	}
	// No alert rules before recover: the check need not wait long for them.
	if c := checks(1, "--set", "security_rules_retries=2"); c["no-indicators-left"] != "fail" || c["compromised-secret-rotated"] != "pass" || c["service-healthy"] != "pass" || c["security-alerts-loaded"] != "fail" {
		t.Errorf("validate before eradicate: %v, want the indicators found, the rotation done and no alert rules loaded yet", c)
	}
	// assess's network query runs on the real Prometheus (which scrapes no
	// cAdvisor: an empty table) and its response is kept as evidence.
	must("assess", "--yes")
	saved := ""
	for name, data := range e.incidentFiles() {
		if strings.HasSuffix(name, filepath.Join("prometheus", "network-receive.json")) {
			saved = data
		}
	}
	if !strings.Contains(saved, `"status":"success"`) {
		t.Errorf("assess saved no successful Prometheus response: %q", saved)
	}

	leftovers := func() (n int) {
		t.Helper()
		if _, err := e.cs.BatchV1().CronJobs("kube-system").Get(ctx, sandbox.AttackCronJob, metav1.GetOptions{}); err == nil {
			n++
		}
		if _, err := e.cs.AppsV1().Deployments("kube-system").Get(ctx, sandbox.AttackDeployment, metav1.GetOptions{}); err == nil {
			n++
		}
		if _, err := e.cs.RbacV1().ClusterRoleBindings().Get(ctx, sandbox.AttackBinding, metav1.GetOptions{}); err == nil {
			n++
		}
		return n
	}
	if n := leftovers(); n != 3 {
		t.Fatalf("seeded leftovers: %d of 3", n)
	}
	must("eradicate", "--dry-run=server")
	if n := leftovers(); n != 3 {
		t.Fatalf("eradicate --dry-run=server removed %d leftover(s)", 3-n)
	}
	must("eradicate", "--yes")
	if n := leftovers(); n != 0 {
		t.Errorf("%d leftover(s) remain after eradicate", n)
	}

	must("recover", "--yes")
	if _, err := e.cs.CoreV1().ConfigMaps("monitoring").Get(ctx, "enhanced-security-alerts", metav1.GetOptions{}); err != nil {
		t.Errorf("recover did not apply the alert rules: %v", err)
	}
	c := checks(0)
	for _, name := range []string{"no-indicators-left", "compromised-secret-rotated", "service-healthy", "security-alerts-loaded"} {
		if c[name] != "pass" {
			t.Errorf("validate after recover: %s %s, want every check passing: %v", name, c[name], c)
		}
	}

	r := e.run("undo", "recover", "--yes")
	if r.code != 0 {
		t.Fatalf("undo recover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("monitoring").Get(ctx, "enhanced-security-alerts", metav1.GetOptions{}); err == nil {
		t.Error("undo recover left the alert rules it created")
	}
	ns, err := e.cs.CoreV1().Namespaces().Get(ctx, sandbox.DemoNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := ns.Labels["pod-security.kubernetes.io/enforce"]; ok {
		t.Errorf("undo recover left the Pod Security label enforce=%s", v)
	}
}
