package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files of a background sandbox's state directory, besides kubeconfig and
// env (written by Start).
const (
	pidFile   = "serve.pid" // the serve process, written by Up
	logFile   = "serve.log" // its stdout and stderr
	readyFile = "ready"     // written by Serve once the sandbox is up
)

// Timeouts of Up and Down when given none (<= 0).
const (
	DefaultUpTimeout   = 3 * time.Minute
	DefaultDownTimeout = 30 * time.Second
)

// Up starts `exe sandbox serve --dir DIR --seed=BOOL [--bin-dir BIN]` in
// the background (a new session; stdin /dev/null; stdout and stderr to
// DIR/serve.log), records its pid in DIR/serve.pid and waits until it has
// written DIR/ready. --seed is always passed, so the CLI's default for it
// does not matter. If the child exits first, or timeout (<= 0:
// DefaultUpTimeout) passes, or ctx ends, Up stops the child and returns an
// error quoting the end of serve.log. If DIR/serve.pid names a live serve
// process, Up fails with "sandbox already running in DIR (pid N)".
// o.Dir is required; o.Log receives Up's own progress lines.
func Up(ctx context.Context, exe string, o Options, timeout time.Duration) error {
	if err := checkPlatform(); err != nil {
		return err
	}
	if o.Dir == "" {
		return errors.New("sandbox up: a state directory is required")
	}
	if timeout <= 0 {
		timeout = DefaultUpTimeout
	}
	logf := newLogf(o.Log)
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pidPath, readyPath, logPath := filepath.Join(dir, pidFile), filepath.Join(dir, readyFile), filepath.Join(dir, logFile)
	if pid, err := readPid(pidPath); err == nil && serving(pid) {
		return fmt.Errorf("sandbox already running in %s (pid %d)", dir, pid)
	}
	// Servers of a sandbox whose serve process died go first: the new one
	// rewrites the record of them.
	if killed, err := sweep(dir); err != nil {
		return err
	} else if len(killed) > 0 {
		logf("stopped %s, left running by a previous sandbox in %s", strings.Join(killed, ", "), dir)
	}
	if err := os.Remove(readyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	args := []string{"sandbox", "serve", "--dir", dir, "--seed=" + strconv.FormatBool(o.Seed)}
	if o.BinDir != "" {
		bin, err := filepath.Abs(o.BinDir)
		if err != nil {
			return err
		}
		args = append(args, "--bin-dir", bin)
	}
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close() // the child keeps its own descriptor
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = out, out // a nil Stdin is /dev/null
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", exe, err)
	}
	pid := cmd.Process.Pid
	// Reaping the child keeps a zombie from looking alive to Down when
	// this process lives on; the goroutine ends when the child does.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	fail := func(reason string) error {
		select {
		case <-exited:
		default:
			_ = terminate(pid)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				killTree(pid)
				<-exited
			}
		}
		_ = os.Remove(pidPath)
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s; last lines of %s:\n%s", reason, logPath, tail(log, 20))
	}
	if err := writeFileAtomic(pidPath, []byte(strconv.Itoa(pid)+"\n")); err != nil {
		return fail(err.Error())
	}
	logf("waiting for the sandbox (pid %d, log %s)...", pid, logPath)

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(readyPath); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fail(fmt.Sprintf("sandbox serve exited before it was ready (%v)", waitErr))
		case <-ctx.Done():
			return fail(fmt.Sprintf("sandbox up: %v", ctx.Err()))
		case <-deadline.C:
			return fail(fmt.Sprintf("sandbox not ready after %s", timeout))
		case <-tick.C:
		}
	}
}

// Serve is `irctl sandbox serve`: it starts a sandbox (o.Dir is required),
// writes DIR/ready, serves until ctx ends (the CLI cancels it on SIGTERM or
// SIGINT), then stops the sandbox and removes DIR/ready. The kubeconfig and
// env files stay until Down.
func Serve(ctx context.Context, o Options) error {
	if o.Dir == "" {
		return errors.New("sandbox serve: a state directory is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	readyPath := filepath.Join(dir, readyFile)
	if err := writeFileAtomic(readyPath, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return errors.Join(err, s.Stop())
	}
	<-ctx.Done()
	newLogf(o.Log)("stopping the sandbox...")
	err = s.Stop()
	if rmErr := os.Remove(readyPath); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}

// Down stops the background sandbox of dir: it sends SIGTERM to the pid in
// DIR/serve.pid, waits up to timeout (<= 0: DefaultDownTimeout) for it to
// exit, else SIGKILLs it with its servers (and returns an error saying so).
// Then it kills any server still recorded in DIR/servers.json - left
// running when the serve process died without stopping them - and removes
// their data, and DIR/kubeconfig, env, ready and serve.pid. serve.log
// stays for post-mortems.
func Down(dir string, timeout time.Duration) error {
	if err := checkPlatform(); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultDownTimeout
	}
	pid, err := readPid(filepath.Join(dir, pidFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no sandbox running in %s", dir)
	}
	if err != nil {
		return err
	}
	var stopErr error
	if serving(pid) {
		if err := terminate(pid); err != nil {
			return fmt.Errorf("stopping sandbox (pid %d): %w", pid, err)
		}
		if !waitExit(pid, timeout) {
			killTree(pid)
			waitExit(pid, 5*time.Second)
			stopErr = fmt.Errorf("sandbox (pid %d) did not stop within %s and was killed", pid, timeout)
		}
	}
	// A serve process that was killed (by Down above, or before: SIGKILL,
	// the OOM killer) left its servers running and their data behind.
	if _, err := sweep(dir); err != nil {
		stopErr = errors.Join(stopErr, fmt.Errorf("cleaning up after the sandbox: %w", err))
	}
	for _, name := range []string{"kubeconfig", "env", readyFile, pidFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			stopErr = errors.Join(stopErr, err)
		}
	}
	return stopErr
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a pid: %q", path, b)
	}
	return pid, nil
}

// serving reports whether pid is alive and, where /proc tells, still a
// `sandbox serve` process: a stale pid file may name a recycled pid, which
// must not be signalled.
func serving(pid int) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return true
	}
	return strings.Contains(string(b), "sandbox\x00serve\x00")
}

// waitExit polls until pid has exited or timeout passes.
func waitExit(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
