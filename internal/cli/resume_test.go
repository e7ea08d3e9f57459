package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/lock"
)

// containState is what a contain of the shipped runbook leaves behind, in
// a form that two harnesses can compare: pod labels (pod names are random
// per harness), the quarantine NetworkPolicy's spec, which API keys are
// revoked and which users disabled, and the rotated Secret's shape (its
// value is random by design).
func (h *harness) containState() string {
	h.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	pods, err := h.cs.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var labels []string
	for _, p := range pods.Items {
		l, _ := json.Marshal(p.Labels)
		labels = append(labels, string(l))
	}
	sort.Strings(labels)
	fmt.Fprintf(&b, "pods: %s\n", strings.Join(labels, " "))
	pols, err := h.cs.NetworkingV1().NetworkPolicies(h.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, p := range pols.Items {
		spec, _ := json.Marshal(p.Spec)
		fmt.Fprintf(&b, "policy %s: %s\n", p.Name, spec)
	}
	sec, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "orchestrator-jwt-secret", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		b.WriteString("secret: none\n")
	case err != nil:
		h.t.Fatal(err)
	default:
		var keys []string
		for k, v := range sec.Data {
			keys = append(keys, fmt.Sprintf("%s(%d bytes)", k, len(v)))
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "secret: %s rotated-for=%s\n", strings.Join(keys, ","), sec.Annotations[kubeaction.RotatedForIncident])
	}
	conn, err := pgx.Connect(ctx, h.sb.DatabaseURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var revoked, disabled string
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM api_keys WHERE revoked_at IS NOT NULL`).Scan(&revoked); err != nil {
		h.t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM users WHERE disabled_at IS NOT NULL`).Scan(&disabled); err != nil {
		h.t.Fatal(err)
	}
	fmt.Fprintf(&b, "revoked api_keys: %s\ndisabled users: %s\n", revoked, disabled)
	return b.String()
}

// dropLease deletes this incident's Lease wherever it is, standing in for
// its expiry (lock.LeaseDuration) after a run that was killed outright.
func (h *harness) dropLease() {
	h.t.Helper()
	ctx := context.Background()
	leases, err := h.cs.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + lock.LeaseName(h.incident)})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, l := range leases.Items {
		if err := h.cs.CoordinationV1().Leases(l.Namespace).Delete(ctx, l.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			h.t.Fatal(err)
		}
	}
}

// runBinary runs the real irctl with this harness's flags and extra
// environment, and returns how it ended.
func (h *harness) runBinary(env []string, args ...string) (*os.ProcessState, string) {
	h.t.Helper()
	bin, err := buildIrctl()
	if err != nil {
		h.t.Fatal(err)
	}
	full := append([]string{"--kubeconfig", h.sb.KubeconfigPath, "--database-url", h.sb.DatabaseURL,
		"--state-dir", h.stateDir, "--incident", h.incident}, append(h.binarySets(args), args...)...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		h.t.Fatal(err)
	}
	return cmd.ProcessState, stderr.String()
}

// A contain of the shipped runbook is killed with SIGKILL right after each
// of its journal records in turn (no defers, no lock release, nothing
// flushed); `irctl resume --yes` then finishes it, and the cluster and
// database end exactly as after a clean run, with no step applied twice.
func TestResumeAfterSIGKILLAtEveryJournalRecordEndsLikeACleanRun(t *testing.T) {
	clean := newHarness(t, 4)
	if r := clean.run("contain", "--yes"); r.code != 0 {
		t.Fatalf("clean contain: exit %d %s", r.code, r.stderr)
	}
	want := clean.containState()
	records := len(clean.journal())
	if !strings.Contains(want, "quarantine") || strings.Contains(want, "secret: none") || strings.Contains(want, "revoked api_keys: \n") {
		t.Fatalf("the clean run did not contain anything:\n%s", want)
	}

	resumed := 0
	for n := 1; n <= records; n++ {
		t.Run(fmt.Sprintf("kill after record %d", n), func(t *testing.T) {
			h := newHarness(t, 4)
			st, stderr := h.runBinary([]string{fmt.Sprintf("%s=%d", engine.KillAfterRecordEnv, n)}, "contain", "--yes")
			ws, ok := st.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("irctl was not killed after record %d: %v\n%s", n, st, stderr)
			}
			if got := len(h.journal()); got != n {
				t.Fatalf("journal has %d records after the kill, want %d", got, n)
			}
			h.dropLease()
			r := h.run("resume", "--yes")
			if r.code != 0 {
				t.Fatalf("resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if got := h.containState(); got != want {
				t.Errorf("after the kill and resume:\n%s\nafter a clean run:\n%s", got, want)
			}
			// No step applied twice: one outcome at most per step, and a
			// step finished before the kill has no second intent.
			intents, outcomes := map[string]int{}, map[string]int{}
			for _, rec := range h.journal() {
				switch rec.Kind {
				case incident.KindIntent:
					intents[rec.Step]++
				case incident.KindOutcome:
					outcomes[rec.Step]++
				}
			}
			for step, k := range outcomes {
				if k > 1 {
					t.Errorf("step %s has %d outcomes", step, k)
				}
				if intents[step] > 2 || (intents[step] == 2 && !slices.Contains(replanned(h.journal()), step)) {
					t.Errorf("step %s has %d intents", step, intents[step])
				}
			}
			if !t.Failed() {
				resumed++
			}
		})
	}
	t.Logf("SIGKILL points resumed to a clean run's state: %d of %d", resumed, records)
}

// replanned lists the steps whose intent had no outcome before a resume.
func replanned(recs []incident.Record) []string {
	var out []string
	for i, r := range recs {
		if r.Kind == incident.KindRun && r.Resumes != 0 {
			if lr, err := engine.FindLastRun(recs[:i]); err == nil {
				for k := range lr.Replan {
					out = append(out, k.Step)
				}
			}
		}
	}
	return out
}
