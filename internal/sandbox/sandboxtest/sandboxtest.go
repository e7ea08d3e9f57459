// Package sandboxtest gives a test binary one shared, seeded sandbox (see
// package sandbox), started on first use so that unit tests stay fast:
//
//	func TestMain(m *testing.M) { sandboxtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		s := sandboxtest.Get(t) // skips when the binaries are missing, outside CI
//		...
//	}
//
// Tests share the sandbox, so they must not assume they are alone in it:
// use unique names, or ResetDB before asserting on database rows.
package sandboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl/internal/sandbox"
)

var (
	mainCalled bool
	once       sync.Once
	shared     atomic.Pointer[sandbox.Sandbox]
	startErr   error
)

// Main runs the tests and then stops the shared sandbox, if a test started
// it. Call it from TestMain.
//
// It also stops the sandbox on SIGINT or SIGTERM: its servers run in their
// own process groups, so a Ctrl-C that kills the test binary would not reach
// them and they would outlive it.
func Main(m *testing.M) {
	mainCalled = true
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		if s := shared.Load(); s != nil {
			_ = s.Stop()
		}
		os.Exit(130)
	}()
	code := m.Run()
	if s := shared.Load(); s != nil {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "sandboxtest: stopping the sandbox: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if dir, err := runDir(); err == nil {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// runDir is TempDir's directory, made on first use.
var runDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "irctl-test-run-") })

// TempDir is a directory for what a test binary builds once and shares
// between its tests (a compiled irctl), removed when Main ends.
func TempDir() (string, error) { return runDir() }

// Get returns the shared seeded sandbox, starting it on the first call
// (RequireBins first). It fails the test if the sandbox did not start.
func Get(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	if !mainCalled {
		t.Fatal("sandboxtest.Get needs TestMain to call sandboxtest.Main, which stops the sandbox's processes")
	}
	bin := RequireBins(t)
	once.Do(func() {
		var log io.Writer
		if testing.Verbose() {
			log = os.Stderr
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var s *sandbox.Sandbox
		s, startErr = sandbox.Start(ctx, sandbox.Options{BinDir: bin, Seed: true, Log: log})
		shared.Store(s)
	})
	if startErr != nil {
		t.Fatalf("integration: starting the sandbox: %v", startErr)
	}
	return shared.Load()
}

// RequireBins returns BinDir() if kube-apiserver, etcd and PostgreSQL are
// installed. Otherwise it skips the test, except in CI ($CI == "true"),
// where integration tests must never be skipped silently and it fails
// instead. Tests that start their own sandbox call it first.
func RequireBins(t testing.TB) string {
	t.Helper()
	bin := BinDir()
	if err := sandbox.CheckBins(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("integration: sandbox binaries missing, and CI must not skip: %v", err)
		}
		t.Skipf("integration: sandbox binaries missing (run `make sandbox-bins`): %v", err)
	}
	return bin
}

// BinDir is where tests look for kube-apiserver and etcd: $IRCTL_SANDBOX_BINS
// if set, else bin/ at the root of the module holding the working directory
// (go test runs in the package's directory), else sandbox.DefaultBinDir().
func BinDir() string {
	if d := os.Getenv(sandbox.EnvBins); d != "" {
		return d
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.Join(dir, "bin")
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return sandbox.DefaultBinDir()
}

// ResetDB empties the demo tables (restarting their id sequences) and
// re-runs seed.sql, so that a test starts from the seeded rows with the
// seeded ids, and times relative to now.
func ResetDB(t testing.TB, s *sandbox.Sandbox) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatalf("ResetDB: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "TRUNCATE audit_events, api_keys, users RESTART IDENTITY CASCADE"); err != nil {
		t.Fatalf("ResetDB: %v", err)
	}
	if err := sandbox.ExecSQLFile(ctx, conn, "seed.sql"); err != nil {
		t.Fatalf("ResetDB: %v", err)
	}
}

// GetJSON decodes the JSON answer of GET u (a sandbox service's API:
// Mailpit, Prometheus, the receivers) into v, failing the test on anything
// but 200.
func GetJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// EndpointIPs are the addresses the EndpointSlices of Service svc in ns
// list: where the Service routes now.
func EndpointIPs(t testing.TB, cs kubernetes.Interface, ns, svc string) map[string]bool {
	t.Helper()
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]bool{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				ips[a] = true
			}
		}
	}
	return ips
}
