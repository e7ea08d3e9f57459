package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// TestServe runs Serve in-process, as `irctl sandbox serve` would, seeded,
// and checks the state files, the servers, and that cancelling ctx stops
// them, the simulated kubelets and snapshot controller included.
func TestServe(t *testing.T) {
	bin := sandboxtest.RequireBins(t)
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(t.Context())
	var serveErr error
	served := make(chan struct{})
	before := simulationGoroutines() // the shared sandbox's, if it runs
	go func() {
		defer close(served)
		serveErr = sandbox.Serve(ctx, sandbox.Options{BinDir: bin, Dir: dir, Seed: true, Log: testWriter{t}})
	}()
	// Serve logs to t: it must be done before the test is.
	t.Cleanup(func() { cancel(); <-served })
	waitFor(t, filepath.Join(dir, "ready"), served)

	env := checkStateDir(t, dir)
	kubeAddr, pgAddr := checkServers(t, env)
	kubeletAddrs := kubeletAddrs(t, env)
	orchURL, err := url.Parse(env["ORCHESTRATOR_URL"])
	if err != nil || orchURL.Host == "" {
		t.Fatalf("ORCHESTRATOR_URL = %q in a seeded sandbox's env (%v)", env["ORCHESTRATOR_URL"], err)
	}
	if resp, err := http.Get(env["ORCHESTRATOR_URL"] + "/health"); err != nil {
		t.Errorf("orchestrator stand-in: %v", err)
	} else {
		resp.Body.Close()
	}
	if len(kubeletAddrs) != len(sandbox.NodeNames) {
		t.Errorf("kubelet endpoints %v, want one per seeded node", kubeletAddrs)
	}
	if n := simulationGoroutines(); n <= before {
		t.Errorf("%d goroutines of simulated kubelets or snapshot controllers, %d before Serve: Serve runs none", n, before)
	}

	cancel()
	select {
	case <-served:
		if serveErr != nil {
			t.Fatalf("Serve: %v", serveErr)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := os.Stat(filepath.Join(dir, "ready")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ready file left behind: %v", err)
	}
	checkClosed(t, append([]string{kubeAddr, pgAddr, orchURL.Host}, kubeletAddrs...)...)
	// Stop waits for them; give those that were returning a moment.
	for i := 0; simulationGoroutines() > before; i++ {
		if i == 20 {
			t.Errorf("goroutines of the simulated kubelets or snapshot controller outlive Serve:\n%s", goroutines())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubeletAddrs returns the kubelet endpoints registered on the seeded
// Nodes of the sandbox that env points to.
func kubeletAddrs(t *testing.T, env map[string]string) []string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, name := range sandbox.NodeNames {
		n, err := cs.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p := n.Status.DaemonEndpoints.KubeletEndpoint.Port; p > 0 {
			addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		}
	}
	return addrs
}

// simulationGoroutines counts the goroutines of simulated kubelets and
// snapshot controllers alive in this process.
func simulationGoroutines() int {
	n := 0
	for _, g := range strings.Split(goroutines(), "\n\n") {
		for _, f := range []string{"sandbox.(*kubelets)", "sandbox.startKubelets", "sandbox.startSnapshotController", "sandbox.(*snapshotController)",
			"sandbox.startOrchestratorAPI", "sandbox.(*orchestratorAPI)"} {
			if strings.Contains(g, f) {
				n++
				break
			}
		}
	}
	return n
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestUpDown runs the background lifecycle with this test binary standing
// in for irctl (see TestMain).
func TestUpDown(t *testing.T) {
	bin := sandboxtest.RequireBins(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	// Clients of the kubeconfig go through a latency proxy.
	o := sandbox.Options{BinDir: bin, Dir: dir, Log: testWriter{t}, APILatency: 2 * time.Millisecond}
	if err := sandbox.Up(t.Context(), exe, o, 2*time.Minute); err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { _ = sandbox.Down(dir, 30*time.Second) }) // if a check below fails

	err = sandbox.Up(t.Context(), exe, o, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "sandbox already running in "+dir) {
		t.Errorf("second Up: err = %v, want already running", err)
	}
	env := checkStateDir(t, dir)
	kubeAddr, pgAddr := checkServers(t, env)
	if log, _ := os.ReadFile(filepath.Join(dir, "serve.log")); !strings.Contains(string(log), "latency proxy at "+kubeAddr+"\n") {
		t.Errorf("the kubeconfig's server %s is not the latency proxy; serve.log:\n%s", kubeAddr, log)
	}
	procs := sandboxProcesses(t, dir)

	if err := sandbox.Down(dir, 60*time.Second); err != nil {
		t.Fatalf("Down: %v", err)
	}
	checkGone(t, procs)
	for _, name := range []string{"kubeconfig", "env", "ready", "serve.pid", "servers.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after Down: %v", name, err)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, "serve.log"))
	if err != nil || !strings.Contains(string(log), "postgres ready on") {
		t.Errorf("serve.log = %q, %v; want the progress lines", log, err)
	}
	checkClosed(t, kubeAddr, pgAddr)
	if err := sandbox.Down(dir, time.Second); err == nil || !strings.Contains(err.Error(), "no sandbox running in") {
		t.Errorf("second Down: err = %v, want no sandbox running", err)
	}
}

// fakeIrctl writes a shell script standing in for irctl whose `sandbox
// serve` runs body. Its command line keeps "sandbox serve", which Down
// checks before signalling.
func fakeIrctl(t *testing.T, body string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "irctl")
	script := "#!/bin/sh\n# usage: irctl sandbox serve --dir DIR --seed=BOOL\ndir=$4\n" + body + "\n"
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestUpReportsEarlyExit(t *testing.T) {
	exe := fakeIrctl(t, `echo "kube-apiserver: cannot bind" >&2; exit 3`)
	dir := t.TempDir()
	err := sandbox.Up(t.Context(), exe, sandbox.Options{Dir: dir}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "kube-apiserver: cannot bind") {
		t.Fatalf("err = %v, want the exit and the log's tail", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "serve.pid")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve.pid left behind: %v", err)
	}
}

func TestUpTimeout(t *testing.T) {
	exe := fakeIrctl(t, `echo still starting; while :; do sleep 0.1; done`)
	dir := t.TempDir()
	start := time.Now()
	err := sandbox.Up(t.Context(), exe, sandbox.Options{Dir: dir}, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready after 500ms") || !strings.Contains(err.Error(), "still starting") {
		t.Fatalf("err = %v, want a timeout quoting the log", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Up took %s to give up", d)
	}
}

func TestUpDownFake(t *testing.T) {
	exe := fakeIrctl(t, `trap 'rm -f "$dir/ready"; exit 0' TERM
touch "$dir/kubeconfig" "$dir/env" "$dir/ready"
while :; do sleep 0.1; done`)
	dir := filepath.Join(t.TempDir(), "state")
	if err := sandbox.Up(t.Context(), exe, sandbox.Options{Dir: dir, Seed: true}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v, want 0700", fi.Mode().Perm())
	}
	pid, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	if err != nil {
		t.Fatal(err)
	}
	err = sandbox.Up(t.Context(), exe, sandbox.Options{Dir: dir}, 10*time.Second)
	want := fmt.Sprintf("sandbox already running in %s (pid %s)", dir, strings.TrimSpace(string(pid)))
	if err == nil || err.Error() != want {
		t.Errorf("second Up: err = %v, want %q", err, want)
	}
	if err := sandbox.Down(dir, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubeconfig", "env", "ready", "serve.pid"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after Down: %v", name, err)
		}
	}
}

func TestDownKillsStuckServe(t *testing.T) {
	exe := fakeIrctl(t, `trap '' TERM
touch "$dir/ready"
while :; do sleep 0.1; done`)
	dir := t.TempDir()
	if err := sandbox.Up(t.Context(), exe, sandbox.Options{Dir: dir}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	if err != nil {
		t.Fatal(err)
	}
	err = sandbox.Down(dir, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "was killed") {
		t.Errorf("Down: err = %v, want it to report the kill", err)
	}
	// SIGKILL is delivered asynchronously, and a killed child of this test
	// stays a zombie until reaped: wait a moment, and count a zombie as gone.
	deadline := time.Now().Add(5 * time.Second)
	for alive(strings.TrimSpace(string(pid))) {
		if time.Now().After(deadline) {
			t.Errorf("serve process %s still alive after Down", pid)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

func TestDownWithoutSandbox(t *testing.T) {
	dir := t.TempDir()
	err := sandbox.Down(dir, time.Second)
	if want := "no sandbox running in " + dir; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// checkStateDir checks the modes of dir and its files and returns the
// variables exported by dir/env.
func checkStateDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	modes := map[string]fs.FileMode{"": 0o700, "kubeconfig": 0o600, "env": 0o600}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", filepath.Join(dir, name), fi.Mode().Perm(), want)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	env := parseEnv(t, string(data))
	if env["KUBECONFIG"] != filepath.Join(dir, "kubeconfig") {
		t.Errorf("KUBECONFIG = %q, want %s", env["KUBECONFIG"], filepath.Join(dir, "kubeconfig"))
	}
	// The file must also work when sourced by a real shell.
	out, err := exec.Command("sh", "-c", `. "$1" && printf '%s\n%s' "$KUBECONFIG" "$IRCTL_DATABASE_URL"`, "sh", filepath.Join(dir, "env")).Output()
	if err != nil {
		t.Fatalf("sourcing env: %v", err)
	}
	if got, want := string(out), env["KUBECONFIG"]+"\n"+env["IRCTL_DATABASE_URL"]; got != want {
		t.Errorf("sourced env = %q, want %q", got, want)
	}
	return env
}

// parseEnv reads `export NAME='value'` lines.
func parseEnv(t *testing.T, data string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || !strings.HasPrefix(value, "'") || !strings.HasSuffix(value, "'") {
			t.Fatalf("env line %q is not export NAME='value'", line)
		}
		env[name] = strings.ReplaceAll(value[1:len(value)-1], `'\''`, "'")
	}
	return env
}

// checkServers connects to the API server and database named by env and
// returns their addresses.
func checkServers(t *testing.T, env map[string]string) (kubeAddr, pgAddr string) {
	t.Helper()
	ctx := t.Context()
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Errorf("API server from kubeconfig: %v", err)
	}
	conn, err := pgx.Connect(ctx, env["IRCTL_DATABASE_URL"])
	if err != nil {
		t.Fatalf("IRCTL_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	var users int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		t.Errorf("schema not applied: %v", err)
	}
	ku, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(env["IRCTL_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	return ku.Host, pu.Host
}

func checkClosed(t *testing.T, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the sandbox stopped", addr)
		}
	}
}

// waitFor waits for path to exist, failing early if served is closed.
func waitFor(t *testing.T, path string, served <-chan struct{}) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-served:
			t.Fatalf("Serve returned before %s existed", path)
		case <-deadline:
			t.Fatalf("%s did not appear within 2m", path)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
