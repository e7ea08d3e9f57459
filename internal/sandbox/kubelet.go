package sandbox

// This file stands in for the kubelet's container-log endpoint, because the
// sandbox runs no kubelet (and no containers): without it, `kubectl logs`
// and irctl's k8s.logs and k8s.log-scan would have nothing to read. Each
// seeded Node gets a small HTTPS server on 127.0.0.1, registered in the
// Node's status as its kubelet endpoint, that answers
// /containerLogs/NAMESPACE/POD/CONTAINER like a kubelet does. The API server
// that proxies pods/log to it is the real kube-apiserver, with its own
// authentication, authorization, validation and proxying; only the far end
// is simulated. What the "containers" printed is generated here,
// deterministically and relative to the sandbox's start (see
// orchestratorLog), so no log files are stored anywhere.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// kubeletAddress is where every simulated kubelet listens, and so the
// InternalIP of every seeded Node: the API server dials it (it is started
// with --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname, as
// kubeadm does, so the Nodes keep their Hostname address too).
const kubeletAddress = "127.0.0.1"

// logHistory is how far back before the sandbox's start the simulated
// containers' logs begin: the seeded pods stand for pods that have run
// since before the attack, whatever their status says about when they
// started, as the audit_events rows of seed.sql cover eight days.
const logHistory = 8 * 24 * time.Hour

// kubelets are the simulated log endpoints of the seeded Nodes, one HTTPS
// server per Node, all on kubeletAddress.
type kubelets struct {
	cs      kubernetes.Interface
	epoch   time.Time // the log story is told relative to this instant
	ports   map[string]int
	servers []*http.Server
	ctx     context.Context // base of every request; cancelled by stop
	cancel  context.CancelFunc
	serving sync.WaitGroup // the Serve loops
}

// startKubelets starts a log endpoint for each of nodes. The logs' story
// is told relative to epoch.
func startKubelets(cfg *rest.Config, nodes []string, epoch time.Time) (_ *kubelets, err error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "irctl-sandbox-kubelet"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cert, err := selfSignedCert(nodes)
	if err != nil {
		return nil, fmt.Errorf("kubelet certificate: %w", err)
	}
	k := &kubelets{cs: cs, epoch: epoch, ports: map[string]int{}}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			k.stop()
		}
	}()
	for _, node := range nodes {
		ln, err := net.Listen("tcp", net.JoinHostPort(kubeletAddress, "0"))
		if err != nil {
			return nil, fmt.Errorf("kubelet for node %s: %w", node, err)
		}
		k.ports[node] = ln.Addr().(*net.TCPAddr).Port
		mux := http.NewServeMux()
		mux.HandleFunc("GET /containerLogs/", func(w http.ResponseWriter, r *http.Request) { k.containerLogs(node, w, r) })
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
		srv := &http.Server{
			Handler:           mux,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return k.ctx },
			// TLS handshakes the API server abandons are no news.
			ErrorLog: log.New(io.Discard, "", 0),
		}
		k.servers = append(k.servers, srv)
		k.serving.Go(func() { _ = srv.ServeTLS(ln, "", "") })
	}
	return k, nil
}

// register writes each Node's kubelet endpoint into its status, as a
// kubelet does when it registers: the port, and kubeletAddress as its
// InternalIP.
func (k *kubelets) register(ctx context.Context) error {
	for node, port := range k.ports {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return err
			}
			addrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: kubeletAddress}}
			for _, a := range n.Status.Addresses {
				if a.Type != corev1.NodeInternalIP {
					addrs = append(addrs, a)
				}
			}
			n.Status.Addresses = addrs
			n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
			_, err = k.cs.CoreV1().Nodes().UpdateStatus(ctx, n, updateOpts)
			return err
		})
		if err != nil {
			return fmt.Errorf("registering the kubelet endpoint of node %s: %w", node, err)
		}
	}
	return nil
}

// stop ends every request in flight (a follow included) and the servers,
// and waits for them.
func (k *kubelets) stop() {
	k.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range k.servers {
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
	}
	k.serving.Wait()
}

// containerLogs answers GET /containerLogs/NS/POD/CONTAINER?PodLogOptions
// for the pods bound to node, with the kubelet's status codes: 400 for a
// request it cannot decode or a container without that instance (previous
// for a container that never restarted), 404 for a pod not on this node or
// a container not in the pod.
func (k *kubelets) containerLogs(node string, w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	ns, name, container := parts[0], parts[1], parts[2]
	for what, v := range map[string]string{"podNamespace": ns, "podID": name, "container name": container} {
		if v == "" {
			http.Error(w, fmt.Sprintf(`{"message": "Missing %s."}`, what), http.StatusBadRequest)
			return
		}
	}
	opts, err := decodeLogOptions(r.URL.Query())
	if err != nil {
		http.Error(w, `{"message": "Unable to decode query."}`, http.StatusBadRequest)
		return
	}
	if !validLogOptions(opts) {
		http.Error(w, `{"message": "Invalid request."}`, http.StatusUnprocessableEntity)
		return
	}
	ctx := r.Context()
	// The API server plays the part of the kubelet's pod manager.
	pod, err := k.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && pod.Spec.NodeName != node) {
		http.Error(w, fmt.Sprintf("pod %q does not exist", name), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	image, ok := containerImage(pod, container)
	if !ok {
		http.Error(w, fmt.Sprintf("container %q not found in pod %q", container, name), http.StatusNotFound)
		return
	}
	now := time.Now()
	from, to, err := k.instanceWindow(pod, container, opts.Previous, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var gen containerLog
	if opts.Stream == nil || *opts.Stream != corev1.LogStreamStderr { // the simulated programs write to stdout
		gen = k.logFor(ctx, pod, container, image)
	}
	lw := &logWriter{w: w, timestamps: opts.Timestamps, remaining: -1}
	if opts.LimitBytes != nil {
		lw.remaining = *opts.LimitBytes
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	var lines []logLine
	if gen != nil {
		lines = gen(from, to)
	}
	var since time.Time
	switch {
	case opts.SinceSeconds != nil:
		since = now.Add(-time.Duration(*opts.SinceSeconds) * time.Second)
	case opts.SinceTime != nil:
		since = opts.SinceTime.Time
	}
	i := sort.Search(len(lines), func(i int) bool { return !lines[i].t.Before(since) })
	lines = lines[i:]
	if opts.TailLines != nil && int64(len(lines)) > *opts.TailLines {
		lines = lines[int64(len(lines))-max(*opts.TailLines, 0):]
	}
	if !lw.write(lines) || !opts.Follow || gen == nil || !to.Equal(now) {
		return
	}
	// follow, on a running container: stream what it prints from now on,
	// until the client goes away or the sandbox stops.
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for last := to; ; {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !lw.write(gen(last, now)) {
				return
			}
			last = now
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// decodeLogOptions reads the query parameters of PodLogOptions that the
// API server passes on to the kubelet.
func decodeLogOptions(q url.Values) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{Container: q.Get("container")}
	var errs []error
	flag := func(name string) bool {
		v, err := strconv.ParseBool(q.Get(name))
		errs = append(errs, err)
		return v
	}
	number := func(name string) *int64 {
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		errs = append(errs, err)
		return &n
	}
	for name := range q {
		switch name {
		case "follow":
			o.Follow = flag(name)
		case "previous":
			o.Previous = flag(name)
		case "timestamps":
			o.Timestamps = flag(name)
		case "insecureSkipTLSVerifyBackend":
			o.InsecureSkipTLSVerifyBackend = flag(name)
		case "sinceSeconds":
			o.SinceSeconds = number(name)
		case "tailLines":
			o.TailLines = number(name)
		case "limitBytes":
			o.LimitBytes = number(name)
		case "sinceTime":
			t, err := time.Parse(time.RFC3339, q.Get(name))
			errs = append(errs, err)
			o.SinceTime = &metav1.Time{Time: t}
		case "stream":
			o.Stream = ptr.To(q.Get(name))
		}
	}
	return o, errors.Join(errs...)
}

// validLogOptions is the API's validation of PodLogOptions, which the
// kubelet repeats.
func validLogOptions(o *corev1.PodLogOptions) bool {
	switch {
	case o.SinceSeconds != nil && o.SinceTime != nil,
		o.SinceSeconds != nil && *o.SinceSeconds < 1,
		o.TailLines != nil && *o.TailLines < 0,
		o.LimitBytes != nil && *o.LimitBytes < 1:
		return false
	case o.Stream != nil:
		return *o.Stream == corev1.LogStreamAll || *o.Stream == corev1.LogStreamStdout || *o.Stream == corev1.LogStreamStderr
	}
	return true
}

// containerImage returns the image of pod's container (init and ephemeral
// containers included) named name.
func containerImage(pod *corev1.Pod, name string) (string, bool) {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == name {
			return c.Image, true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image, true
		}
	}
	return "", false
}

// instanceWindow is the span of time over which the requested instance of
// the container printed its log, checked as the kubelet checks the
// container's status: previous needs a last termination with a container
// ID. A container that never restarted has logged since logHistory before
// the sandbox started; after a restart, the current instance has logged
// since it started and the previous one until it finished.
func (k *kubelets) instanceWindow(pod *corev1.Pod, container string, previous bool, now time.Time) (from, to time.Time, err error) {
	var st *corev1.ContainerStatus
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == container && st == nil {
				st = &list[i]
			}
		}
	}
	if st == nil {
		return from, to, fmt.Errorf("container %q in pod %q is not available", container, pod.Name)
	}
	start := k.epoch.Add(-logHistory)
	last := st.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return from, to, fmt.Errorf("previous terminated container %q in pod %q not found", container, pod.Name)
		}
		to = last.FinishedAt.Time
		if to.IsZero() && st.State.Running != nil {
			to = st.State.Running.StartedAt.Time
		}
		return start, to, nil
	case st.State.Running != nil:
		if last != nil && !st.State.Running.StartedAt.IsZero() {
			start = st.State.Running.StartedAt.Time
		}
		return start, now, nil
	case st.State.Terminated != nil:
		if last != nil && !st.State.Terminated.StartedAt.IsZero() {
			start = st.State.Terminated.StartedAt.Time
		}
		return start, st.State.Terminated.FinishedAt.Time, nil
	case st.State.Waiting != nil:
		return from, to, fmt.Errorf("container %q in pod %q is waiting to start: %s", container, pod.Name, st.State.Waiting.Reason)
	}
	return from, to, fmt.Errorf("container %q in pod %q is waiting to start - no logs yet", container, pod.Name)
}

// logLine is one line a container printed, without its newline.
type logLine struct {
	t    time.Time
	text string
}

// containerLog returns, in time order, the lines a container printed in
// [from, to).
type containerLog func(from, to time.Time) []logLine

// logFor chooses what the container printed by its image: the
// orchestrator's request log, PostgreSQL's and node-exporter's start-up
// lines; other programs (the forensics toolkit's `sleep infinity`, the
// test pods' images) printed nothing.
func (k *kubelets) logFor(ctx context.Context, pod *corev1.Pod, container, image string) containerLog {
	key := pod.Namespace + "/" + pod.Name + "/" + container
	start := k.epoch.Add(-logHistory)
	switch {
	case strings.HasPrefix(image, strings.SplitN(OrchestratorImage, ":", 2)[0]+":"):
		replica, replicas := k.replica(ctx, pod, image)
		return orchestratorLog(key, replica, replicas, k.epoch)
	case strings.Contains(image, "/postgres:"):
		return postgresLog(start)
	case strings.Contains(image, "/node-exporter:"):
		return nodeExporterLog(start)
	}
	return nil
}

// replica returns the pod's place among its peers - the scheduled pods of
// the same controller (or, without one, the same app label) running image
// - which share the platform's traffic as a Service would spread it.
func (k *kubelets) replica(ctx context.Context, pod *corev1.Pod, image string) (int, int) {
	var opts metav1.ListOptions
	if app := pod.Labels["app"]; app != "" {
		opts.LabelSelector = "app=" + app
	}
	list, err := k.cs.CoreV1().Pods(pod.Namespace).List(ctx, opts)
	if err != nil {
		return 0, 1
	}
	owner := metav1.GetControllerOf(pod)
	var peers []string
	for _, p := range list.Items {
		o := metav1.GetControllerOf(&p)
		if p.Spec.NodeName == "" || (owner == nil) != (o == nil) || (owner != nil && o.UID != owner.UID) {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c.Image == image {
				peers = append(peers, p.Name)
				break
			}
		}
	}
	sort.Strings(peers)
	for i, name := range peers {
		if name == pod.Name {
			return i, len(peers)
		}
	}
	return 0, 1
}

// logWriter writes lines as the kubelet does: each prefixed with its
// RFC 3339 timestamp when asked, the whole cut at limitBytes.
type logWriter struct {
	w          io.Writer
	timestamps bool
	remaining  int64 // bytes left under limitBytes; < 0: no limit
}

// write reports whether more may be written.
func (lw *logWriter) write(lines []logLine) bool {
	var b strings.Builder
	for _, l := range lines {
		if lw.timestamps {
			b.WriteString(l.t.UTC().Format(time.RFC3339Nano))
			b.WriteByte(' ')
		}
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	s := b.String()
	if lw.remaining >= 0 && int64(len(s)) >= lw.remaining {
		_, _ = io.WriteString(lw.w, s[:lw.remaining])
		lw.remaining = 0
		return false
	}
	if lw.remaining > 0 {
		lw.remaining -= int64(len(s))
	}
	_, err := io.WriteString(lw.w, s)
	return err == nil
}

// The orchestrator's log: a start-up banner, ordinary requests from the
// internal network at random minutes, and the requests of the attack in
// seed.sql's audit_events, each logged by one replica. Every request line
// ends in bytes=N, the response size, so that the runbook's
// exfiltration-in-logs step (lines matching download|export|bulk_query
// whose last number exceeds 1,000,000) finds the attacker's 60 bulk
// queries and exports and nothing else: ordinary transfers stay below 1 MB.
//
//	2026-11-22T03:14:15.123Z INFO request user_id=7 ip=198.51.100.23 action=bulk_query resource=table/users status=200 duration_ms=43109 rows=102000 ua="python-requests/2.31.0" bytes=2646800640

// orchestratorLog is the log of replica (of replicas) of the orchestrator,
// key naming the container: the ordinary traffic is the container's own,
// the attack's requests are shared among the replicas.
func orchestratorLog(key string, replica, replicas int, epoch time.Time) containerLog {
	start := epoch.Add(-logHistory)
	seed := fnv64(key)
	const slot = time.Minute
	return func(from, to time.Time) []logLine {
		var out []logLine
		add := func(t time.Time, level, text string) {
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, appTime(t) + " " + level + " " + text})
			}
		}
		add(start, "INFO", "starting orchestrator version=v0.2.0 commit=4f2a9c1 go=go1.23.4")
		add(start.Add(38*time.Millisecond), "INFO", "connected to database host=postgres."+DemoNamespace+".svc db="+dbName+" pool_size=20")
		add(start.Add(41*time.Millisecond), "INFO", "listening addr=:8080")
		// One request in about half the minutes since the start.
		for s := max(int64(from.Sub(start)/slot)-1, 0); s <= int64(to.Sub(start)/slot); s++ {
			r := newRNG(seed ^ uint64(s)*0x9e3779b97f4a7c15)
			if r.n(100) >= 55 {
				continue
			}
			t := start.Add(time.Duration(s)*slot + time.Second + time.Duration(r.n(58_000))*time.Millisecond)
			level, text := ordinaryRequest(r)
			add(t, level, text)
		}
		for i, ev := range attackRequests() {
			if replicas <= 1 || i%replicas == replica {
				add(epoch.Add(ev.at), ev.level, ev.text)
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
		return out
	}
}

// appTime is the orchestrator's own timestamp: UTC, milliseconds.
func appTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

var (
	userAgents = []string{"orchestrator-web/2.3.1", "orchestrator-cli/0.9.4", "python-requests/2.32.3",
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
	appResources = []string{"workflow/summarize", "workflow/triage", "model/gpt-small", "model/embedder",
		"dataset/support-tickets", "prompt/library"}
	// ordinaryActions is weighted by repetition.
	ordinaryActions = []string{"api_call", "api_call", "api_call", "api_call", "query", "query", "query",
		"model_invoke", "model_invoke", "model_invoke", "config_read", "login", "logout", "export", "bulk_query", "download"}
)

// ordinaryRequest is a request from an internal user, as seed.sql's
// ordinary audit events are: RFC 1918, unique-local and IPv4-mapped
// addresses; transfers of less than 1 MB.
func ordinaryRequest(r *rng) (level, text string) {
	user := 2 + r.n(49)
	var ip string
	switch r.n(5) {
	case 0:
		ip = fmt.Sprintf("10.%d.%d.%d", r.n(4), r.n(251), 1+r.n(253))
	case 1:
		ip = fmt.Sprintf("172.%d.%d.%d", 16+r.n(16), r.n(249), 1+r.n(250))
	case 2:
		ip = fmt.Sprintf("192.168.%d.%d", r.n(8), 1+r.n(254))
	case 3:
		ip = fmt.Sprintf("fd00:10:%x::%x", r.n(16), 1+r.n(2520))
	default:
		ip = fmt.Sprintf("::ffff:10.20.%d.%d", r.n(32), 1+r.n(250))
	}
	action := ordinaryActions[r.n(len(ordinaryActions))]
	resource := appResources[r.n(len(appResources))]
	status, duration, bytes := 200, 5+r.n(400), 120+r.n(48_000)
	extra := ""
	switch action {
	case "login":
		resource = "auth/login"
		if r.n(25) == 0 {
			status, extra = 401, " reason=invalid_password"
		}
	case "logout":
		resource = "auth/logout"
	case "export", "bulk_query", "download":
		resource = []string{"dataset/support-tickets", "prompt/library"}[r.n(2)]
		duration, bytes = 200+r.n(4000), 10_000+r.n(940_000)
		extra = fmt.Sprintf(" rows=%d", 10+bytes/700)
	default:
		if r.n(40) == 0 {
			status = 404
		}
	}
	level = "INFO"
	if status >= 400 {
		level = "WARN"
	}
	return level, fmt.Sprintf("request user_id=%d ip=%s action=%s resource=%s status=%d duration_ms=%d%s ua=%q bytes=%d",
		user, ip, action, resource, status, duration, extra, userAgents[r.n(len(userAgents))], bytes)
}

// attackRequest is one request of the attack, at an offset from the
// sandbox's start.
type attackRequest struct {
	at          time.Duration
	level, text string
}

// attackRequests are the 433 requests behind seed.sql's attack rows, with
// the same times, users, addresses and sizes, in time order.
var attackRequests = sync.OnceValue(func() []attackRequest {
	var out []attackRequest
	req := func(at time.Duration, user, ip, action, resource string, status int, extra, ua string, bytes int64) {
		level := "INFO"
		if status >= 400 {
			level = "WARN"
		}
		// Durations grow with the response, about 60 MB/s for transfers.
		duration := 40 + bytes/60_000
		out = append(out, attackRequest{at, level, fmt.Sprintf("request user_id=%s ip=%s action=%s resource=%s status=%d duration_ms=%d%s ua=%q bytes=%d",
			user, netip.MustParseAddr(ip).String(), action, resource, status, duration, extra, ua, bytes)})
	}
	stolen := []string{"7", "13", "21"}
	attackerIPs := []string{"198.51.100.23", "203.0.113.77", "2001:db8:bad:1::21"}
	uaFor := func(g int) string {
		if g%3 == 2 {
			return "Go-http-client/1.1"
		}
		return "python-requests/2.31.0"
	}
	// 1. Credential stuffing: 300 failed logins over six hours.
	for g := 1; g <= 300; g++ {
		user, reason := strconv.Itoa(2+(g*7)%49), "invalid_password"
		if g%4 == 0 {
			user, reason = "-", "unknown_user"
		}
		ip := "198.51.100.23"
		switch g % 3 {
		case 0:
			ip = fmt.Sprintf("203.0.113.%d", 10+g%40)
		case 1:
			ip = fmt.Sprintf("2001:db8:%x::%x", g%8, g)
		}
		ua := "Go-http-client/1.1"
		if g%2 == 0 {
			ua = "python-requests/2.31.0"
		}
		req(-20*time.Hour+time.Duration(g)*72*time.Second, user, ip, "login", "auth/login", 401, " reason="+reason, ua, 87)
	}
	// 2. The logins that worked, and the API keys minted for persistence.
	for _, l := range []struct {
		at   time.Duration
		user int
	}{{13*time.Hour + 55*time.Minute, 0}, {13*time.Hour + 50*time.Minute, 1}, {13*time.Hour + 45*time.Minute, 2},
		{6*time.Hour + 5*time.Minute, 0}, {6 * time.Hour, 1}, {5*time.Hour + 55*time.Minute, 2}} {
		ua := "python-requests/2.31.0"
		if l.user == 2 {
			ua = "Go-http-client/1.1"
		}
		req(-l.at, stolen[l.user], attackerIPs[l.user], "login", "auth/login", 200, " mfa=false", ua, 412)
	}
	req(-12*time.Hour, "13", "203.0.113.77", "create_api_key", "api_key/sync-backup", 201, " key_prefix=sk_live_5f3a9c1e", "python-requests/2.31.0", 298)
	req(-(11*time.Hour + 40*time.Minute), "21", "2001:db8:bad:1::21", "create_api_key", "api_key/tmp-export", 201, " key_prefix=sk_live_0b7d44e2", "Go-http-client/1.1", 297)
	// 3. Exfiltration: 60 bulk queries and exports of gigabytes.
	tables := []string{"table/users", "table/api_keys", "dataset/support-tickets", "dataset/prompts"}
	for g := 1; g <= 60; g++ {
		action := "export"
		if g%2 == 0 {
			action = "bulk_query"
		}
		req(-13*time.Hour+time.Duration(g)*11*time.Minute, stolen[g%3], attackerIPs[g%3], action, tables[g%4], 200,
			fmt.Sprintf(" rows=%d", 100000+g*1000), uaFor(g), 2_500_000_000+int64(g)*73_400_320)
	}
	// 4. Probing beyond the stolen accounts' rights.
	paths := []string{"/admin/secrets", "/admin/users", "/internal/debug/pprof", "/admin/api-keys", "/internal/metrics"}
	for g := 1; g <= 25; g++ {
		req(-12*time.Hour+time.Duration(g)*20*time.Minute, stolen[g%3], attackerIPs[g%3], "read", paths[g%5], 401, "", "python-requests/2.31.0", 64)
	}
	targets := []string{"role/admin", "user/1", "api_key/break-glass-primary", "settings/sso"}
	verbs := []string{"rbac.update", "user.update", "api_key.read", "settings.write"}
	for g := 1; g <= 40; g++ {
		req(-(12*time.Hour+30*time.Minute)+time.Duration(g)*15*time.Minute, stolen[g%3], attackerIPs[g%3], verbs[g%4], targets[g%4], 403, "", "python-requests/2.31.0", 71)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
})

// postgresLog is PostgreSQL's start-up and its hourly checkpoints.
func postgresLog(start time.Time) containerLog {
	return func(from, to time.Time) []logLine {
		var out []logLine
		pgTime := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 MST") }
		add := func(t time.Time, pid int, msg string) {
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, fmt.Sprintf("%s [%d] LOG:  %s", pgTime(t), pid, msg)})
			}
		}
		add(start, 1, "starting PostgreSQL 15.8 (Debian 15.8-1.pgdg120+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit")
		add(start.Add(2*time.Millisecond), 1, `listening on IPv4 address "0.0.0.0", port 5432`)
		add(start.Add(3*time.Millisecond), 1, `listening on IPv6 address "::", port 5432`)
		add(start.Add(9*time.Millisecond), 1, `listening on Unix socket "/var/run/postgresql/.s.PGSQL.5432"`)
		add(start.Add(31*time.Millisecond), 27, "database system was shut down at "+pgTime(start.Add(-41*time.Second)))
		add(start.Add(44*time.Millisecond), 1, "database system is ready to accept connections")
		for h := max(int64(from.Sub(start)/time.Hour), 1); h <= int64(to.Sub(start)/time.Hour); h++ {
			t := start.Add(time.Duration(h) * time.Hour)
			r := newRNG(uint64(h))
			buffers := 40 + r.n(900)
			add(t, 25, "checkpoint starting: time")
			add(t.Add(time.Duration(buffers)*30*time.Millisecond), 25, fmt.Sprintf(
				"checkpoint complete: wrote %d buffers (%.1f%%); 0 WAL file(s) added, 0 removed, %d recycled; write=%.3f s, sync=0.004 s, total=%.3f s",
				buffers, float64(buffers)/163.84, r.n(3), float64(buffers)*0.03, float64(buffers)*0.03+0.011))
		}
		return out
	}
}

// nodeExporterLog is node-exporter's start-up.
func nodeExporterLog(start time.Time) containerLog {
	return func(from, to time.Time) []logLine {
		var out []logLine
		for i, msg := range []string{
			`level=info caller=node_exporter.go:193 msg="Starting node_exporter" version="(version=1.8.2, branch=HEAD, revision=f1e0e8360aa60b6cb5e5cc1560bed348fc2c1895)"`,
			`level=info caller=node_exporter.go:194 msg="Build context" build_context="(go=go1.22.5, platform=linux/amd64, user=root@03d440803209, date=20240714-11:53:45, tags=unknown)"`,
			`level=info caller=node_exporter.go:111 msg="Enabled collectors"`,
			`level=info caller=tls_config.go:313 msg="Listening on" address=[::]:9100`,
			`level=info caller=tls_config.go:316 msg="TLS is disabled." http2=false address=[::]:9100`,
		} {
			t := start.Add(time.Duration(i) * 3 * time.Millisecond)
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, "ts=" + appTime(t) + " " + msg})
			}
		}
		return out
	}
}

func fnv64(s string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, s)
	return h.Sum64()
}

// rng is splitmix64: small, fast and the same everywhere, so that a
// sandbox's logs are the same on every machine.
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng { return &rng{s: seed} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// n returns a number in [0, n).
func (r *rng) n(n int) int { return int(r.next() % uint64(n)) }

// selfSignedCert is the simulated kubelets' serving certificate. The API
// server does not check it (the sandbox gives it no
// --kubelet-certificate-authority), as with kubelets' default self-signed
// certificates.
func selfSignedCert(nodes []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "irctl-sandbox-kubelet"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(kubeletAddress)},
		DNSNames:     append([]string{"localhost"}, nodes...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
