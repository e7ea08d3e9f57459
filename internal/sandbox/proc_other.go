//go:build !unix

package sandbox

import (
	"errors"
	"os"
	"os/exec"
)

// The sandbox relies on process groups, sessions and running PostgreSQL as
// another user; these stubs only keep the package compiling elsewhere.

func checkPlatform() error { return errors.New("the irctl sandbox needs Linux or macOS") }

func detach(*exec.Cmd) {}

func ownProcessGroup(*exec.Cmd) {}

func runAs(*exec.Cmd, *osUser) {}

func alive(int) bool { return false }

func terminate(int) error { return errUnsupported }

func interrupt(p *os.Process) error { return p.Kill() }

func killGroup(int) {}

func killPid(int) {}

func killTree(int) {}

var errUnsupported = checkPlatform()
