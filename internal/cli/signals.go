package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"irctl.dev/irctl/internal/exitcode"
)

// signalError is the cause of the run's context when a signal stopped it.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "received " + e.sig.String() }

// code is the shell's convention, 128 + the signal number: 130 for SIGINT
// (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP (the SSH session dropped).
func (e signalError) code() int { return 128 + int(e.sig) }

// handleSignals cancels ctx on SIGINT, SIGTERM or SIGHUP, so that no new
// step starts, calls in flight are cancelled through the context, the
// engine journals "interrupted" with whatever changed, and the lock is
// released on the way out. A second signal exits at once, without any of
// that: the operator asked twice.
func handleSignals(cancel context.CancelCauseFunc) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(signalError{s.(syscall.Signal)})
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			os.Exit(128 + int(s.(syscall.Signal)))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// signalExitCode turns the exit code of a run that a signal stopped into
// the signal's code: a step cut off by SIGTERM exits 143, not 130 or 1.
func signalExitCode(ctx context.Context, code int) int {
	var se signalError
	if code == exitcode.OK || !errors.As(context.Cause(ctx), &se) {
		return code
	}
	return se.code()
}
