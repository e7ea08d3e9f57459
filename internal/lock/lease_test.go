package lock

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// shortLease is the Lease duration of these tests: renewed every second.
const shortLease = 3 * time.Second

// slow skips a test that waits for Lease renewals in -short (unit) runs;
// under CI=true it always runs.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("integration: waits for Lease renewals (seconds); run without -short")
	}
}

// leaseEnv is an admin client and irctl clients on the sandbox, and an
// incident ID of the test's own.
func leaseEnv(t *testing.T) (kubernetes.Interface, *kube.Clients, string) {
	t.Helper()
	sb := sandboxtest.Get(t)
	admin, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClients(sb.RESTConfig, "test")
	if err != nil {
		t.Fatal(err)
	}
	return admin, c, "SEC-20260101-" + randHex(2)[:3]
}

// waitLost waits for l to be lost and returns why.
func waitLost(t *testing.T, l *Lock) error {
	t.Helper()
	select {
	case <-l.Lost():
		return l.Err()
	case <-time.After(3 * shortLease):
		t.Fatal("the lock was not reported lost")
		return nil
	}
}

// Two holders: with no namespace given, both use DefaultNamespace
// whatever their kubeconfig says, so the second is refused; a holder
// that renews keeps the Lease past its duration.
func TestLeaseLivesInOneNamespaceAndIsRenewed(t *testing.T) {
	slow(t)
	admin, c, inc := leaseEnv(t)
	ctx := t.Context()
	first, err := Acquire(ctx, Options{Incident: inc, Holder: "alice (pid 1)", Kube: c, LeaseDuration: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	if _, err := admin.CoordinationV1().Leases(DefaultNamespace).Get(ctx, LeaseName(inc), metav1.GetOptions{}); err != nil {
		t.Fatalf("the Lease is not in %s: %v", DefaultNamespace, err)
	}
	// Longer than the Lease lasts: only renewal keeps the second out.
	time.Sleep(shortLease + shortLease/2)
	_, err = Acquire(ctx, Options{Incident: inc, Holder: "bob (pid 2)", Kube: c, Namespace: DefaultNamespace, LeaseDuration: shortLease})
	if !IsHeld(err) || !strings.Contains(err.Error(), "alice (pid 1)") || !strings.Contains(err.Error(), "Lease default/") {
		t.Fatalf("second holder: %v", err)
	}
	select {
	case <-first.Lost():
		t.Fatalf("lost while renewing: %v", first.Err())
	default:
	}
	if first.Err() != nil {
		t.Fatal(first.Err())
	}
}

// A Lease deleted under the holder cancels the run's context with the
// loss as its cause (exit 5).
func TestDeletedLeaseCancelsTheRun(t *testing.T) {
	slow(t)
	admin, c, inc := leaseEnv(t)
	l, err := Acquire(t.Context(), Options{Incident: inc, Holder: "alice (pid 1)", Kube: c, LeaseDuration: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	runCtx, done := l.Context(t.Context())
	defer done()
	if err := admin.CoordinationV1().Leases(DefaultNamespace).Delete(t.Context(), LeaseName(inc), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-runCtx.Done():
	case <-time.After(3 * shortLease):
		t.Fatal("the run's context was not cancelled")
	}
	cause := context.Cause(runCtx)
	if !IsLost(cause) || exitcode.Code(cause) != exitcode.Precondition || !strings.Contains(cause.Error(), "the Lease was deleted by someone else") {
		t.Fatalf("cause: exit %d, %v", exitcode.Code(cause), cause)
	}
	if err := waitLost(t, l); err.Error() != cause.Error() {
		t.Errorf("Err %v, cause %v", err, cause)
	}
}

// Another holder taking the Lease over is a loss naming the new holder;
// the loser's release leaves the new holder's Lease alone.
func TestLeaseTakenOverIsLost(t *testing.T) {
	slow(t)
	admin, c, inc := leaseEnv(t)
	l, err := Acquire(t.Context(), Options{Incident: inc, Holder: "alice (pid 1)", Kube: c, LeaseDuration: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	leases := admin.CoordinationV1().Leases(DefaultNamespace)
	cur, err := leases.Get(t.Context(), LeaseName(inc), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.HolderIdentity = ptr.To("mallory (pid 3)")
	if _, err := leases.Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitLost(t, l); !IsLost(err) || !strings.Contains(err.Error(), "taken by mallory (pid 3)") {
		t.Fatalf("want a loss to mallory, got %v", err)
	}
	l.Release()
	after, err := leases.Get(t.Context(), LeaseName(inc), metav1.GetOptions{})
	if err != nil || ptr.Deref(after.Spec.HolderIdentity, "") != "mallory (pid 3)" {
		t.Fatalf("the new holder's Lease was touched: %v %v", after, err)
	}
	_ = leases.Delete(t.Context(), LeaseName(inc), metav1.DeleteOptions{})
}

// A holder that cannot renew (here: its permission to update Leases is
// withdrawn) gives up before the Lease could expire for others.
func TestUnrenewableLeaseIsLost(t *testing.T) {
	slow(t)
	sb := sandboxtest.Get(t)
	admin, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := "lock-" + randHex(4)
	if _, err := admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := "responder-" + randHex(4)
	cfg, err := sb.AddKubeUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClients(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	grant(t, admin, ns, user, leaseVerbs, "update", true)
	l, err := Acquire(t.Context(), Options{Incident: "SEC-20260101-001", Holder: user, Kube: c, Namespace: ns, LeaseDuration: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	grant(t, admin, ns, user, []string{"create", "get", "delete"}, "update", false)
	err = waitLost(t, l)
	if !IsLost(err) || !strings.Contains(err.Error(), "not renewed for") {
		t.Fatalf("want a loss for want of renewal, got %v", err)
	}
}

// A missing lock namespace is a precondition failure naming the flag.
func TestMissingLockNamespaceIsAPrecondition(t *testing.T) {
	_, c, inc := leaseEnv(t)
	_, err := Acquire(t.Context(), Options{Incident: inc, Holder: "alice", Kube: c, Namespace: "no-such-ns-" + randHex(3)})
	if exitcode.Code(err) != exitcode.Precondition || !strings.Contains(err.Error(), "--lock-namespace") {
		t.Fatalf("exit %d: %v", exitcode.Code(err), err)
	}
}

// The advisory lock lives with its session: a session that ends (here an
// admin's pg_terminate_backend; a dropped connection is the same) loses
// the lock, and the holder is told.
func TestEndedSessionLosesTheAdvisoryLock(t *testing.T) {
	slow(t)
	sb := sandboxtest.Get(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	holder := "alice (pid " + randHex(3) + ")"
	l, err := Acquire(ctx, Options{Incident: "SEC-20260101-" + randHex(2)[:3], Holder: holder, DB: pool, LeaseDuration: shortLease})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	admin, err := pgx.Connect(ctx, sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", "irctl "+holder).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d sessions: %v", n, err)
	}
	if err := waitLost(t, l); !IsLost(err) || exitcode.Code(err) != exitcode.Precondition || !strings.Contains(err.Error(), "PostgreSQL advisory lock") {
		t.Fatalf("want the advisory lock lost, got %v", err)
	}
}
