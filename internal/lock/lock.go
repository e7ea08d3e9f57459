// Package lock keeps two responders from acting on the same incident at
// once: a coordination.k8s.io Lease in the cluster and a PostgreSQL
// advisory lock, each taken only when the phase uses that server. The
// second runner is refused, told who holds the lock.
//
// The Lease lives in one namespace for everybody (DefaultNamespace unless
// configured), never in the namespace of each operator's kubeconfig
// context, which would let two responders hold "the" lock at once. A
// holder that loses its Lease (deleted, taken over, or not renewed in
// time) is told through Lost and must stop.
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

	lost     chan struct{} // closed when the lock is lost
	lostOnce sync.Once
	lostErr  error
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
	Namespace string // where the Lease lives; DefaultNamespace when empty
	DB        *pgxpool.Pool
	// LeaseDuration is how long the Lease stays valid unrenewed; the
	// holder renews it every third of that. Zero means LeaseDuration.
	LeaseDuration time.Duration
}

// Acquire takes the Lease (when Kube is set) and the advisory lock (when
// DB is set). On failure nothing stays held.
func Acquire(ctx context.Context, o Options) (*Lock, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = LeaseDuration
	}
	l := &Lock{stop: make(chan struct{}), lost: make(chan struct{})}
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
	// The lock is lost with its session (a dropped connection, an admin's
	// pg_terminate_backend): check that it is still held as often as the
	// Lease is renewed. Release stops this before it unlocks.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		interval := o.LeaseDuration / 3
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			var held bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = $1)`, key).Scan(&held)
			cancel()
			if err != nil || !held {
				why := "the session holding it no longer holds it"
				if err != nil {
					why = "the session holding it is gone or not answering: " + oneLine(err.Error())
				}
				l.lose(&LostError{Where: "PostgreSQL advisory lock", Why: why})
				return
			}
		}
	}()
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

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// IsHeld reports whether err says the lock is held by someone else.
func IsHeld(err error) bool {
	var h *Held
	return errors.As(err, &h)
}
