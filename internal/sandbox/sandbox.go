// Package sandbox runs a disposable copy of the demo platform irctl's
// runbooks act on: a small working Kubernetes cluster - a real etcd and
// kube-apiserver (through envtest), kube-controller-manager,
// kube-scheduler, and kwok's simulated kubelets on the seeded Nodes
// (cluster.go) - and a real PostgreSQL server, all on 127.0.0.1, optionally
// seeded with the "llm-orchestrator" platform as real workloads, its
// database and what a simulated attack left behind.
//
// Tests use it through package sandboxtest; `irctl sandbox up|down` runs it
// in the background through Up, Serve and Down.
//
// No container runs: kwok moves pods through their phases. Two pieces stand
// in for what the incident runbooks need beyond that, in the process that
// runs the sandbox: a log endpoint registered as each seeded Node's
// kubelet, which the real API server proxies pods/log to (kubelet.go), and
// a snapshot controller for the sandbox's CSI driver (snapshots.go). When
// seeded, the same process serves a stand-in of the orchestrator's API, the
// service under attack (orchestrator.go); Options.APILatency puts a delaying
// proxy in front of kube-apiserver (latency.go). Prometheus runs too, loading
// the rules ConfigMaps of namespace monitoring (prometheus.go).
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"irctl.dev/irctl"
)

// Options configures Start.
type Options struct {
	// BinDir holds the server binaries; "" means DefaultBinDir().
	BinDir string
	// Dir is the state directory (created 0700 if missing), where Start
	// writes kubeconfig and env (both 0600; env is sourceable: export
	// KUBECONFIG=...; export IRCTL_DATABASE_URL=...). "" means a temporary
	// directory that Stop removes.
	Dir string
	// Seed seeds the demo platform: Kubernetes objects and database rows.
	// The database schema is created either way.
	Seed bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// APILatency, when positive, puts a LatencyProxy adding this delay in
	// each direction in front of kube-apiserver, and points the written
	// kubeconfig (KubeconfigPath) at it: a remote control plane for
	// benchmarks. RESTConfig, which the sandbox's own clients use, stays
	// direct.
	APILatency time.Duration
}

// Sandbox is a running sandbox. Stop it to end its processes and delete
// their data.
type Sandbox struct {
	RESTConfig       *rest.Config // admin (system:masters), 1000 QPS
	KubeconfigPath   string       // Dir/kubeconfig, for the admin user
	DatabaseURL      string       // the application role: postgres://orchestrator:PASS@127.0.0.1:PORT/orchestrator?sslmode=disable
	AdminDatabaseURL string       // the superuser postgres (password auth) on the same server
	DBPassword       string       // the orchestrator role's password, also in Secret orchestrator-db
	// ResponderDatabaseURL is the least-privileged role a responder runs
	// irctl as (responderRole): not the application's own role, whose
	// password eradicate rotates. DIR/env exports it as IRCTL_DATABASE_URL.
	ResponderDatabaseURL string
	OrchestratorURL      string // the orchestrator API stand-in (orchestrator.go), when seeded
	// What the seeded attacker stole, for drills and tests to use as it
	// would: an API key it minted for Laura (user 13), and a JWT for her
	// signed with the JWT secret the orchestrator started with.
	AttackerAPIKey string
	AttackerJWT    string
	// Where notifications go (notify.go): Mailpit's SMTP server and API,
	// and the receiver of Slack and webhook posts, with the URLs and
	// signing key the runbooks' notify steps read from the environment.
	MailpitSMTPHost   string
	MailpitSMTPPort   int
	MailpitURL        string
	NotifyReceiverURL string
	SlackWebhookURL   string
	WebhookURL        string
	WebhookSecret     string
	APIProxy          *LatencyProxy // in front of kube-apiserver, when Options.APILatency > 0
	PostgresLog       string        // the PostgreSQL server's log, for tests of what it logged
	// Prometheus (prometheus.go), which loads the rules ConfigMaps of
	// namespace monitoring labelled RulesLabel=RulesLabelValue.
	PrometheusURL string

	env       *envtest.Environment
	pg        *postgresServer
	cluster   cluster             // controller manager, scheduler, kwok
	kubelets  *kubelets           // when seeded
	snapshots *snapshotController // once the sandbox is up
	orchAPI   *orchestratorAPI    // when seeded
	requests  *requestLog         // the orchestrator pods' request lines, when seeded
	receiver  *notifyReceiver     // Slack and webhook posts
	prom      *promFiles          // Prometheus (its component is in cluster)
	rules     *rulesSync          // the rules ConfigMaps to Prometheus's rules
	kubeDir   string              // etcd's data, kube-apiserver's certificates, the servers' logs
	ownDir    string              // the state dir, when Start made it
	stopOnce  sync.Once
	stopErr   error

	recordMu   sync.Mutex
	servers    serversRecord // see servers.go
	recordPath string        // DIR/servers.json
}

// Start starts etcd, kube-apiserver, the controller manager, scheduler and
// kwok, PostgreSQL, Mailpit and Prometheus, seeds them if o.Seed (returning
// once the seeded workloads are Ready), and writes the state files. On
// error it stops whatever it started.
func Start(ctx context.Context, o Options) (_ *Sandbox, err error) {
	began := time.Now()
	if err := checkPlatform(); err != nil {
		return nil, err
	}
	logf := newLogf(o.Log)
	binDir := o.BinDir
	if binDir == "" {
		binDir = DefaultBinDir()
	}
	if err := CheckBins(binDir); err != nil {
		return nil, err
	}
	quietControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })

	s := &Sandbox{DBPassword: randomHex(16)}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "irctl-sandbox-"); err != nil {
			return nil, err
		}
		s.ownDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	s.recordPath = filepath.Join(dir, serversFile)
	if s.kubeDir, err = os.MkdirTemp("", "irctl-kube-"); err != nil {
		return nil, err
	}
	s.recordDir(s.kubeDir)
	// Prometheus starts now and is waited for last.
	if err := s.startPrometheus(binDir); err != nil {
		return nil, err
	}

	// PostgreSQL (initdb especially) starts while the control plane does.
	logf("starting etcd and kube-apiserver...")
	logf("starting postgres...")
	var pgErr error
	pgDone := make(chan struct{})
	go func() {
		defer close(pgDone)
		s.pg, pgErr = startPostgres(ctx)
		if s.pg != nil {
			s.recordDir(s.pg.dir)
			s.record("postgres", s.pg.cmd.Process.Pid, s.pg.cmd.Path)
		}
	}()
	kubeErr := s.startKube(binDir)
	if kubeErr == nil {
		kubeErr = s.startControllers(binDir)
	}
	<-pgDone
	if err := errors.Join(kubeErr, pgErr); err != nil {
		return nil, err
	}
	logf("kube-apiserver ready at %s", s.RESTConfig.Host)
	logf("postgres ready on 127.0.0.1:%d", s.pg.port)

	s.AdminDatabaseURL = s.pg.adminURL()
	s.PostgresLog = s.pg.logPath()
	s.DatabaseURL = pgURL(dbRole, s.DBPassword, s.pg.port, dbName)
	responderPassword := randomHex(16)
	s.ResponderDatabaseURL = pgURL(responderRole, responderPassword, s.pg.port, dbName)
	if o.Seed {
		logf("seeding the demo platform...")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := createAppDatabase(gctx, s.AdminDatabaseURL, s.DatabaseURL, s.DBPassword, responderPassword, o.Seed); err != nil {
			return fmt.Errorf("creating database %s: %w", dbName, err)
		}
		return nil
	})
	if o.Seed {
		g.Go(func() error {
			return seedKube(gctx, s.RESTConfig, s.DBPassword, func(ctx context.Context) error {
				return s.startSimulations(ctx, binDir, true, began)
			})
		})
	} else if err := s.startSimulations(ctx, binDir, false, began); err != nil {
		return nil, err
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if o.Seed {
		logf("waiting for the seeded workloads...")
		if err := s.waitSeeded(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.startServices(ctx, o, logf); err != nil {
		return nil, err
	}
	if err := s.startNotify(ctx, binDir); err != nil {
		return nil, err
	}
	logf("mailpit at %s (SMTP %s:%d), notification receiver at %s", s.MailpitURL, s.MailpitSMTPHost, s.MailpitSMTPPort, s.NotifyReceiverURL)
	if err := s.startMonitoring(ctx, logf); err != nil {
		return nil, err
	}
	logf("prometheus at %s", s.PrometheusURL)
	if err := s.writeFiles(dir); err != nil {
		return nil, err
	}
	logf("sandbox ready in %s: export KUBECONFIG=%s", time.Since(began).Round(100*time.Millisecond), s.KubeconfigPath)
	return s, nil
}

// startSimulations starts kwok, the stand-in kubelets' log endpoints (on
// the seeded Nodes, when seeded; registered before kwok takes the Nodes)
// and the snapshot controller; the seed's story is told relative to epoch.
func (s *Sandbox) startSimulations(ctx context.Context, binDir string, seeded bool, epoch time.Time) error {
	var err error
	if seeded {
		s.requests = newRequestLog()
		if s.kubelets, err = startKubelets(s.RESTConfig, NodeNames, epoch, s.requests); err != nil {
			return err
		}
		if err := s.kubelets.register(ctx); err != nil {
			return err
		}
	}
	if err := s.startKwok(binDir); err != nil {
		return err
	}
	s.snapshots, err = startSnapshotController(s.RESTConfig)
	return err
}

func (s *Sandbox) startKube(binDir string) error {
	crds, err := loadCRDs()
	if err != nil {
		return err
	}
	apiLog, err := os.Create(filepath.Join(s.kubeDir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	defer apiLog.Close() // the child process keeps its own descriptor
	etcdLog, err := os.Create(filepath.Join(s.kubeDir, "etcd.log"))
	if err != nil {
		return err
	}
	defer etcdLog.Close()
	s.env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			// Explicit paths, so that $KUBEBUILDER_ASSETS and $TEST_ASSET_*
			// cannot swap in other binaries (envtest never downloads unless
			// asked to). Explicit directories, which Stop removes: envtest
			// leaks the certificate directory of a failed start attempt.
			APIServer: &envtest.APIServer{
				Path:    filepath.Join(binDir, "kube-apiserver"),
				CertDir: filepath.Join(s.kubeDir, "apiserver"),
				Out:     apiLog, Err: apiLog,
			},
			Etcd: &envtest.Etcd{
				Path:    filepath.Join(binDir, "etcd"),
				DataDir: filepath.Join(s.kubeDir, "etcd"),
				Out:     etcdLog, Err: etcdLog,
			},
		},
		BinaryAssetsDirectory: binDir,
		// $USE_EXISTING_CLUSTER must never point the seed at a real
		// cluster.
		UseExistingCluster:       ptr.To(false),
		CRDs:                     crds,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// The seeded Nodes' kubelet endpoints are at their InternalIP (see
	// kubelet.go); kubeadm sets the same order.
	s.env.ControlPlane.APIServer.Configure().Set("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname")
	for _, d := range []string{s.env.ControlPlane.APIServer.CertDir, s.env.ControlPlane.Etcd.DataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	cfg, err := s.env.Start()
	s.recordChildren(map[string]string{
		"etcd": s.env.ControlPlane.Etcd.Path, "kube-apiserver": s.env.ControlPlane.APIServer.Path,
	})
	if err != nil {
		// envtest names the process that failed; quote its log.
		log := apiLog.Name()
		if strings.Contains(err.Error(), "process etcd") {
			log = etcdLog.Name()
		}
		out, _ := os.ReadFile(log)
		return fmt.Errorf("starting etcd and kube-apiserver: %w\n--- end of %s:\n%s", err, filepath.Base(log), tail(out, 15))
	}
	s.RESTConfig = cfg
	return nil
}

// loadCRDs decodes testdata/sandbox/crds/*.yaml from irctl.SandboxSeed.
func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	const dir = "testdata/sandbox/crds"
	entries, err := fs.ReadDir(irctl.SandboxSeed, dir)
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := irctl.SandboxSeed.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := dec.Decode(crd); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			if crd.Name != "" { // skip empty documents
				crds = append(crds, crd)
			}
		}
	}
	return crds, nil
}

// AddKubeUser returns a config authenticating as a new user with the given
// groups and no RBAC grants beyond those of system:authenticated.
func (s *Sandbox) AddKubeUser(name string, groups []string) (*rest.Config, error) {
	u, err := s.env.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// Stop stops the rules sync, Prometheus, Mailpit, kwok, the scheduler and
// controller manager, the stand-in kubelets and snapshot controller,
// kube-apiserver, etcd and PostgreSQL, and deletes the servers' data. Files written to a caller-given
// Options.Dir stay. Calling it again returns the first call's result.
func (s *Sandbox) Stop() error {
	s.stopOnce.Do(func() {
		// First what talks to the API server, while it still answers.
		if s.orchAPI != nil {
			s.orchAPI.stop()
		}
		if s.receiver != nil {
			s.receiver.stop()
		}
		if s.rules != nil {
			s.rules.stop()
		}
		if s.APIProxy != nil {
			_ = s.APIProxy.Close()
		}
		s.cluster.stop()
		if s.snapshots != nil {
			s.snapshots.stop()
		}
		if s.kubelets != nil {
			s.kubelets.stop()
		}
		var kubeErr, pgErr error
		var wg sync.WaitGroup
		if s.env != nil {
			wg.Go(func() { kubeErr = s.env.Stop() })
		}
		if s.pg != nil {
			wg.Go(func() { pgErr = s.pg.stop() })
		}
		wg.Wait()
		errs := []error{kubeErr, pgErr}
		for _, d := range []string{s.kubeDir, s.ownDir} {
			if d != "" {
				errs = append(errs, os.RemoveAll(d))
			}
		}
		s.stopErr = errors.Join(errs...)
		if s.stopErr == nil {
			// Everything recorded is gone: nothing left for Down to sweep.
			s.stopErr = s.removeRecord()
		}
	})
	return s.stopErr
}

// newLogf returns a printf to w (nil: discard) that is safe for concurrent
// use.
func newLogf(w io.Writer) func(format string, args ...any) {
	if w == nil {
		return func(string, ...any) {}
	}
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// writeFileAtomic writes data to path with mode 0600, replacing any file
// there (whatever its mode) without readers ever seeing part of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}
