//go:build unix

package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func checkPlatform() error { return nil }

// detach puts cmd in a new session, so that it outlives the terminal and the
// shell job of the process that started it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// ownProcessGroup gives cmd its own process group, as envtest does for etcd
// and kube-apiserver: a Ctrl-C in the terminal then reaches only the
// sandbox, which shuts its servers down in order, and killGroup can end the
// server with all its children.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// runAs makes cmd run as u (nil: the current user). Call it after detach
// or ownProcessGroup, which replace cmd.SysProcAttr.
func runAs(cmd *exec.Cmd, u *osUser) {
	if u == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), NoSetGroups: true}
}

// alive reports whether pid names a running process. A zombie counts as
// gone: it has exited and only waits for its parent to reap it.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // no procfs (macOS): trust kill(2)
	}
	// The state follows the parenthesised command name, which may itself
	// contain spaces or parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }

// killGroup SIGKILLs the process group led by pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// killPid SIGKILLs pid alone.
func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// killTree SIGKILLs the process group of pid and the groups of its direct
// children: the servers a sandbox starts each lead their own group (see
// ownProcessGroup), so killing the serve process's group alone would orphan
// them. Children are found through /proc; without it only pid's group dies.
func killTree(pid int) {
	for _, child := range children(pid) {
		killGroup(child)
	}
	killGroup(pid)
}

// children lists the direct children of pid from /proc.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// After ") " come the state and then the parent's pid.
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
