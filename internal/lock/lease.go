package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
)

// DefaultNamespace is where the Lease lives unless --lock-namespace (or
// IRCTL_LOCK_NAMESPACE) says otherwise. "default" exists in every cluster
// (the API server recreates it and refuses to delete it), and, unlike
// kube-system, holds none of the control plane's leader-election Leases,
// which a Role allowing lease updates there could disrupt.
const DefaultNamespace = metav1.NamespaceDefault

// NamespaceEnv is the environment variable that sets the Lease's
// namespace (the --lock-namespace flag wins).
const NamespaceEnv = "IRCTL_LOCK_NAMESPACE"

// LostError says why a held lock was lost.
type LostError struct {
	Where string // "Lease default/irctl-sec-20261122-001"
	Why   string
}

func (e *LostError) Error() string {
	return fmt.Sprintf("lost the responder lock (%s): %s; the run was stopped so that two responders never act at once", e.Where, e.Why)
}

// Lost is closed when the lock is lost (see Err); a nil Lock is never
// lost.
func (l *Lock) Lost() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.lost
}

// Err is why the lock was lost, a *LostError with exit code 5, or nil
// while it is held.
func (l *Lock) Err() error {
	if l == nil {
		return nil
	}
	select {
	case <-l.lost:
		return exitcode.Wrap(exitcode.Precondition, l.lostErr)
	default:
		return nil
	}
}

// Context returns a context that is cancelled, with the *LostError as
// its cause, when the lock is lost; call the CancelFunc when done.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	if l == nil {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-l.lost:
			cancel(l.Err())
		case <-done:
		case <-ctx.Done():
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

func (l *Lock) lose(err *LostError) {
	l.lostOnce.Do(func() {
		l.lostErr = err
		close(l.lost)
	})
}

// IsLost reports whether err says a held lock was lost.
func IsLost(err error) bool {
	var le *LostError
	return errors.As(err, &le)
}

func (l *Lock) lease(ctx context.Context, o Options) error {
	leases := o.Kube.Core.CoordinationV1().Leases(o.Namespace)
	name := LeaseName(o.Incident)
	where := fmt.Sprintf("Lease %s/%s", o.Namespace, name)
	now := metav1.NewMicroTime(time.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(o.Holder),
		LeaseDurationSeconds: ptr.To(int32(max(1, o.LeaseDuration/time.Second))),
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
	if apierrors.IsNotFound(err) {
		return exitcode.New(exitcode.Precondition, "responder lock (%s): namespace %s does not exist; nothing was changed (choose the lock's namespace with --lock-namespace or %s; every responder must use the same one)", where, o.Namespace, NamespaceEnv)
	}
	if err != nil {
		return fmt.Errorf("responder lock (%s): %s", where, kube.Short(err))
	}
	r := &renewer{l: l, leases: leases, where: where, holder: o.Holder, duration: o.LeaseDuration, held: created}
	l.wg.Add(1)
	go r.run()
	l.release = append(l.release, r.release)
	return nil
}

// renewer keeps a held Lease renewed, and notices when it is lost.
type renewer struct {
	l        *Lock
	leases   leaseClient
	where    string
	holder   string
	duration time.Duration

	mu   sync.Mutex
	held *coordinationv1.Lease
}

type leaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// run renews the Lease every third of its duration. The lock is lost when
// the Lease is gone or held by someone else, or when it could not be
// renewed for two thirds of its duration: another runner may take it
// once the whole duration has passed, so the holder stops first.
func (r *renewer) run() {
	defer r.l.wg.Done()
	interval := r.duration / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	lastRenew := time.Now()
	var lastErr error
	for {
		select {
		case <-r.l.stop:
			return
		case <-t.C:
		}
		lost, err := r.renew(interval)
		if lost != nil {
			r.l.lose(lost)
			return
		}
		if err == nil {
			lastRenew = time.Now()
			continue
		}
		lastErr = err
		if since := time.Since(lastRenew); since >= r.duration-interval {
			r.l.lose(&LostError{Where: r.where, Why: fmt.Sprintf("not renewed for %s (the Lease lasts %s): %s", since.Round(time.Second), r.duration, kube.Short(lastErr))})
			return
		}
	}
}

// renew updates the Lease's renewTime once. It returns a *LostError when
// the Lease was deleted or another holder has it, an error when the
// renewal failed but may succeed next time.
func (r *renewer) renew(timeout time.Duration) (*LostError, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	renewed := r.held.DeepCopy()
	renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
	upd, err := r.leases.Update(ctx, renewed, metav1.UpdateOptions{FieldManager: kube.FieldManager})
	switch {
	case err == nil:
		r.held = upd
		return nil, nil
	case apierrors.IsNotFound(err):
		return &LostError{Where: r.where, Why: "the Lease was deleted by someone else"}, nil
	case apierrors.IsConflict(err):
		// Somebody wrote the Lease since our last renewal: ours still if
		// it names us, else taken.
		cur, gerr := r.leases.Get(ctx, r.held.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) {
			return &LostError{Where: r.where, Why: "the Lease was deleted by someone else"}, nil
		}
		if gerr != nil {
			return nil, gerr
		}
		if cur.UID != r.held.UID || ptr.Deref(cur.Spec.HolderIdentity, "") != r.holder {
			return &LostError{Where: r.where, Why: "it was taken by " + ptr.Deref(cur.Spec.HolderIdentity, "somebody else")}, nil
		}
		r.held = cur
		return nil, err
	}
	return nil, err
}

// release deletes the Lease if it is still the one we hold, never one
// somebody took over.
func (r *renewer) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.leases.Delete(ctx, r.held.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &r.held.UID, ResourceVersion: &r.held.ResourceVersion}})
}
