package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/exitcode"
)

// withPVC gives the harness's namespace the database claim the preserve
// phase snapshots, reported Bound (no controller binds it here).
func (h *harness) withPVC(name string) {
	h.t.Helper()
	ctx := context.Background()
	pvc, err := h.cs.CoreV1().PersistentVolumeClaims(h.ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	if _, err := h.cs.CoreV1().PersistentVolumeClaims(h.ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) evidenceDir() string { return filepath.Join(h.stateDir, h.incident, "evidence") }

// copyState copies the state directory, so each tampering starts from the
// same good evidence.
func copyState(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func TestAssessAndPreserveCollectVerifiableEvidence(t *testing.T) {
	h := newHarness(t, 3)
	h.withPVC("postgres-pvc")

	// Assess: the SQL steps collect, and the log scan reads the pods' logs
	// through the API server from the sandbox's kubelets and finds the
	// attack's 60 gigabyte transfers.
	r := h.run("assess", "--set", "suspicious_ips=198.51.100.23,203.0.113.77,2001:db8:bad:1::21")
	if r.code != 0 {
		t.Fatalf("assess: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"accounts logged into from suspicious addresses: 3 row(s)", "user_id  ip_address",
		"60 matching line(s) in 3 of 3 container(s) (largest number 6904019200)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("assess output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "no kubelet") {
		t.Errorf("assess could not read logs:\n%s%s", r.stdout, r.stderr)
	}

	// Preserve: every step succeeds, the snapshot within seconds (the
	// sandbox runs a snapshot controller for its CSI driver).
	start := time.Now()
	r = h.run("preserve", "--yes")
	if r.code != 0 {
		t.Fatalf("preserve: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("preserve took %s", d)
	}
	for _, want := range []string{"saved 3 of 3 container log(s)", "1 of 1 snapshot(s) ready", "content switched to deletionPolicy Retain",
		"created 3 forensic copies", "saved 14 dump file(s)", "exported "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("preserve output lacks %q:\n%s", want, r.stdout)
		}
	}
	scan, err := os.ReadFile(filepath.Join(h.evidenceDir(), "log-scan", "exfiltration-in-logs.txt"))
	if err != nil || strings.Count(string(scan), "\n") != 60 || strings.Count(string(scan), " user_id=7 ")+strings.Count(string(scan), " user_id=13 ")+strings.Count(string(scan), " user_id=21 ") != 60 {
		t.Errorf("log-scan evidence: %v\n%s", err, scan)
	}

	r = h.run("evidence", "list", "-o", "json")
	if r.code != 0 {
		t.Fatalf("evidence list: %+v", r)
	}
	var entries []evidence.Entry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range entries {
		kinds[strings.SplitN(e.Name, "/", 2)[0]]++
		if e.Operator == "" || e.ToolVersion == "" || len(e.RunbookHash) != 64 || e.DBUser != "orchestrator" || !strings.HasPrefix(e.KubeIdentity, "admin") {
			t.Errorf("%s: collector identity incomplete: %+v", e.Name, e.Meta)
		}
		if e.CollectedStart.Location().String() != "UTC" || e.CollectedEnd.Before(e.CollectedStart) {
			t.Errorf("%s: times %v..%v", e.Name, e.CollectedStart, e.CollectedEnd)
		}
	}
	for kind, min := range map[string]int{"sql": 5, "dump": 14, "snapshots": 1, "forensic-copies": 3, "logs": 3, "log-scan": 1} {
		if kinds[kind] < min {
			t.Errorf("%d %s item(s), want at least %d (all: %v)", kinds[kind], kind, min, kinds)
		}
	}

	r = h.run("evidence", "verify")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || !strings.HasPrefix(lines[len(lines)-1], "OK: ") || !strings.Contains(lines[len(lines)-1], fmt.Sprintf("journal anchor matches (%d entries)", len(entries))) {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Tampering, each on a copy of the good evidence, fails verify
	// naming the item, one problem per line, and a one-line error.
	tamper := map[string]struct {
		do   func(ev string)
		item string
	}{
		"flip one byte": {func(ev string) {
			p := filepath.Join(ev, "sql", "audit_events-7d.csv")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		}, "sql/audit_events-7d.csv: changed"},
		"delete a file": {func(ev string) { os.Remove(filepath.Join(ev, "dump", "cronjobs.yaml")) }, "dump/cronjobs.yaml: missing"},
		"add a file": {func(ev string) {
			os.WriteFile(filepath.Join(ev, "dump", "planted.yaml"), []byte("kind: Nothing\n"), 0o600)
		}, "dump/planted.yaml: extra file, not in the manifest"},
		"reorder manifest lines": {func(ev string) {
			p := filepath.Join(ev, evidence.ManifestName)
			b, _ := os.ReadFile(p)
			l := strings.SplitAfter(string(b), "\n")
			l[1], l[2] = l[2], l[1]
			os.WriteFile(p, []byte(strings.Join(l, "")), 0o600)
		}, "reordered"},
		// The newest entry has no successor in the chain: the journal's
		// anchor catches its removal.
		"remove the last line and its file": {func(ev string) {
			p := filepath.Join(ev, evidence.ManifestName)
			b, _ := os.ReadFile(p)
			l := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
			var last evidence.Entry
			json.Unmarshal([]byte(l[len(l)-1]), &last)
			os.Remove(filepath.Join(ev, filepath.FromSlash(last.Name)))
			os.WriteFile(p, []byte(strings.Join(l[:len(l)-1], "")), 0o600)
		}, "removed from the manifest"},
	}
	for name, tc := range tamper {
		t.Run(name, func(t *testing.T) {
			state := copyState(t, h.stateDir)
			tc.do(filepath.Join(state, h.incident, "evidence"))
			r := h.run("--state-dir", state, "evidence", "verify")
			if r.code != exitcode.Error || !strings.Contains(r.stdout, tc.item) || !strings.Contains(r.stdout, "FAILED:") {
				t.Fatalf("verify after %s: exit %d\n%s", name, r.code, r.stdout)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "failed verification") {
				t.Errorf("error is not one line: %q", r.stderr)
			}
		})
	}

	// Signing: verify with the public key; a key pair is 0600.
	keys := t.TempDir()
	key, pub := filepath.Join(keys, "ev.key"), filepath.Join(keys, "ev.pub")
	if r := h.run("evidence", "keygen", "--key", key); r.code != 0 {
		t.Fatalf("keygen: %+v", r)
	}
	for _, p := range []string{key, pub} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	if r := h.run("evidence", "verify", "--public-key", pub); r.code != exitcode.Error || !strings.Contains(r.stdout, "manifest.sig: missing") {
		t.Errorf("unsigned evidence with a key: exit %d\n%s", r.code, r.stdout)
	}
	if r := h.run("evidence", "sign", "--key", key); r.code != 0 {
		t.Fatalf("sign: %+v", r)
	}
	if r := h.run("evidence", "verify", "--public-key", pub); r.code != 0 || !strings.Contains(r.stdout, "signature valid") {
		t.Errorf("signed evidence: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := h.run("evidence", "verify"); r.code != 0 || !strings.Contains(r.stdout, "note: manifest.sig is present but was not checked") {
		t.Errorf("verify without a key should mention the signature: %s", r.stdout)
	}

	// Pack: the same evidence gives the same bytes; an existing file is kept.
	out := t.TempDir()
	a, b := filepath.Join(out, "a.tar.gz"), filepath.Join(out, "b.tar.gz")
	if r := h.run("evidence", "pack", "-o", a); r.code != 0 {
		t.Fatalf("pack: %+v", r)
	}
	if r := h.run("evidence", "pack", "-o", b); r.code != 0 {
		t.Fatalf("pack: %+v", r)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ab) == 0 || !bytes.Equal(ab, bb) {
		t.Error("two packs of the same evidence differ")
	}
	if r := h.run("evidence", "pack", "-o", a); r.code != exitcode.Usage || !strings.Contains(r.stderr, "never overwritten") {
		t.Errorf("pack over an existing file: %+v", r)
	}
}

func TestDryRunsAndEvidence(t *testing.T) {
	h := newHarness(t, 2)
	h.withPVC("postgres-pvc")
	pods := h.podState()

	r := h.run("assess", "--dry-run=client")
	if r.code != 0 || !strings.Contains(r.stdout, "(dry run)") {
		t.Fatalf("client dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(h.evidenceDir(), evidence.ManifestName)); err == nil {
		t.Fatal("a client dry run wrote evidence")
	}

	r = h.run("preserve", "--dry-run=server", "-o", "json")
	if r.code != 0 {
		t.Fatalf("server dry run: exit %d\n%s", r.code, r.stderr)
	}
	steps := parseReports(t, r.stdout)[0].Steps
	summaries := map[string]string{}
	for _, s := range steps {
		if s.Result != nil {
			summaries[s.Step] = s.Result.Summary
		}
	}
	if !strings.Contains(summaries["audit-export"], "collected under --dry-run=server too") || !strings.Contains(summaries["cluster-state"], "collected under --dry-run=server too") ||
		!strings.Contains(summaries["pod-logs"], "saved 2 of 2 container log(s)") || !strings.Contains(summaries["pod-logs"], "collected under --dry-run=server too") {
		t.Errorf("server dry run does not say evidence is collected: %v", summaries)
	}
	if !strings.Contains(summaries["database-volume-snapshot"], "nothing was created") || !strings.Contains(summaries["forensic-copies"], "nothing was created") {
		t.Errorf("server dry run of the writes: %v", summaries)
	}
	if !equalMaps(pods, h.podState()) {
		t.Error("server dry run changed pods")
	}
	if r := h.run("evidence", "verify"); r.code != 0 {
		t.Errorf("evidence of the server dry run: %s", r.stdout)
	}
}

func TestInjectedIPsExitTwoAndNothingRuns(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	canary := "canary_" + randHex(4)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+canary+" (x int)"); err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{
		"suspicious_ips=1.2.3.4'); DROP TABLE " + canary + "; --",
		"suspicious_ips=fe80::1%eth0; DROP TABLE " + canary,
		"internal_ranges=10.0.0.0/8') OR true; DROP TABLE " + canary + "; --",
		"internal_ranges=10.1.2.3/8",
	} {
		r := h.run("assess", "--set", set)
		if r.code != exitcode.Usage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("--set %s: exit %d, want 2 with one line\n%s", set, r.code, r.stderr)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM "+canary); err != nil {
		t.Fatalf("canary table gone: %v", err)
	}
	if len(h.journal()) != 0 {
		t.Error("a rejected run was journaled")
	}
}

func TestValidatePrintsEvidenceOrderWarnings(t *testing.T) {
	h := newHarness(t, 0)
	rb := filepath.Join(t.TempDir(), "drain-first.yaml")
	os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: drain-first
params:
  namespace: {default: app}
phases:
  contain:
    - name: drain
      action: k8s.drain
      with: {nodes: [node-a]}
  preserve:
    - name: logs
      action: k8s.logs
      with: {namespace: "{{ .namespace }}", selector: app=web}
`), 0o600)
	r := h.run("runbook", "validate", rb)
	if r.code != 0 || !strings.Contains(r.stdout, "warning: "+filepath.ToSlash(rb)+":8: step drain (k8s.drain, phase contain)") || !strings.Contains(r.stdout, ": ok (") {
		t.Fatalf("validate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The shipped runbook captures evidence before anything destroys it.
	if r := h.run("runbook", "validate"); r.code != 0 || strings.Contains(r.stdout, "warning:") {
		t.Errorf("shipped runbook: %s", r.stdout)
	}
}

// With IRCTL_EVIDENCE_KEY set, every commit re-signs the manifest: the
// signature covers the newest item without an `evidence sign`.
func TestSigningKeySignsEvidenceAsItIsCollected(t *testing.T) {
	h := newHarness(t, 1)
	keys := t.TempDir()
	key, pub := filepath.Join(keys, "ev.key"), filepath.Join(keys, "ev.pub")
	if r := h.run("evidence", "keygen", "--key", key); r.code != 0 {
		t.Fatalf("keygen: %+v", r)
	}
	t.Setenv(signingKeyEnv, key)
	if r := h.run("assess", "--set", "suspicious_ips=198.51.100.23"); r.code != 0 {
		t.Fatalf("assess: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r := h.run("evidence", "verify", "--public-key", pub)
	if r.code != 0 || !strings.Contains(r.stdout, "journal anchor matches") || !strings.Contains(r.stdout, "signature valid (") {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Setenv(signingKeyEnv, filepath.Join(keys, "missing.key"))
	r = h.run("assess", "--set", "suspicious_ips=198.51.100.23")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, signingKeyEnv) {
		t.Errorf("an unreadable signing key should fail the evidence steps naming %s: exit %d\n%s%s", signingKeyEnv, r.code, r.stdout, r.stderr)
	}
}
