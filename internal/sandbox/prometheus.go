package sandbox

// The sandbox's monitoring: a real Prometheus (built into bin/ by `make
// sandbox-bins`) that scrapes itself, so that the Kubernetes cluster
// compromise runbook's prom.query steps ask a real server and its
// validate check sees whether the alert rules its recover phase applied
// were loaded.
//
// In a cluster, rules reach Prometheus as a ConfigMap that the kubelet
// mounts into its pod and a config-reload sidecar watches, POSTing
// /-/reload on a change. No kubelet or sidecar runs here, so a loop in the
// sandbox's process does their part: it watches the ConfigMaps of
// namespace monitoring labelled as Prometheus rules (RulesLabel), writes
// their keys to DIR/rules/CONFIGMAP/KEY as the volume would, lists each
// such directory under rule_files in prometheus.yml, removes the files of
// deleted ones, and asks Prometheus to reload.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// monitoringBins are the sandbox's monitoring servers.
var monitoringBins = []string{"prometheus"}

// RulesLabel marks a ConfigMap of MonitoringNamespace as Prometheus rules
// files for the sandbox's Prometheus (label app.kubernetes.io/part-of=
// prometheus-rules), as the cluster compromise runbook's alert rules are.
const (
	RulesLabel      = "app.kubernetes.io/part-of"
	RulesLabelValue = "prometheus-rules"
)

// promInterval is the self-scrape and rule evaluation interval: short, so
// that the prometheus_rule_group_rules of reloaded rules can be queried
// within a second, and their alerts evaluated as often.
const promInterval = "1s"

// startPrometheus starts Prometheus on a free port of 127.0.0.1, its data,
// configuration and rules under the sandbox's server directory; it is
// ready once waitPrometheus returns.
func (s *Sandbox) startPrometheus(binDir string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(s.kubeDir, "prometheus")
	s.prom = &promFiles{config: filepath.Join(dir, "prometheus.yml"), rules: filepath.Join(dir, "rules"),
		addr: "127.0.0.1:" + strconv.Itoa(port)}
	for _, d := range []string{dir, filepath.Join(dir, "data"), s.prom.rules} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(s.prom.config, s.prom.render(nil)); err != nil {
		return err
	}
	args := []string{
		"--config.file=" + s.prom.config,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + s.prom.addr,
		"--web.enable-lifecycle",
		"--log.level=warn",
		// Targets reach the scrape manager in batches 5s apart by default,
		// which would hold the first self-scrape (and a sandbox waiting for
		// it) that long.
		"--scrape.discovery-reload-interval=100ms",
	}
	comp, err := startComponent("prometheus", filepath.Join(binDir, "prometheus"), args, s.kubeDir)
	if err != nil {
		return err
	}
	s.cluster.comps = append(s.cluster.comps, comp)
	s.record("prometheus", comp.cmd.Process.Pid, comp.cmd.Path)
	s.prom.comp = comp
	s.PrometheusURL = "http://" + s.prom.addr
	return nil
}

// promFiles is the running Prometheus and where its files are.
type promFiles struct {
	comp   *component
	addr   string
	config string // prometheus.yml
	rules  string // one subdirectory per rules ConfigMap
}

// render returns prometheus.yml loading the rules files of the given
// subdirectories of the rules directory. Prometheus globs only a path's
// last element, so each ConfigMap's directory is listed, as a cluster's
// configuration lists each mounted rules volume.
func (p *promFiles) render(ruleDirs []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the irctl sandbox\nglobal:\n  scrape_interval: %[1]s\n  scrape_timeout: %[1]s\n  evaluation_interval: %[1]s\n", promInterval)
	b.WriteString("rule_files:")
	if len(ruleDirs) == 0 {
		b.WriteString(" []")
	}
	b.WriteString("\n")
	for _, d := range ruleDirs {
		for _, ext := range []string{"*.yaml", "*.yml"} {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(filepath.Join(p.rules, d, ext)))
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [%q]\n", p.addr)
	return []byte(b.String())
}

// waitPrometheus waits until Prometheus has scraped itself, so that its
// own metrics can be queried (or until it has exited).
func waitPrometheus(ctx context.Context, comp *component, base string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := comp.running(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query=up", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var r struct {
				Data struct{ Result []json.RawMessage }
			}
			err := json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && len(r.Data.Result) > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus at %s had not scraped itself: %w", base, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rulesSync is the stand-in for the kubelet's ConfigMap volume and the
// config-reload sidecar.
type rulesSync struct {
	prom  *promFiles
	url   string
	logf  func(string, ...any)
	store cache.Store
	// unloaded: the files changed since Prometheus last accepted a reload.
	unloaded bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// errRefused marks a reload Prometheus answered and refused (invalid
// rules), which only a change of the ConfigMaps can mend.
var errRefused = errors.New("prometheus refused the reload")

// startRulesSync writes the rules ConfigMaps to prom's rules directory and
// reloads Prometheus at url on every change, until stop. It returns once
// the ConfigMaps that exist now are written and loaded.
func startRulesSync(ctx context.Context, cfg *rest.Config, prom *promFiles, url string, logf func(string, ...any)) (*rulesSync, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "irctl-sandbox-prometheus-rules"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// One informer, not a SharedInformerFactory: the factory's package
	// links every API group's informers into irctl (about 5 MB).
	lw := cache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "configmaps", MonitoringNamespace, func(o *metav1.ListOptions) {
		o.LabelSelector = RulesLabel + "=" + RulesLabelValue
	})
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	// Events only signal; sync reads the whole store, so that a burst of
	// changes costs one reload.
	changed := make(chan struct{}, 1)
	signal := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    signal,
		UpdateFunc: func(_, obj any) { signal(obj) },
		DeleteFunc: signal,
	}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r := &rulesSync{prom: prom, url: url, logf: logf, store: inf.GetStore(), cancel: cancel, done: make(chan struct{})}
	informed := make(chan struct{}) // closed when the informer has stopped
	go func() {
		defer close(informed)
		inf.Run(runCtx.Done())
	}()
	syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		cancel()
		<-informed
		return nil, fmt.Errorf("watching the rules ConfigMaps of namespace %s: %w", MonitoringNamespace, context.Cause(syncCtx))
	}
	if err := r.sync(ctx); err != nil {
		logf("prometheus rules: %v", err)
	}
	go func() {
		defer close(r.done)
		defer func() { <-informed }()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-changed:
				err := r.sync(runCtx)
				if err == nil || runCtx.Err() != nil {
					continue
				}
				// Prometheus gone: said once, not retried every second.
				if perr := prom.comp.running(); perr != nil {
					logf("prometheus rules: Prometheus is not running (%v); rules are no longer loaded", perr)
					return
				}
				logf("prometheus rules: %v", err)
				// Invalid rules are refused by Prometheus, which keeps the
				// rules it had, as in a cluster: nothing to retry until a
				// ConfigMap changes. Anything else is retried.
				if !errors.Is(err, errRefused) {
					time.AfterFunc(time.Second, func() { signal(nil) })
				}
			}
		}
	}()
	return r, nil
}

// stop ends the loop and waits for it.
func (r *rulesSync) stop() {
	r.cancel()
	<-r.done
}

// sync makes the rules directory hold exactly the keys of the ConfigMaps
// in the store and, if that changed anything, reloads Prometheus.
func (r *rulesSync) sync(ctx context.Context) error {
	want := map[string]map[string][]byte{} // ConfigMap -> key -> content
	for _, obj := range r.store.List() {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		files := map[string][]byte{}
		for k, v := range cm.Data {
			files[k] = []byte(v)
		}
		maps.Copy(files, cm.BinaryData)
		want[cm.Name] = files
	}
	changed, err := r.write(want)
	if changed {
		r.unloaded = true
	}
	if err != nil || !r.unloaded {
		return err
	}
	if err := r.reload(ctx); err != nil {
		return err
	}
	r.unloaded = false
	return nil
}

// write brings the rules directory and the list of its subdirectories in
// prometheus.yml to want and reports whether it changed.
func (r *rulesSync) write(want map[string]map[string][]byte) (bool, error) {
	changed := false
	entries, err := os.ReadDir(r.prom.rules)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(r.prom.rules, e.Name())); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	names := slices.Sorted(maps.Keys(want))
	for _, name := range names {
		files := want[name]
		sub := filepath.Join(r.prom.rules, name)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return changed, err
		}
		old, err := os.ReadDir(sub)
		if err != nil {
			return changed, err
		}
		for _, e := range old {
			if _, ok := files[e.Name()]; !ok {
				if err := os.Remove(filepath.Join(sub, e.Name())); err != nil {
					return changed, err
				}
				changed = true
			}
		}
		for key, data := range files {
			// The API server admits only [-._a-zA-Z0-9]+ keys, never "."
			// or "..": no key leaves its directory.
			if !validKey(key) {
				continue
			}
			path := filepath.Join(sub, key)
			if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
				continue
			}
			if err := writeFileAtomic(path, data); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	config := r.prom.render(names)
	if cur, err := os.ReadFile(r.prom.config); err == nil && bytes.Equal(cur, config) {
		return changed, nil
	}
	return true, writeFileAtomic(r.prom.config, config)
}

func validKey(k string) bool {
	return k != "" && k != "." && !strings.HasPrefix(k, "..") && !strings.ContainsAny(k, `/\`)
}

// reload asks Prometheus to reread its configuration and rules; it
// answers 500 with the reason when it refuses them.
func (r *rulesSync) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/-/reload", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reloading prometheus: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w (%s says why): %s", errRefused, r.prom.comp.log, strings.TrimSpace(string(body)))
	}
	return nil
}

// startMonitoring waits for Prometheus and starts the rules sync.
func (s *Sandbox) startMonitoring(ctx context.Context, logf func(string, ...any)) error {
	if err := waitPrometheus(ctx, s.prom.comp, s.PrometheusURL); err != nil {
		return err
	}
	var err error
	s.rules, err = startRulesSync(ctx, s.RESTConfig, s.prom, s.PrometheusURL, logf)
	return err
}

// monitoringEnv is the env file's monitoring part.
func (s *Sandbox) monitoringEnv() string {
	if s.PrometheusURL == "" {
		return ""
	}
	return fmt.Sprintf("# monitoring: Prometheus; it loads the rules ConfigMaps of namespace %s labelled %s=%s\nexport PROMETHEUS_URL=%s\n",
		MonitoringNamespace, RulesLabel, RulesLabelValue, shellQuote(s.PrometheusURL))
}
