package sandbox

// This file stands in for the kubelet's container-log endpoint: kwok
// simulates the seeded Nodes' kubelets (pod status), but no container runs,
// so without it `kubectl logs` and irctl's k8s.logs and k8s.log-scan would
// have nothing to read. Each seeded Node gets a small HTTPS server on
// 127.0.0.1, registered in the Node's status as its kubelet endpoint, that
// answers /containerLogs/NAMESPACE/POD/CONTAINER like a kubelet does. The
// API server that proxies pods/log to it is the real kube-apiserver, with
// its own authentication, authorization, validation and proxying; only the
// far end is simulated. What the "containers" printed is generated
// (logstory.go), deterministically and relative to the sandbox's start, so
// no log files are stored anywhere.
//
// kwok's own log simulation (Logs/ClusterLogs objects pointing a container
// at a file) cannot replace it: ClusterLogs select pods by namespace and
// name only, and a Deployment's pods get new generated names at every
// rollout or replacement; a file is the same for every pod it serves, so
// each replica would print every one of the attack's requests (the story
// shares them among the replicas running at the time, so that a scan finds
// each once); kwok answers `previous` with a second file whether or not
// the container ever restarted, where a kubelet answers 400; and a file
// written once does not keep growing for `follow` or grow an 8-day history
// ending at the present.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
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
	epoch   time.Time   // the log story is told relative to this instant
	served  *requestLog // the orchestrator stand-in's request lines
	ports   map[string]int
	servers []*http.Server
	ctx     context.Context // base of every request; cancelled by stop
	cancel  context.CancelFunc
	serving sync.WaitGroup // the Serve loops

	cutMu sync.Mutex
	cut   chan struct{} // closed (and replaced) by cutFollows
}

// cutFollows ends every follow stream in flight, as a real kubelet or a
// proxy closing long requests does, while the containers run on.
func (k *kubelets) cutFollows() {
	k.cutMu.Lock()
	defer k.cutMu.Unlock()
	if k.cut != nil {
		close(k.cut)
	}
	k.cut = make(chan struct{})
}

// cutSignal is the channel cutFollows closes next.
func (k *kubelets) cutSignal() <-chan struct{} {
	k.cutMu.Lock()
	defer k.cutMu.Unlock()
	if k.cut == nil {
		k.cut = make(chan struct{})
	}
	return k.cut
}

// startKubelets starts a log endpoint for each of nodes. The logs' story
// is told relative to epoch; the orchestrator pods' logs add the lines of
// the requests the stand-in API served (served may be nil).
func startKubelets(cfg *rest.Config, nodes []string, epoch time.Time, served *requestLog) (_ *kubelets, err error) {
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
	k := &kubelets{cs: cs, epoch: epoch, served: served, ports: map[string]int{}}
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
	// until the client goes away, the sandbox stops, or the container
	// stops running (the pod deleted, the container terminated or
	// restarted), when the stream ends as the kubelet's does.
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	tick := time.NewTicker(followTick)
	defer tick.Stop()
	cut := k.cutSignal()
	for last := to; ; {
		select {
		case <-ctx.Done():
			return
		case <-cut:
			return
		case <-tick.C:
			// The instant is read after the tick: every line stamped
			// before it is in the log by now (requestLog.add).
			now := time.Now()
			running := k.stillRunning(ctx, pod, container)
			if !lw.write(gen(last, now)) {
				return
			}
			last = now
			if rc.Flush() != nil || !running {
				return
			}
		}
	}
}

// followTick is how often a follow stream sends what was printed.
const followTick = 500 * time.Millisecond

// stillRunning reports whether the instance of pod's container a follow
// streams still runs: the same pod (UID), not being deleted, the
// container running since the same start.
func (k *kubelets) stillRunning(ctx context.Context, pod *corev1.Pod, container string) bool {
	cur, err := k.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		// Gone, or the API server cannot say: a kubelet that cannot
		// reach it keeps its containers running.
		return !apierrors.IsNotFound(err)
	}
	if cur.UID != pod.UID || cur.DeletionTimestamp != nil {
		return false
	}
	was, now := runningSince(pod, container), runningSince(cur, container)
	return now != nil && (was == nil || now.Equal(*was))
}

// runningSince is when pod's container started running, nil if it is not
// running.
func runningSince(pod *corev1.Pod, container string) *time.Time {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			if s.Name == container && s.State.Running != nil {
				t := s.State.Running.StartedAt.Time
				return &t
			}
		}
	}
	return nil
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
		return withServed(orchestratorLog(key, replica, replicas, k.epoch), k.served, pod.UID)
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

// CutLogStreams ends every `follow` log stream the simulated kubelets are
// serving, while the containers run on: what a kubelet restart or a proxy's
// request timeout does to `kubectl logs -f`. Tests use it to prove a
// follower asks again and loses no line.
func (s *Sandbox) CutLogStreams() {
	if s.kubelets != nil {
		s.kubelets.cutFollows()
	}
}
