package sandbox_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// TestDownAfterServeKilled kills the serve process with SIGKILL, which
// gives it no chance to stop its servers, and checks that Down still ends
// every one of them and removes their data.
func TestDownAfterServeKilled(t *testing.T) {
	bin := sandboxtest.RequireBins(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := sandbox.Up(t.Context(), exe, sandbox.Options{BinDir: bin, Dir: dir, Log: testWriter{t}}, 2*time.Minute); err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { _ = sandbox.Down(dir, 30*time.Second) }) // if a check below fails
	procs := sandboxProcesses(t, dir)
	var rec struct{ Dirs []string }
	if data, err := os.ReadFile(filepath.Join(dir, "servers.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &rec); err != nil || len(rec.Dirs) != 2 {
		t.Fatalf("servers.json: %v, dirs %v; want the kube and postgres data dirs", err, rec.Dirs)
	}

	pid := readPid(t, dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; processAlive(pid); i++ {
		if i == 100 {
			t.Fatalf("serve process %d alive 10s after SIGKILL", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Its servers outlive it, in their own process groups.
	alive := 0
	for p := range procs {
		if processAlive(p) {
			alive++
		}
	}
	if alive == 0 {
		t.Fatal("no server outlived the serve process: the test proves nothing")
	}

	if err := sandbox.Down(dir, 30*time.Second); err != nil {
		t.Fatalf("Down: %v", err)
	}
	checkGone(t, procs)
	for _, d := range rec.Dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("data dir %s left behind: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "servers.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("servers.json left behind: %v", err)
	}
}

// sandboxProcesses returns every descendant of the serve process of dir
// (pid: command), checking that all the sandbox's servers are among them.
func sandboxProcesses(t *testing.T, dir string) map[int]string {
	t.Helper()
	serve := readPid(t, dir)
	parents := map[int]int{}
	names := map[int]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		parents[pid], _ = strconv.Atoi(fields[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		name, _, _ := strings.Cut(string(cmd), "\x00")
		names[pid] = filepath.Base(name)
	}
	procs := map[int]string{}
	for pid := range parents {
		for p := parents[pid]; p > 1; p = parents[p] {
			if p == serve {
				procs[pid] = names[pid]
				break
			}
		}
	}
	seen := map[string]bool{}
	for _, name := range procs {
		seen[name] = true
	}
	for _, want := range []string{"etcd", "kube-apiserver", "postgres", "kube-controller-manager", "kube-scheduler", "kwok", "mailpit", "prometheus"} {
		if !seen[want] {
			t.Errorf("no %s among the sandbox's processes %v", want, procs)
		}
	}
	return procs
}

// checkGone fails for each of procs still alive.
func checkGone(t *testing.T, procs map[int]string) {
	t.Helper()
	for pid, name := range procs {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) still alive after Down", name, pid)
		}
	}
}

// processAlive reports whether pid runs (a zombie counts as gone).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPid(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
