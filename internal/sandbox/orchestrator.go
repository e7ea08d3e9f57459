package sandbox

// This file runs a stand-in for the demo platform's orchestrator API, the
// service the simulated attacker uses, in the sandbox process. It is not
// the real service, but it behaves like it where the incident runbooks act:
//
//   - Its configuration comes from the orchestrator Deployment's pod
//     template, whose JWT_SECRET and DATABASE_PASSWORD are env vars taken
//     from Secrets. Env vars are read when a container starts, so the
//     stand-in reads them (resolving the Secrets) once when it starts and
//     again when it sees a new Deployment generation, whose pods start
//     then; that configuration goes live once the rollout has completed. A
//     rotated Secret takes effect after `kubectl rollout restart` has
//     replaced the pods, not before. /health reports the generation live.
//   - It connects to PostgreSQL as the orchestrator role with the password
//     of its last load, so a password rotated in the database but not in
//     the Secret makes /health fail.
//   - Requests authenticate by API key or by an HS256 JWT; see
//     orchestrator_http.go.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The orchestrator workload the stand-in takes its configuration from, and
// the env vars of its pod template it reads.
const (
	OrchestratorDeployment = "orchestrator"
	orchestratorContainer  = "orchestrator"
	envJWTSecret           = "JWT_SECRET"
	envDBPassword          = "DATABASE_PASSWORD"
)

// The seeded attacker's credentials (testdata/sandbox/seed.sql): the API
// key it minted for Laura, user 13, whose account it took over.
const (
	AttackerAPIKey       = "attacker-key-1"
	AttackerUserID int64 = 13
)

// The stand-in follows the Deployment with a watch, so a completed rollout
// goes live as soon as the API server says so (as a Service stops routing
// to the old pods then), not up to a poll interval later; orchestratorPoll
// paces the first load and retries, and orchestratorResync re-reads it in
// case a watch event was missed.
const (
	orchestratorPoll   = 200 * time.Millisecond
	orchestratorResync = 5 * time.Second
)

// orchestratorConfig is what the running pods were started with.
type orchestratorConfig struct {
	jwtKey     []byte
	dbPassword string
}

// orchestratorAPI is the running stand-in.
type orchestratorAPI struct {
	URL string // http://127.0.0.1:PORT

	cs     kubernetes.Interface
	pgPort int
	srv    *http.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop has ended

	mu         sync.RWMutex
	loaded     bool  // a configuration was loaded
	generation int64 // the Deployment generation it was loaded for
	cfg        orchestratorConfig
	pending    orchestratorConfig // what pods of generation pendingGen start with
	pendingGen int64
	pool       *pgxpool.Pool // orchestrator role, cfg.dbPassword
	loadErr    error         // the last load's failure, for /health
	selector   string        // the Deployment's pod selector, as last seen

	requests *requestLog   // the pods' request log lines (requestlog.go)
	served   atomic.Uint64 // requests served, to share them among the pods
}

// startOrchestratorAPI loads the configuration the orchestrator pods run
// with (waiting up to 30 s for the Deployment to exist), starts following
// its rollouts and serves the API on a free 127.0.0.1 port.
func startOrchestratorAPI(ctx context.Context, cfg *rest.Config, pgPort int, requests *requestLog) (*orchestratorAPI, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "irctl-sandbox-orchestrator"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &orchestratorAPI{URL: "http://" + ln.Addr().String(), cs: cs, pgPort: pgPort, done: make(chan struct{}), requests: requests}
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	for !o.sync(waitCtx, nil) {
		select {
		case <-waitCtx.Done():
			ln.Close()
			o.closePool()
			return nil, fmt.Errorf("orchestrator stand-in: loading its configuration: %w", errors.Join(o.lastErr(), waitCtx.Err()))
		case <-time.After(orchestratorPoll):
		}
	}
	o.srv = &http.Server{Handler: o.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = o.srv.Serve(ln) }()
	loopCtx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	go func() {
		defer close(o.done)
		o.follow(loopCtx)
	}()
	return o, nil
}

// follow syncs on every watch event of the Deployment. Each watch starts
// from the resourceVersion of a fresh read, so no event older than what
// was synced arrives; when it ends (the API server closes watches after
// its request timeout, or on a 410 Gone), it reads and watches again.
func (o *orchestratorAPI) follow(ctx context.Context) {
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(orchestratorPoll):
		}
	}
	for ctx.Err() == nil {
		dep, err := o.cs.AppsV1().Deployments(DemoNamespace).Get(ctx, OrchestratorDeployment, metav1.GetOptions{})
		if err != nil {
			o.setErr(err)
			pause()
			continue
		}
		o.sync(ctx, dep)
		w, err := o.cs.AppsV1().Deployments(DemoNamespace).Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", OrchestratorDeployment).String(),
			ResourceVersion: dep.ResourceVersion,
		})
		if err != nil {
			o.setErr(err)
			pause()
			continue
		}
		resync := time.NewTicker(orchestratorResync)
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case ev, ok := <-w.ResultChan():
				open = ok
				if dep, isDep := ev.Object.(*appsv1.Deployment); ok && isDep {
					o.sync(ctx, dep)
				}
			case <-resync.C:
				o.sync(ctx, nil)
			}
		}
		resync.Stop()
		w.Stop()
		pause()
	}
}

// stop ends the watch loop and the server, and closes the database pool.
func (o *orchestratorAPI) stop() {
	if o.cancel != nil {
		o.cancel()
		<-o.done
	}
	if o.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = o.srv.Shutdown(ctx)
		cancel()
	}
	o.closePool()
}

func (o *orchestratorAPI) closePool() {
	o.mu.Lock()
	p := o.pool
	o.pool = nil
	o.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

func (o *orchestratorAPI) lastErr() error {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.loadErr
}

// sync loads the configuration if none is loaded yet. Afterwards, when it
// first sees a new Deployment generation it resolves the configuration the
// new pods start with, and makes it live once that generation's rollout has
// completed. It reports whether a configuration is loaded. dep is the
// Deployment as a watch event gave it (nil: read it).
func (o *orchestratorAPI) sync(ctx context.Context, dep *appsv1.Deployment) bool {
	o.mu.RLock()
	loaded, gen, pendingGen := o.loaded, o.generation, o.pendingGen
	o.mu.RUnlock()
	if dep == nil {
		var err error
		if dep, err = o.cs.AppsV1().Deployments(DemoNamespace).Get(ctx, OrchestratorDeployment, metav1.GetOptions{}); err != nil {
			o.setErr(err)
			return loaded
		}
	}
	if sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector); err == nil {
		o.mu.Lock()
		o.selector = sel.String()
		o.mu.Unlock()
	}
	if loaded && dep.Generation <= gen {
		return true // nothing new (or an older view than the one live)
	}
	if !loaded || dep.Generation != pendingGen {
		cfg, err := o.resolve(ctx, dep)
		if err != nil {
			o.setErr(err)
			return loaded
		}
		o.mu.Lock()
		o.pending, o.pendingGen = cfg, dep.Generation
		o.mu.Unlock()
	}
	// The first load stands for the pods starting now; later ones wait
	// until every pod runs the new template.
	if loaded && !rolloutComplete(dep) {
		return true
	}
	o.mu.Lock()
	cfg := o.pending
	old := o.pool
	if old == nil || cfg.dbPassword != o.cfg.dbPassword {
		pool, err := o.newPool(cfg.dbPassword)
		if err != nil {
			o.mu.Unlock()
			o.setErr(err)
			return loaded
		}
		o.pool = pool
	} else {
		old = nil // kept
	}
	o.cfg, o.loaded, o.generation, o.loadErr = cfg, true, dep.Generation, nil
	o.mu.Unlock()
	if old != nil {
		go old.Close() // waits for requests still using it
	}
	return true
}

func (o *orchestratorAPI) setErr(err error) {
	o.mu.Lock()
	o.loadErr = err
	o.mu.Unlock()
}

// newPool connects lazily: a wrong password shows at the first query.
func (o *orchestratorAPI) newPool(password string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(pgURL(dbRole, password, o.pgPort, dbName))
	if err != nil {
		return nil, err
	}
	pc.MaxConns = 4
	// Connections are recycled, as services' pools do, so that a password
	// changed under the service soon shows in its requests too.
	pc.MaxConnIdleTime = 5 * time.Second
	pc.MaxConnLifetime = time.Minute
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// pingDB connects to the database with the loaded password.
func (o *orchestratorAPI) pingDB(ctx context.Context) error {
	o.mu.RLock()
	loaded, password := o.loaded, o.cfg.dbPassword
	o.mu.RUnlock()
	if !loaded {
		return errors.New("not configured")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL(dbRole, password, o.pgPort, dbName))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// rolloutComplete is kubectl rollout status's test: the controller has
// seen the current generation, every replica runs it and is available, and
// no old replica is left.
func rolloutComplete(dep *appsv1.Deployment) bool {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	st := dep.Status
	return st.ObservedGeneration >= dep.Generation && st.UpdatedReplicas >= want &&
		st.Replicas == st.UpdatedReplicas && st.AvailableReplicas >= st.UpdatedReplicas
}

// readyPods counts the orchestrator Deployment's pods that are Ready and
// not being deleted.
func (o *orchestratorAPI) readyPods(ctx context.Context) (int, error) {
	dep, err := o.cs.AppsV1().Deployments(DemoNamespace).Get(ctx, OrchestratorDeployment, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return 0, err
	}
	pods, err := o.cs.CoreV1().Pods(DemoNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			n++
		}
	}
	return n, nil
}

// servingPod is the orchestrator pod that serves the next request: the
// Ready pods the Deployment selects (a quarantined pod that lost its
// labels is no longer among them) take turns, as behind a Service. ""
// when none is Ready.
func (o *orchestratorAPI) servingPod(ctx context.Context) types.UID {
	o.mu.RLock()
	sel := o.selector
	o.mu.RUnlock()
	if sel == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pods, err := o.cs.CoreV1().Pods(DemoNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return ""
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return ""
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Name < ready[j].Name })
	return ready[(o.served.Add(1)-1)%uint64(len(ready))].UID
}

// liveGeneration is the Deployment generation whose configuration is live.
func (o *orchestratorAPI) liveGeneration() int64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.generation
}

// state returns the loaded JWT key and database pool.
func (o *orchestratorAPI) state() ([]byte, *pgxpool.Pool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.cfg.jwtKey, o.pool
}

// summarize shortens an error for a response body: its first line.
func summarize(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// startServices starts what the sandbox serves besides its servers and
// simulations: the orchestrator stand-in (when seeded) and the latency
// proxy (when asked for).
func (s *Sandbox) startServices(ctx context.Context, o Options, logf func(string, ...any)) error {
	if o.APILatency > 0 {
		u, err := url.Parse(s.RESTConfig.Host)
		if err != nil {
			return err
		}
		if s.APIProxy, err = StartLatencyProxy(u.Host, o.APILatency); err != nil {
			return err
		}
		logf("kube-apiserver behind a %s-each-way latency proxy at %s", o.APILatency, s.APIProxy.Addr)
	}
	if !o.Seed {
		return nil
	}
	var err error
	if s.orchAPI, err = startOrchestratorAPI(ctx, s.RESTConfig, s.pg.port, s.requests); err != nil {
		return err
	}
	s.OrchestratorURL = s.orchAPI.URL
	key, _ := s.orchAPI.state()
	if s.AttackerJWT, err = SignOrchestratorJWT(key, AttackerUserID, 24*time.Hour); err != nil {
		return err
	}
	s.AttackerAPIKey = AttackerAPIKey
	logf("orchestrator API stand-in at %s", s.OrchestratorURL)
	return nil
}
