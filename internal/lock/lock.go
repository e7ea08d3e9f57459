// Package lock keeps two responders from acting on the same incident at
// once: a coordination.k8s.io Lease in the cluster and a PostgreSQL
// advisory lock, each taken only when the phase uses that server. The
// second runner is refused, told who holds the lock.
package lock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
)

// LeaseDuration is how long a Lease stays valid without renewal: a
// responder whose laptop died holds the incident for at most this long.
const LeaseDuration = 60 * time.Second

// Held is returned when somebody else holds the lock.
type Held struct {
	Where  string // "Lease default/irctl-sec-20261122-001" or "PostgreSQL advisory lock"
	Holder string
	Since  time.Time
}

func (h *Held) Error() string {
	s := fmt.Sprintf("incident is locked by %s (%s)", h.Holder, h.Where)
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s + "; wait for them to finish, or coordinate"
}

// Lock is a held lock; Release it when the phase is over.
type Lock struct {
	release []func()
	stop    chan struct{}
	wg      sync.WaitGroup
}

// Release gives up everything the lock holds. It is safe to call twice.
func (l *Lock) Release() {
	if l == nil || l.stop == nil {
		return
	}
	close(l.stop)
	l.wg.Wait()
	for i := len(l.release) - 1; i >= 0; i-- {
		l.release[i]()
	}
	l.stop = nil
}

// Options say what to lock.
type Options struct {
	Incident  string
	Holder    string // operator identity plus pid, shown to the second runner
	Kube      *kube.Clients
	Namespace string // where the Lease lives
	DB        *pgxpool.Pool
}

// Acquire takes the Lease (when Kube is set) and the advisory lock (when
// DB is set). On failure nothing stays held.
func Acquire(ctx context.Context, o Options) (*Lock, error) {
	l := &Lock{stop: make(chan struct{})}
	if o.Kube != nil {
		if err := l.lease(ctx, o); err != nil {
			l.Release()
			return nil, err
		}
	}
	if o.DB != nil {
		if err := l.advisory(ctx, o); err != nil {
			l.Release()
			return nil, err
		}
	}
	return l, nil
}

// LeaseName is the name of the incident's Lease.
func LeaseName(incident string) string { return "irctl-" + strings.ToLower(incident) }

func (l *Lock) lease(ctx context.Context, o Options) error {
	leases := o.Kube.Core.CoordinationV1().Leases(o.Namespace)
	name := LeaseName(o.Incident)
	where := fmt.Sprintf("Lease %s/%s", o.Namespace, name)
	now := metav1.NewMicroTime(time.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(o.Holder),
		LeaseDurationSeconds: ptr.To(int32(LeaseDuration / time.Second)),
		AcquireTime:          &now,
		RenewTime:            &now,
	}
	if err := leasePreflight(ctx, o); err != nil {
		return err
	}
	created, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "irctl"}},
		Spec:       spec,
	}, metav1.CreateOptions{FieldManager: kube.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsForbidden(gerr) {
			return forbidden(o.Namespace, "get")
		}
		if gerr != nil {
			return fmt.Errorf("responder lock (%s): %s", where, kube.Short(gerr))
		}
		if !expired(cur) {
			h := &Held{Where: where, Holder: ptr.Deref(cur.Spec.HolderIdentity, "unknown")}
			if cur.Spec.AcquireTime != nil {
				h.Since = cur.Spec.AcquireTime.Time
			}
			return h
		}
		// Expired: take it over. The update carries the resourceVersion we
		// read, so two runners racing for a stale lease cannot both win.
		cur.Spec = spec
		created, err = leases.Update(ctx, cur, metav1.UpdateOptions{FieldManager: kube.FieldManager})
		if apierrors.IsConflict(err) {
			return &Held{Where: where, Holder: "another runner that just took over an expired lease"}
		}
		if apierrors.IsForbidden(err) {
			return forbidden(o.Namespace, "update")
		}
	}
	if apierrors.IsForbidden(err) {
		return forbidden(o.Namespace, "create")
	}
	if err != nil {
		return fmt.Errorf("responder lock (%s): %s", where, kube.Short(err))
	}
	held := created
	var mu sync.Mutex
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(LeaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				mu.Lock()
				renewed := held.DeepCopy()
				renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
				if upd, err := leases.Update(context.Background(), renewed, metav1.UpdateOptions{FieldManager: kube.FieldManager}); err == nil {
					held = upd
				}
				mu.Unlock()
			}
		}
	}()
	l.release = append(l.release, func() {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Delete only the lease we hold, never one somebody took over.
		_ = leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &held.UID, ResourceVersion: &held.ResourceVersion}})
	})
	return nil
}

// leaseVerbs are what holding the Lease takes: create it, read and take
// over an expired one, renew it, and delete it when done.
var leaseVerbs = []string{"create", "get", "update", "delete"}

// forbidden says which Lease permissions are missing. It is a
// precondition failure: nothing has been changed yet.
func forbidden(namespace string, verbs ...string) error {
	return exitcode.New(exitcode.Precondition, "responder lock: not allowed to %s leases.%s in namespace %s; nothing was changed (see %s)",
		strings.Join(verbs, ", "), coordinationv1.GroupName, namespace, kube.RoleFile)
}

// leasePreflight asks the API server whether the Lease can be taken,
// renewed and released: a lock that could be taken but not deleted would
// hold the incident for LeaseDuration after every run. When the review
// itself fails, the Lease calls that follow give the answer.
func leasePreflight(ctx context.Context, o Options) error {
	perms := make([]kube.Permission, len(leaseVerbs))
	for i, v := range leaseVerbs {
		perms[i] = kube.Permission{Verb: v, Group: coordinationv1.GroupName, Resource: "leases", Namespace: o.Namespace}
	}
	var denied *kube.Denied
	if err := o.Kube.Preflight(ctx, perms); !errors.As(err, &denied) {
		return nil
	}
	var missing []string
	for _, v := range leaseVerbs {
		if slices.ContainsFunc(denied.Missing, func(p kube.Permission) bool { return p.Verb == v }) {
			missing = append(missing, v)
		}
	}
	return forbidden(o.Namespace, missing...)
}

func expired(l *coordinationv1.Lease) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return time.Since(l.Spec.RenewTime.Time) > time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second
}

// advisoryKey maps an incident to a stable 64-bit advisory lock key.
func advisoryKey(incident string) int64 {
	h := fnv.New64a()
	h.Write([]byte("irctl:" + incident))
	return int64(h.Sum64())
}

func (l *Lock) advisory(ctx context.Context, o Options) error {
	conn, err := o.DB.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("responder lock (PostgreSQL): %w", err)
	}
	key := advisoryKey(o.Incident)
	// The session-level lock lives as long as this connection, which is
	// held out of the pool until Release; if irctl dies the server drops it.
	if _, err := conn.Exec(ctx, "SELECT set_config('application_name', $1, false)", "irctl "+o.Holder); err != nil {
		conn.Release()
		return fmt.Errorf("responder lock (PostgreSQL): %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Release()
		return fmt.Errorf("responder lock (PostgreSQL): %w", err)
	}
	if !ok {
		var holder string
		var since time.Time
		err := conn.QueryRow(ctx, `
			SELECT a.application_name, a.backend_start FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
			WHERE k.locktype = 'advisory' AND k.granted AND ((k.classid::bigint << 32) | k.objid::bigint) = $1
			LIMIT 1`, key).Scan(&holder, &since)
		conn.Release()
		if err != nil {
			holder, since = "another session", time.Time{}
		}
		return &Held{Where: "PostgreSQL advisory lock", Holder: strings.TrimPrefix(holder, "irctl "), Since: since}
	}
	l.release = append(l.release, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// A connection in an unknown state must not go back to the pool
			// still holding the lock.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	})
	return nil
}

// IsHeld reports whether err says the lock is held by someone else.
func IsHeld(err error) bool {
	var h *Held
	return errors.As(err, &h)
}
