package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
)

func TestSecondResponderIsRefusedNamingTheHolder(t *testing.T) {
	h := newHarness(t, 2)
	ctx := context.Background()
	c, err := kube.NewClients(h.sb.RESTConfig, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	for _, tc := range []struct {
		name string
		o    lock.Options
		want string
	}{
		{"lease", lock.Options{Kube: c}, "Lease " + lock.DefaultNamespace + "/irctl-"},
		{"advisory lock", lock.Options{DB: pool}, "PostgreSQL advisory lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Incident, tc.o.Holder = h.incident, "alice@laptop (pid 42)"
			other, err := lock.Acquire(ctx, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			pods, rows := h.podState(), h.dbState()
			r := h.run("contain", "--yes")
			if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "alice@laptop (pid 42)") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("with the lock held: exit %d, %q", r.code, r.stderr)
			}
			if !equalMaps(pods, h.podState()) || rows != h.dbState() {
				t.Error("refused run changed something")
			}
			// A rehearsal changes nothing, takes no lock and says so.
			if r := h.run("contain", "--dry-run=server"); r.code != 0 || !strings.Contains(r.stderr, "--dry-run=server takes no responder lock") {
				t.Errorf("server dry run while locked: exit %d %s", r.code, r.stderr)
			}
			other.Release()
			if r := h.run("contain", "--yes"); r.code != 0 {
				t.Errorf("after release: exit %d %s", r.code, r.stderr)
			}
		})
	}
}

// A run whose Lease is deleted under it (another responder's cleanup, an
// admin) stops: the step in flight is cancelled and irctl exits 5 saying
// it lost the lock, instead of acting on while somebody else may take it.
func TestARunThatLosesItsLockStops(t *testing.T) {
	h := newHarness(t, 0)
	lockLeaseDuration = 3 * time.Second
	t.Cleanup(func() { lockLeaseDuration = 0 })
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
	done := make(chan result, 1)
	go func() { done <- h.run("-f", rb, "contain", "--yes") }()
	leases := h.cs.CoordinationV1().Leases(lock.DefaultNamespace)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := leases.Get(context.Background(), lock.LeaseName(h.incident), metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never took its Lease")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := leases.Delete(context.Background(), lock.LeaseName(h.incident), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(45 * time.Second):
		t.Fatal("the run went on after losing its lock")
	}
	if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "lost the responder lock (Lease "+lock.DefaultNamespace+"/"+lock.LeaseName(h.incident)+"): the Lease was deleted by someone else") {
		t.Fatalf("exit %d, want %d:\n%s\n%s", r.code, exitcode.Precondition, r.stdout, r.stderr)
	}
	var outcome bool
	for _, rec := range h.journal() {
		outcome = outcome || (rec.Step == "slow-write" && rec.Kind == incident.KindOutcome && rec.Error == "")
	}
	if outcome {
		t.Error("the slow step finished as if nothing happened")
	}
}
