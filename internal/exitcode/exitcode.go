// Package exitcode maps irctl's failures to the documented process exit
// codes, so that scripts and CI can tell "declined" from "broken".
package exitcode

import (
	"context"
	"errors"
	"fmt"
)

// The exit codes irctl promises (README "Exit codes").
const (
	OK           = 0
	Error        = 1
	Usage        = 2   // bad flags, unknown command, invalid runbook or params
	Declined     = 3   // declined at a prompt, or a destructive step without a terminal and without --yes
	Partial      = 4   // some targets of a step failed
	Precondition = 5   // permission preflight failed, lock held, plan drifted
	Interrupted  = 130 // SIGINT
)

// CodedError carries an exit code with the error that caused it.
type CodedError struct {
	Code int
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// New returns an error that makes irctl exit with code.
func New(code int, format string, args ...any) error {
	return &CodedError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Wrap attaches code to err; a nil err stays nil.
func Wrap(code int, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// Code returns the exit code for err: OK for nil, the code of the outermost
// CodedError, Interrupted for a canceled context, Error otherwise.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var ce *CodedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	if errors.Is(err, context.Canceled) {
		return Interrupted
	}
	return Error
}
