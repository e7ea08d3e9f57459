package kubeaction

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Logs saves container logs as evidence: the current instance of every
// container of the chosen pods, and the previous instance of those that
// restarted (whose logs the next restart or eviction would lose).
type Logs struct{}

// DefaultLogLimit caps each container's log, so one chatty pod cannot fill
// the responder's disk.
const DefaultLogLimit = 64 << 20

// logWorkers bounds concurrent log streams per step.
const logWorkers = 8

func (Logs) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "k8s.logs",
		Timeout:     30 * time.Minute, // the step's default deadline
		Description: "Save the logs of the chosen pods' containers as evidence, the previous instance too where a container restarted; collect before draining or restarting (RFC 3227: most volatile first).",
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(podParams(), []runbook.ParamDef{
			{Name: "since", Type: runbook.Duration, Description: "only lines newer than this (e.g. 7d; unset: all the kubelet has)"},
			{Name: "limit_bytes", Type: runbook.Int, Default: int64(DefaultLogLimit), Description: "at most this many bytes per container log"},
			{Name: "containers", Type: runbook.Strings, Description: "only these containers (unset: all, init containers included)"},
		}...),
		Validate: func(p runbook.Params) error {
			if p.Int("limit_bytes") <= 0 {
				return fmt.Errorf("limit_bytes must be more than 0")
			}
			return validatePodChoice(p.Strings("names"), p.String("selector"))
		},
	}
}

func (Logs) Permissions(p runbook.Params) []kube.Permission {
	return podReadPermissions(p, kube.Permission{Verb: "get", Resource: "pods", Subresource: "log", Namespace: p.String("namespace")})
}

// podReadPermissions is get or list pods (names or selector) plus extra.
func podReadPermissions(p runbook.Params, extra ...kube.Permission) []kube.Permission {
	verb := "list"
	if len(p.Strings("names")) > 0 {
		verb = "get"
	}
	return append([]kube.Permission{{Verb: verb, Resource: "pods", Namespace: p.String("namespace")}}, extra...)
}

// logTarget is one container instance whose log is read.
type logTarget struct {
	Pod       corev1.Pod
	Container string
	Previous  bool
}

func (t logTarget) String() string {
	s := t.Pod.Namespace + "/" + t.Pod.Name + "/" + t.Container
	if t.Previous {
		s += " (previous)"
	}
	return s
}

func (t logTarget) object() evidence.Object {
	o := podObject(&t.Pod)
	o.Container, o.Previous = t.Container, t.Previous
	return o
}

// podObject records a pod as an evidence source.
func podObject(p *corev1.Pod) evidence.Object {
	return evidence.Object{APIVersion: "v1", Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), ResourceVersion: p.ResourceVersion}
}

// logTargets lists the container instances of pods: every container (init
// containers first), plus the previous instance where restartCount > 0.
func logTargets(pods []corev1.Pod, only []string) []logTarget {
	want := map[string]bool{}
	for _, c := range only {
		want[c] = true
	}
	var out []logTarget
	for _, pod := range pods {
		restarts := map[string]int32{}
		for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
			restarts[s.Name] = s.RestartCount
		}
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			if len(want) > 0 && !want[c.Name] {
				continue
			}
			out = append(out, logTarget{Pod: pod, Container: c.Name})
			if restarts[c.Name] > 0 {
				out = append(out, logTarget{Pod: pod, Container: c.Name, Previous: true})
			}
		}
	}
	return out
}

func (Logs) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	_, ns, pods, err := podsOf(ctx, env, p)
	if err != nil {
		return nil, err
	}
	targets := logTargets(pods, p.Strings("containers"))
	if len(targets) == 0 {
		return nil, fmt.Errorf("the %d pod(s) chosen have no container named %s", len(pods), strings.Join(p.Strings("containers"), " or "))
	}
	names := make([]string, len(targets))
	prev := 0
	for i, t := range targets {
		names[i] = t.String()
		if t.Previous {
			prev++
		}
	}
	return &action.Plan{
		Summary: fmt.Sprintf("save the logs of %d container instance(s) (%d previous) of %d pod(s) in %s%s, up to %d MiB each, as evidence%s",
			len(targets), prev, len(pods), ns, sinceText(p.Duration("since")), limitBytes(p)>>20, collectNote(env)),
		Targets: action.Abbreviate(names, 20),
		State:   targets,
	}, nil
}

func sinceText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return " from the last " + durationText(d)
}

// durationText prints whole days as 7d and whole hours as 24h.
func durationText(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d > 0 && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func limitBytes(p runbook.Params) int64 { return p.Int("limit_bytes") }

// collectNote tells a server dry run that evidence is still collected.
func collectNote(env *action.Env) string {
	if env.DryRun == action.DryRunServer {
		return " (collected under --dry-run=server too: collecting evidence is a read)"
	}
	return ""
}

// logOptions builds the kubelet log request.
func logOptions(t logTarget, since time.Duration, limit int64) *corev1.PodLogOptions {
	o := &corev1.PodLogOptions{Container: t.Container, Previous: t.Previous, Timestamps: true, LimitBytes: &limit}
	if since > 0 {
		s := int64(since / time.Second)
		o.SinceSeconds = &s
	}
	return o
}

func (Logs) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, store, err := collector(env)
	if err != nil {
		return nil, err
	}
	targets := plan.State.([]logTarget)
	limit := limitBytes(p)
	nodes := newNodeCache(c)
	var mu sync.Mutex
	var failed []action.Failure
	var saved, truncated int
	var bytes int64
	action.ForEach(ctx, logWorkers, len(targets), func(i int) {
		t := targets[i]
		e, err := saveLog(ctx, c, store, t, logOptions(t, p.Duration("since"), limit))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, action.Failure{Target: t.String(), Error: explainLogError(ctx, nodes, &t.Pod, err)})
			return
		}
		saved++
		bytes += e.Size
		if e.Size >= limit {
			truncated++
		}
	})
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	summary := fmt.Sprintf("saved %d of %d container log(s) as evidence under logs/ (%d bytes)", saved, len(targets), bytes)
	if truncated > 0 {
		summary += fmt.Sprintf("; %d reached limit_bytes and were cut", truncated)
	}
	return &action.Result{Summary: summary + collectNote(env), Failed: failed}, ctx.Err()
}

// saveLog streams one container instance's log into the evidence store.
func saveLog(ctx context.Context, c *kube.Clients, store *evidence.Store, t logTarget, opts *corev1.PodLogOptions) (evidence.Entry, error) {
	rc, err := c.Stream.CoreV1().Pods(t.Pod.Namespace).GetLogs(t.Pod.Name, opts).Stream(ctx)
	if err != nil {
		return evidence.Entry{}, err
	}
	defer rc.Close()
	name := fmt.Sprintf("logs/%s/%s/%s.log", t.Pod.Namespace, t.Pod.Name, evidence.SafeName(t.Container))
	if t.Previous {
		name = strings.TrimSuffix(name, ".log") + ".previous.log"
	}
	w, err := store.Create(name, evidence.Source{Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: []evidence.Object{t.object()},
		Note: logNote(opts)})
	if err != nil {
		return evidence.Entry{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return evidence.Entry{}, err
	}
	return w.Commit(evidence.Extra{})
}

func logNote(o *corev1.PodLogOptions) string {
	s := "kubelet log with timestamps"
	if o.SinceSeconds != nil {
		s += fmt.Sprintf(", sinceSeconds=%d", *o.SinceSeconds)
	}
	if o.LimitBytes != nil {
		s += fmt.Sprintf(", limitBytes=%d", *o.LimitBytes)
	}
	return s
}

// nodeCache looks nodes up once per step, to explain log failures.
type nodeCache struct {
	c  *kube.Clients
	mu sync.Mutex
	m  map[string]*corev1.Node
}

func newNodeCache(c *kube.Clients) *nodeCache { return &nodeCache{c: c, m: map[string]*corev1.Node{}} }

func (n *nodeCache) get(ctx context.Context, name string) *corev1.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if node, ok := n.m[name]; ok {
		return node
	}
	node, err := n.c.Core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		node = nil
	}
	n.m[name] = node
	return node
}

// isNoKubelet reports whether a log request failed because the API server
// could not reach the node's kubelet (its proxy error names the dial).
func isNoKubelet(err error) bool {
	var se apierrors.APIStatus
	if !asAPIStatus(err, &se) {
		return false
	}
	code := se.Status().Code
	if code != 500 && code != 502 && code != 503 {
		return false
	}
	msg := se.Status().Message
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "no route to host", "i/o timeout", "/containerLogs/"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func asAPIStatus(err error, target *apierrors.APIStatus) bool {
	for err != nil {
		if s, ok := err.(apierrors.APIStatus); ok {
			*target = s
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// explainLogError says plainly why a log could not be read; a sandbox
// node (a Node object no kubelet ever registered for: no kubelet port)
// is named as such.
func explainLogError(ctx context.Context, nodes *nodeCache, pod *corev1.Pod, err error) string {
	if pod.Spec.NodeName == "" {
		return "the pod was never scheduled to a node: it has no logs"
	}
	if !isNoKubelet(err) {
		return kube.Short(err)
	}
	msg := "no kubelet serves logs for node " + pod.Spec.NodeName
	if node := nodes.get(ctx, pod.Spec.NodeName); node != nil && node.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 {
		return msg + " (the sandbox has none)"
	}
	return msg + ": " + kube.Short(err)
}
