package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// How irctl's own retry of an uncertain write waits: doubling from
// WriteBackoffBase to WriteBackoffCap, at most WriteAttempts writes. The
// step's context deadline bounds it too: a wait that would end past the
// deadline is not started.
const (
	WriteBackoffBase = 100 * time.Millisecond
	WriteBackoffCap  = 5 * time.Second
	WriteAttempts    = 8
)

// The backoff pause uses; tests shorten it.
var backoffBase, backoffCap = WriteBackoffBase, WriteBackoffCap

// RetryAfterHeader carries a write response's Retry-After once
// noBlindResend has taken it away from client-go.
const RetryAfterHeader = "Irctl-Retry-After"

// noBlindResend keeps client-go from resending writes. client-go repeats
// any request, writes included, whose 429 or 5xx response carries a
// Retry-After header; a create resent after it reached the server then
// fails with AlreadyExists and a patch is applied twice. For every method
// but GET and HEAD this moves the header aside, so client-go returns the
// error and Write decides, after a fresh read, whether to write again.
type noBlindResend struct{ next http.RoundTripper }

// WrapNoBlindResend is a rest.Config WrapTransport.
func WrapNoBlindResend(rt http.RoundTripper) http.RoundTripper { return noBlindResend{next: rt} }

func (t noBlindResend) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || req.Method == http.MethodGet || req.Method == http.MethodHead {
		return resp, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		if v := resp.Header.Get("Retry-After"); v != "" {
			resp.Header = resp.Header.Clone()
			resp.Header.Del("Retry-After")
			resp.Header.Set(RetryAfterHeader, v)
		}
	}
	return resp, nil
}

// Uncertain reports whether a write that failed with err may still have
// reached the server, or may succeed if tried again: a 5xx or 429
// response, a timeout, a dropped or refused connection. A conflict
// counts too: it is resolved by reading the object again.
func Uncertain(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsConflict(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTimeout(err) || apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code >= 500
	}
	if utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) || utilnet.IsHTTP2ConnectionLost(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Write runs write until it succeeds, fails for certain, or the step's
// context ends, and never resends blindly: after an uncertain failure it
// first calls settled, a fresh read of the object, which reports whether
// the write has taken effect (the lost response was a success, or a create
// finds the object it made); then Write returns nil without writing again.
// A read that fails uncertainly is read again after the next wait. settled
// may be nil when write itself reads the object before it writes.
//
// Write returns the last error when it gives up; an error from settled
// that is not uncertain (NotFound, a replaced object) ends it at once.
func Write(ctx context.Context, write func() error, settled func() (bool, error)) error {
	writes := 0
	var last error
	for wait := 0; ; wait++ {
		if writes > 0 && settled != nil {
			done, err := settled()
			switch {
			case err == nil && done:
				return nil
			case err != nil && !Uncertain(err):
				return err
			case err != nil:
				last = err
				if !pause(ctx, wait, err) {
					return last
				}
				continue
			}
		}
		if writes == WriteAttempts {
			return last
		}
		writes++
		err := write()
		if err == nil || !Uncertain(err) || ctx.Err() != nil {
			return err
		}
		last = err
		if !pause(ctx, wait, err) {
			return last
		}
	}
}

// pause waits before the next attempt of Write (the wait-th), as long as
// the server asks (Retry-After, when the error carries it) or the backoff
// says; false means give up: too many waits, or the deadline is too near.
func pause(ctx context.Context, wait int, err error) bool {
	if wait >= 2*WriteAttempts {
		return false
	}
	d := min(backoffBase<<min(wait, 10), backoffCap)
	if s, ok := apierrors.SuggestsClientDelay(err); ok {
		d = max(d, min(time.Duration(s)*time.Second, WriteBackoffCap))
	} else if apierrors.IsTooManyRequests(err) {
		// Priority and fairness answers 429 in plain text, its Retry-After
		// (1 s) in the header noBlindResend moved: wait as long.
		d = max(d, time.Second)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Retry is Write for a call that changes nothing (a server dry run), which
// is safe to repeat as it is after an uncertain failure.
func Retry(ctx context.Context, call func() error) error { return Write(ctx, call, nil) }
