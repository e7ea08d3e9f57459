package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/lock"
)

// Ctrl-C stops the step in flight through its context: the slow statement
// is cancelled on the server, the journal says "interrupted", irctl exits
// 130 at once, no session is left idle in transaction, and the responder
// lock's Lease (the phase also uses Kubernetes) is released, so that the
// next run is not refused for lock.LeaseDuration.
func TestInterruptCancelsTheStepAndRecordsIt(t *testing.T) {
	h := newHarness(t, 0)
	bin, err := buildIrctl()
	if err != nil {
		t.Fatal(err)
	}
	rb := filepath.Join(t.TempDir(), "slow.yaml")
	if err := os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: slow
params:
  namespace: {default: x}
phases:
  contain:
    - name: cordon-nothing
      action: k8s.cordon
      with: {nodes: []}
    - name: slow-write
      action: sql.exec
      with:
        sql: WITH s AS (SELECT pg_sleep(60)) UPDATE users SET name = name FROM s WHERE id = 1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--kubeconfig", h.sb.KubeconfigPath, "--database-url", h.sb.DatabaseURL, "--state-dir", h.stateDir, "--incident", h.incident, "-f", rb, "contain", "--yes")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), h.sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	sleeping := func() int {
		var n int
		_ = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n)
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for sleeping() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the slow statement never started: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	lease := func() error {
		_, err := h.cs.CoordinationV1().Leases(lock.DefaultNamespace).Get(context.Background(), lock.LeaseName(h.incident), metav1.GetOptions{})
		return err
	}
	if err := lease(); err != nil {
		t.Errorf("the running phase should hold the Lease: %v", err)
	}
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want 130; stderr %s", err, stderr.String())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s to stop after Ctrl-C", d)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr should say interrupted: %s", stderr.String())
	}
	recs := h.journal()
	if last := recs[len(recs)-1]; last.Kind != incident.KindInterrupted || last.Step != "slow-write" {
		t.Errorf("last journal record: %+v, want interrupted slow-write", last)
	}
	if err := lease(); !apierrors.IsNotFound(err) {
		t.Errorf("the interrupted run should have deleted its Lease: %v", err)
	}
	var idle int
	time.Sleep(200 * time.Millisecond)
	_ = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' OR query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()`).Scan(&idle)
	if idle != 0 {
		t.Errorf("%d sessions left idle in transaction or still sleeping", idle)
	}
}
