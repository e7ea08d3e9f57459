package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/lock"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// harness runs irctl in-process against the shared sandbox, with its own
// state directory and a namespace of its own.
type harness struct {
	t        *testing.T
	sb       *sandbox.Sandbox
	cs       kubernetes.Interface
	ns       string
	stateDir string
	incident string
}

type result struct {
	code           int
	stdout, stderr string
}

func newHarness(t *testing.T, pods int) *harness {
	t.Helper()
	sb := sandboxtest.Get(t)
	sandboxtest.ResetDB(t, sb)
	cs, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sb: sb, cs: cs, ns: "t-" + randHex(4), stateDir: t.TempDir()}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller manager makes the namespace's default ServiceAccount,
	// maybe not before the test needs it.
	if _, err := cs.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if pods > 0 {
		if err := sandbox.SeedPods(ctx, cs, h.ns, pods, map[string]string{"app": "orchestrator"}); err != nil {
			t.Fatal(err)
		}
	}
	r := h.run("declare", "--severity", "P1", "--title", "test "+t.Name())
	if r.code != 0 {
		t.Fatalf("declare: %+v", r)
	}
	h.incident = strings.TrimSpace(r.stdout)
	h.guardLease()
	return h
}

// guardLease keeps responder-lock Leases from leaking between tests.
// Every test declares its incident in a state directory of its own, so
// they all get the same ID (SEC-<today>-001) and so the same Lease in the
// lock's namespace. irctl deletes its Lease on
// the way out, interrupted or not; but an irctl killed outright (a
// terminal test that fails kills its process in cleanup) leaves it for
// lock.LeaseDuration, and every later test would be refused with exit 5.
// So a leftover Lease is deleted before the test; one left at the end of
// a test that otherwise passed is a release that did not happen, and
// fails it.
func (h *harness) guardLease() {
	h.t.Helper()
	ns := lock.DefaultNamespace
	leases := h.cs.CoordinationV1().Leases(ns)
	name := lock.LeaseName(h.incident)
	remove := func() (bool, error) {
		err := leases.Delete(context.Background(), name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	if found, err := remove(); err != nil {
		h.t.Fatalf("deleting the Lease %s/%s left by an earlier test: %v", ns, name, err)
	} else if found {
		h.t.Logf("deleted the Lease %s/%s an earlier test left behind", ns, name)
	}
	h.t.Cleanup(func() {
		found, err := remove()
		switch {
		case err != nil:
			h.t.Errorf("deleting the Lease %s/%s: %v", ns, name, err)
		case found && !h.t.Failed():
			h.t.Errorf("the responder lock's Lease %s/%s was not released", ns, name)
		case found:
			h.t.Logf("deleted the Lease %s/%s this failed test left behind", ns, name)
		}
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run executes irctl with the sandbox's connection flags and this test's
// namespace and incident; stdin is not a terminal.
func (h *harness) run(args ...string) result {
	return h.runIn(context.Background(), "", args...)
}

func (h *harness) runIn(ctx context.Context, stdin string, args ...string) result {
	// The test's own args come last so that they override these.
	full := []string{
		"--kubeconfig", h.sb.KubeconfigPath, "--database-url", h.sb.DatabaseURL,
		"--state-dir", h.stateDir,
	}
	if takesRunbook(args) {
		full = append(full, "--set", "namespace="+h.ns)
		// resume takes the runbook and its --set values from the run
		// it continues.
		if !hasRunbookFlag(args) && !slices.Contains(args, "resume") {
			full = append(full, defaultRunbookSets...)
		}
	}
	if h.incident != "" {
		full = append(full, "--incident", h.incident)
	}
	full = append(full, args...)
	var out, errb bytes.Buffer
	code := Run(ctx, full, IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// defaultRunbookSets adapt the shipped default runbook to a harness
// namespace, which holds bare pods labelled app=orchestrator and no
// orchestrator Deployment: nothing to restart after the JWT rotation, and
// the pods are their own evidence (with no ReplicaSet or Service, detach
// removes no label, so app=orchestrator still finds the quarantined pods).
// Tests of the restart and of detach run the runbook against the demo
// namespace with its defaults (TestContainPhaseEndToEndOnTheDemoPlatform).
var defaultRunbookSets = []string{"--set", "jwt_consumer_deployment=", "--set", "evidence_selector=app=orchestrator"}

// binarySets are the --set flags the tests that run the irctl binary give
// every command: this harness's namespace, and defaultRunbookSets for the
// shipped default runbook.
func (h *harness) binarySets(args []string) []string {
	sets := []string{"--set", "namespace=" + h.ns}
	if !hasRunbookFlag(args) {
		sets = append(sets, defaultRunbookSets...)
	}
	return sets
}

// hasRunbookFlag reports whether args name a runbook (-f, --runbook).
func hasRunbookFlag(args []string) bool {
	for _, a := range args {
		if a == "-f" || a == "--runbook" || strings.HasPrefix(a, "--runbook=") || strings.HasPrefix(a, "-f=") {
			return true
		}
	}
	return false
}

// takesRunbook reports whether the command args run (the first command
// name in them: flags may come first) loads a runbook, and so takes --set.
func takesRunbook(args []string) bool {
	commands := map[string]bool{}
	for _, c := range newRootCmd(newFactory(IOStreams{})).Commands() {
		commands[c.Name()] = true
	}
	for _, a := range args {
		if commands[a] {
			return runbook.IsPhase(a) || a == "run" || a == "plan" || a == "resume"
		}
	}
	return false
}

// podState maps pod name to resourceVersion and quarantine label.
func (h *harness) podState() map[string]string {
	h.t.Helper()
	list, err := h.cs.CoreV1().Pods(h.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range list.Items {
		out[p.Name] = p.ResourceVersion + " quarantine=" + p.Labels["quarantine"]
	}
	return out
}

// dbState summarises the tables a contain phase writes, so any change to
// them shows.
func (h *harness) dbState() string {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.sb.DatabaseURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	err = conn.QueryRow(context.Background(), `
		SELECT (SELECT md5(string_agg(id || ':' || coalesce(revoked_at::text, '-'), ',' ORDER BY id)) FROM api_keys)
		    || ' ' || (SELECT md5(string_agg(id || ':' || coalesce(disabled_at::text, '-'), ',' ORDER BY id)) FROM users)`).Scan(&s)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) activeKeys() (total, breakGlass int) {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.sb.DatabaseURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The seed's break-glass keys are ids 119 and 120 (key prefixes
	// sk_live_bg01a7f3, sk_live_bg02c9e8); id 121 is the attacker's key
	// named break-glass-primary, which must not count.
	err = conn.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE id IN (119, 120)) FROM api_keys WHERE revoked_at IS NULL`).Scan(&total, &breakGlass)
	if err != nil {
		h.t.Fatal(err)
	}
	return total, breakGlass
}

func (h *harness) journal() []incident.Record {
	h.t.Helper()
	inc, err := incident.Open(h.stateDir, h.incident)
	if err != nil {
		h.t.Fatal(err)
	}
	recs, err := incident.ReadJournal(inc.JournalPath())
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func parseReports(t *testing.T, s string) []engine.Report {
	t.Helper()
	var reps []engine.Report
	if err := json.Unmarshal([]byte(s), &reps); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, s)
	}
	return reps
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestALeaseLeftByAKilledRunDoesNotBlockTheNextTest: an irctl killed
// outright leaves its Lease, which names the incident ID that the next
// test's harness declares too; guardLease clears it.
func TestALeaseLeftByAKilledRunDoesNotBlockTheNextTest(t *testing.T) {
	first := newHarness(t, 0)
	now := metav1.NewMicroTime(time.Now())
	_, err := first.cs.CoordinationV1().Leases(lock.DefaultNamespace).Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: lock.LeaseName(first.incident)},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("killed@test (pid 1)"), LeaseDurationSeconds: ptr.To(int32(lock.LeaseDuration / time.Second)),
			AcquireTime: &now, RenewTime: &now,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("next test", func(t *testing.T) {
		next := newHarness(t, 1)
		if next.incident != first.incident {
			t.Skipf("the day changed: %s, then %s", first.incident, next.incident)
		}
		if r := next.run("contain", "--yes"); r.code != 0 {
			t.Errorf("contain after a killed run: exit %d %s", r.code, r.stderr)
		}
	})
}
