package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// buildIrctl compiles the real binary once per test run.
var buildIrctl = sync.OnceValues(func() (string, error) {
	dir, err := sandboxtest.TempDir() // removed when the tests end
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "irctl")
	out, err := exec.Command("go", "build", "-o", bin, "irctl.dev/irctl/cmd/irctl").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

// terminal runs the real irctl binary on a pseudo-terminal.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func (h *harness) startOnPTY(args ...string) *terminal {
	h.t.Helper()
	bin, err := buildIrctl()
	if err != nil {
		h.t.Fatalf("build irctl: %v", err)
	}
	full := append([]string{"--kubeconfig", h.sb.KubeconfigPath, "--database-url", h.sb.DatabaseURL,
		"--state-dir", h.stateDir, "--incident", h.incident}, append(h.binarySets(args), args...)...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		h.t.Fatal(err)
	}
	term := &terminal{t: h.t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		b := make([]byte, 4096)
		for {
			n, err := tty.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	h.t.Cleanup(func() { tty.Close(); _ = cmd.Process.Kill() })
	return term
}

// waitFor waits until the screen output contains s the nth time.
func (term *terminal) waitFor(s string, nth int) {
	term.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		term.mu.Lock()
		n := strings.Count(term.buf.String(), s)
		term.mu.Unlock()
		if n >= nth {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	term.t.Fatalf("timed out waiting for %q; screen so far:\n%s", s, term.screen())
}

func (term *terminal) screen() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.buf.String()
}

func (term *terminal) send(s string) {
	if _, err := io.WriteString(term.tty, s); err != nil {
		term.t.Fatal(err)
	}
}

func (term *terminal) wait() int {
	term.t.Helper()
	err := term.cmd.Wait()
	<-term.done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		term.t.Fatal(err)
	}
	return 0
}

func TestTerminalConfirmationNoChangesNothingYesApplies(t *testing.T) {
	h := newHarness(t, 3)
	pods, rows := h.podState(), h.dbState()

	term := h.startOnPTY("contain")
	term.waitFor("quarantine-pods: label 3 of 3 pods", 1)
	term.send("n")
	if code := term.wait(); code != 3 {
		t.Fatalf("answering no: exit %d, want 3\n%s", code, term.screen())
	}
	if !equalMaps(pods, h.podState()) || rows != h.dbState() {
		t.Fatal("answering no changed something")
	}

	term = h.startOnPTY("contain")
	term.waitFor("quarantine-pods: label 3 of 3 pods", 1)
	term.send("y")
	term.waitFor("isolate-quarantined-pods: create NetworkPolicy", 1)
	term.send("y")
	term.waitFor("revoke-api-keys: revoke active API keys", 1)
	term.send("y")
	term.waitFor("rotate-jwt-secret: create Secret", 1)
	term.send("y")
	if code := term.wait(); code != 0 {
		t.Fatalf("answering yes: exit %d\n%s", code, term.screen())
	}
	for name, st := range h.podState() {
		if !strings.HasSuffix(st, "quarantine=true") {
			t.Errorf("pod %s not quarantined after yes: %s", name, st)
		}
	}
	if total, bg := h.activeKeys(); total != bg {
		t.Errorf("keys not revoked after yes: %d active, %d break-glass", total, bg)
	}
}
