package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/lock"
)

// startIrctl starts the real binary with this harness's flags.
func (h *harness) startIrctl(dbURL string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	h.t.Helper()
	bin, err := buildIrctl()
	if err != nil {
		h.t.Fatal(err)
	}
	full := append([]string{"--kubeconfig", h.sb.KubeconfigPath, "--database-url", dbURL,
		"--state-dir", h.stateDir, "--incident", h.incident}, append(h.binarySets(args), args...)...)
	cmd := exec.Command(bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, &stderr
}

func exitCode(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("irctl did not stop after the signal; stderr %s", stderr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func writeRunbook(t *testing.T, body string) string {
	t.Helper()
	rb := filepath.Join(t.TempDir(), "rb.yaml")
	if err := os.WriteFile(rb, []byte("apiVersion: irctl/v1\nkind: Runbook\nname: t\nparams:\n  namespace: {default: x}\nphases:\n  contain:\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return rb
}

// SIGTERM while pods are being labelled: the label step stops, the
// journal records "interrupted" with the pods it had labelled and their
// undo data, irctl exits 143, and `irctl undo contain` takes the labels
// off exactly those pods.
func TestSIGTERMMidLabelJournalsWhatChangedAndUndoReversesIt(t *testing.T) {
	const pods = 1000
	h := newHarness(t, pods)
	rb := writeRunbook(t, `    - name: quarantine
      action: k8s.label
      with:
        namespace: "{{ .namespace }}"
        selector: app=orchestrator
        labels: {quarantine: "true"}
`)
	cmd, stderr := h.startIrctl(h.sb.DatabaseURL, "-f", rb, "contain", "--yes")
	labelled := func() int {
		l, err := h.cs.CoreV1().Pods(h.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "quarantine=true", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	deadline := time.Now().Add(60 * time.Second)
	for labelled() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no pod was ever labelled: %s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd, stderr); code != 143 {
		t.Fatalf("exit %d, want 143; stderr %s", code, stderr)
	}
	recs := h.journal()
	last := recs[len(recs)-1]
	if last.Kind != incident.KindInterrupted || last.Step != "quarantine" || last.Changed == nil {
		t.Fatalf("last record %+v, want interrupted quarantine with what it changed", last)
	}
	var undo struct {
		Pods []struct{ Name string } `json:"pods"`
	}
	if err := json.Unmarshal(last.Undo, &undo); err != nil {
		t.Fatalf("undo data %s: %v", last.Undo, err)
	}
	if *last.Changed == 0 || *last.Changed >= pods || len(undo.Pods) != *last.Changed {
		t.Fatalf("interrupted after %d of %d pods with undo data for %d; want some, not all", *last.Changed, pods, len(undo.Pods))
	}
	t.Logf("SIGTERM after %d of %d pods were labelled", *last.Changed, pods)
	if r := h.run("undo", "contain", "--yes"); r.code != 0 {
		t.Fatalf("undo: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, p := range undo.Pods {
		pod, err := h.cs.CoreV1().Pods(h.ns).Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, has := pod.Labels["quarantine"]; has {
			t.Errorf("pod %s labelled before the interrupt still has quarantine after undo", p.Name)
		}
	}
}

// SIGHUP (the SSH session dropped) stops the step in flight like Ctrl-C,
// and exits 129.
func TestSIGHUPStopsTheStepAndExits129(t *testing.T) {
	h := newHarness(t, 0)
	rb := writeRunbook(t, `    - name: slow-write
      action: sql.exec
      with:
        sql: WITH s AS (SELECT pg_sleep(60)) UPDATE users SET name = name FROM s WHERE id = 1
`)
	cmd, stderr := h.startIrctl(h.sb.DatabaseURL, "-f", rb, "contain", "--yes")
	conn, err := pgx.Connect(context.Background(), h.sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		_ = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow statement never started: %s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd, stderr); code != 129 {
		t.Fatalf("exit %d, want 129; stderr %s", code, stderr)
	}
	recs := h.journal()
	if last := recs[len(recs)-1]; last.Kind != incident.KindInterrupted || last.Step != "slow-write" || !strings.Contains(last.Error, "hangup") {
		t.Errorf("last record %+v, want interrupted slow-write naming the hangup", last)
	}
}

// Ctrl-C while irctl waits for the database to take the lock (a server
// that accepts and never answers) exits 130 and journals "interrupted";
// no step runs.
func TestInterruptWhileLockingExits130AndIsJournaled(t *testing.T) {
	h := newHarness(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	rb := writeRunbook(t, `    - name: revoke
      action: sql.exec
      with:
        sql: UPDATE api_keys SET revoked_at = now() WHERE false
`)
	silent := fmt.Sprintf("postgres://irctl@%s/irctl?sslmode=disable", ln.Addr())
	cmd, stderr := h.startIrctl(silent, "-f", rb, "contain", "--yes")
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatalf("irctl never connected: %s", stderr)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd, stderr); code != 130 {
		t.Fatalf("exit %d, want 130; stderr %s", code, stderr)
	}
	recs := h.journal()
	if len(recs) == 0 {
		t.Fatal("nothing journaled")
	}
	last := recs[len(recs)-1]
	if last.Kind != incident.KindInterrupted || last.Step != "" || !strings.Contains(last.Error, "locking") {
		t.Errorf("last record %+v, want interrupted while locking", last)
	}
	for _, r := range recs {
		if r.Kind == incident.KindIntent {
			t.Errorf("a step ran: %+v", r)
		}
	}
}

// freezingProxy forwards TCP to addr until frozen; from then on nothing
// passes either way and new connections hang, like a server that stopped
// answering.
type freezingProxy struct {
	ln     net.Listener
	frozen atomic.Bool
}

func newFreezingProxy(t *testing.T, addr string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	pipe := func(dst, src net.Conn) {
		b := make([]byte, 32<<10)
		for {
			n, err := src.Read(b)
			for p.frozen.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(b[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.frozen.Load() {
				continue // held open by nobody, never answered
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

// A second Ctrl-C does not wait for the first one's orderly stop. Here the
// database stops answering while a step runs, so after the first SIGINT
// releasing the advisory lock waits for its timeout; the second SIGINT
// exits 130 at once, before the release gets to the Lease (which an
// orderly stop would have deleted, and which is left to expire).
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	h := newHarness(t, 0)
	u, err := url.Parse(h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezingProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	rb := writeRunbook(t, `    - name: cordon-nothing
      action: k8s.cordon
      with: {nodes: []}
    - name: slow-write
      action: sql.exec
      with:
        sql: WITH s AS (SELECT pg_sleep(60)) UPDATE users SET name = name FROM s WHERE id = 1
`)
	cmd, stderr := h.startIrctl(u.String(), "-f", rb, "contain", "--yes")
	conn, err := pgx.Connect(context.Background(), h.sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		_ = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow statement never started: %s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	proxy.frozen.Store(true)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatalf("irctl stopped after one signal already (%v), so this test proves nothing: %s", waitErr, stderr)
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("irctl did not exit after the second signal")
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130; stderr %s", waitErr, stderr)
	}
	leases, err := h.cs.CoordinationV1().Leases(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{FieldSelector: "metadata.name=" + lock.LeaseName(h.incident)})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Items) != 1 {
		t.Errorf("%d Leases after the second signal; want the one the orderly stop did not get to release", len(leases.Items))
	}
	h.dropLease()
}

// SIGTERM while irctl waits at a prompt ends the question (no consent),
// journals the step as interrupted and exits 143; nothing is labelled.
func TestSIGTERMAtThePromptExits143AndChangesNothing(t *testing.T) {
	h := newHarness(t, 2)
	before := h.podState()
	term := h.startOnPTY("contain")
	term.waitFor("quarantine-pods: label 2 of 2 pods", 1)
	if err := term.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := term.wait(); code != 143 {
		t.Fatalf("exit %d, want 143\n%s", code, term.screen())
	}
	if !equalMaps(before, h.podState()) {
		t.Error("pods changed")
	}
	recs := h.journal()
	if last := recs[len(recs)-1]; last.Kind != incident.KindInterrupted || last.Step != "quarantine-pods" {
		t.Errorf("last record %+v, want interrupted quarantine-pods", last)
	}
}
