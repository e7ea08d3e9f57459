package kubeaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/third_party/drain"
)

// Drain defaults, as kubectl's except that DaemonSet pods are ignored: a
// drain during an incident must not stall on node agents.
const (
	defaultDrainTimeout = 2 * time.Minute
	// evictRetryDelay spaces eviction retries while a PodDisruptionBudget
	// refuses them (429); the drain timeout still bounds the whole wait.
	evictRetryDelay = 2 * time.Second
)

// evictedIrreversible is why undo cannot give evicted pods back.
const evictedIrreversible = "evicted pods are not restored (their controllers recreate them)"

// maxNotedPods bounds the evicted pods named in a drain's irreversible note.
const maxNotedPods = 20

// evictedNote is a drain's irreversible note, naming the evicted pods
// (namespace/name): undo uncordons the nodes and then lists them as not
// undone.
func evictedNote(pods []string) string {
	pods = slices.Sorted(slices.Values(pods))
	return evictedIrreversible + ": " + strings.Join(action.Abbreviate(pods, maxNotedPods), ", ")
}

// nodeParams are the ways to choose nodes, shared by cordon and drain.
var nodeParams = []runbook.ParamDef{
	{Name: "nodes", Type: runbook.Strings, Description: "node names (this or node_selector); an empty list makes the step a no-op"},
	{Name: "node_selector", Type: runbook.String, Description: "label selector of the nodes (this or nodes)"},
}

// validateNodeChoice insists on nodes or node_selector. An empty nodes list
// is allowed, so that a runbook can default affected nodes to [].
func validateNodeChoice(p runbook.Params) error {
	names, sel := p.Strings("nodes"), p.String("node_selector")
	if len(names) > 0 && sel != "" {
		return fmt.Errorf("give nodes or node_selector, not both")
	}
	if !p.Has("nodes") && sel == "" {
		return fmt.Errorf("give nodes (a list, possibly empty) or node_selector")
	}
	for _, n := range names {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("node name %q: %s", n, errs[0])
		}
	}
	if sel != "" {
		if _, err := labels.Parse(sel); err != nil {
			return fmt.Errorf("invalid node_selector %q: %v", sel, err)
		}
	}
	return nil
}

// nodePermissions: each node is read again just before it is cordoned
// (get), whichever way the step chose it.
func nodePermissions(p runbook.Params) []kube.Permission {
	perms := []kube.Permission{{Verb: "get", Resource: "nodes"}, {Verb: "patch", Resource: "nodes"}}
	if p.String("node_selector") != "" {
		perms = append(perms, kube.Permission{Verb: "list", Resource: "nodes"})
	}
	return perms
}

// selectNodes resolves the step's nodes. A selector matching nothing is an
// error (likely a typo); an empty list of names is not.
func selectNodes(ctx context.Context, c *kube.Clients, p runbook.Params) ([]corev1.Node, error) {
	if sel := p.String("node_selector"); sel != "" {
		list, err := c.Core.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("list nodes: %s", kube.Short(err))
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("node_selector %q matches no nodes", sel)
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		return list.Items, nil
	}
	var nodes []corev1.Node
	for _, name := range p.Strings("nodes") {
		n, err := c.Core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("node %s not found", name)
		}
		if err != nil {
			return nil, fmt.Errorf("get node %s: %s", name, kube.Short(err))
		}
		nodes = append(nodes, *n)
	}
	return nodes, nil
}

// noNodes is the plan of a step given an empty list of nodes.
func noNodes(verb string) *action.Plan {
	return &action.Plan{Summary: fmt.Sprintf("no nodes given (nodes is empty): nothing to %s", verb), Noop: true, State: []string(nil)}
}

// schedulable names the nodes not yet cordoned.
func schedulable(nodes []corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		if !n.Spec.Unschedulable {
			out = append(out, n.Name)
		}
	}
	return out
}

func names(nodes []corev1.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

// setUnschedulable cordons (or uncordons) one node, re-read first so that
// a node somebody else cordoned since the plan is not recorded as ours.
// changed is false when the node was already as desired. A patch whose
// outcome is uncertain is retried only after a fresh read: a node found
// as desired after irctl's own patch was sent counts as changed.
func setUnschedulable(ctx context.Context, c *kube.Clients, name string, desired, dry bool) (changed bool, err error) {
	sent := false
	err = kube.Write(ctx, func() error {
		node, err := c.Core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		h := drain.NewCordonHelper(node)
		if !h.UpdateIfRequired(desired) {
			changed = sent
			return nil
		}
		sent = true
		// RunCordonOrUncordon would ignore the dry run; this does not.
		if err, patchErr := h.PatchOrReplaceWithContext(ctx, c.Core, dry); err != nil {
			return errors.Join(err, patchErr)
		}
		changed = true
		return nil
	}, nil)
	return changed, err
}

// nodeUndo records the nodes a step cordoned, and only those: a node that
// was already cordoned stays cordoned on undo.
type nodeUndo struct {
	Cordoned []string `json:"cordoned"`
}

// uncordon is the undo of cordon and drain.
func uncordon(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[nodeUndo](env, raw)
	if err != nil {
		return nil, err
	}
	var done []string
	var failed []action.Failure
	for _, name := range u.Cordoned {
		changed, err := setUnschedulable(ctx, c, name, false, env.DryRun == action.DryRunServer)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			failed = append(failed, action.Failure{Target: "node/" + name, Error: kube.Short(err)})
		case changed:
			done = append(done, name)
		}
	}
	summary := fmt.Sprintf("uncordoned %d nodes", len(done))
	if len(done) > 0 {
		summary += ": " + strings.Join(done, ", ")
	}
	return &action.Result{Summary: summary, Changed: len(done), Failed: failed}, ctx.Err()
}

// Cordon marks nodes unschedulable, so nothing new lands on them.
type Cordon struct{}

func (Cordon) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "k8s.cordon",
		Timeout:     10 * time.Minute, // the step's default deadline
		Description: "Mark nodes unschedulable (kubectl cordon); undo uncordons the nodes this step cordoned.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params:      nodeParams,
		Validate:    validateNodeChoice,
	}
}

func (Cordon) Permissions(p runbook.Params) []kube.Permission { return nodePermissions(p) }

func (Cordon) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	nodes, err := selectNodes(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return noNodes("cordon"), nil
	}
	todo := schedulable(nodes)
	if len(todo) == 0 {
		return &action.Plan{Summary: fmt.Sprintf("all %d nodes are already cordoned: %s", len(nodes), strings.Join(names(nodes), ", ")), Noop: true, State: todo}, nil
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("cordon %d of %d nodes: %s", len(todo), len(nodes), strings.Join(todo, ", ")),
		Count:   len(todo),
		State:   todo,
	}
	for _, n := range todo {
		plan.Targets = append(plan.Targets, "node/"+n)
	}
	return plan, nil
}

func (Cordon) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	var cordoned []string
	var failed []action.Failure
	for _, name := range plan.State.([]string) {
		changed, err := setUnschedulable(ctx, c, name, true, env.DryRun == action.DryRunServer)
		if err != nil {
			failed = append(failed, action.Failure{Target: "node/" + name, Error: kube.Short(err)})
			continue
		}
		if changed {
			cordoned = append(cordoned, name)
		}
	}
	res := &action.Result{Summary: fmt.Sprintf("cordoned %d nodes", len(cordoned)), Changed: len(cordoned), Failed: failed}
	if len(cordoned) > 0 {
		res.Summary += ": " + strings.Join(cordoned, ", ")
		res.Undo, _ = json.Marshal(nodeUndo{Cordoned: cordoned})
	}
	return res, ctx.Err()
}

// Undo uncordons the nodes this step cordoned.
func (Cordon) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	return uncordon(ctx, env, raw)
}

// Drain cordons nodes and evicts their pods through the eviction API, so
// PodDisruptionBudgets are honoured.
type Drain struct{}

func (Drain) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.drain",
		Timeout: 60 * time.Minute, // the step's default deadline
		Description: "Cordon nodes and evict their pods (kubectl drain); a drain that stops partway leaves the node cordoned and lists the pods left. " +
			"Undo uncordons the nodes this step cordoned; evicted pods are not restored.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(append([]runbook.ParamDef(nil), nodeParams...),
			runbook.ParamDef{Name: "timeout", Type: runbook.Duration, Default: defaultDrainTimeout, Description: "how long to wait for each node's pods to go"},
			runbook.ParamDef{Name: "delete_emptydir_data", Type: runbook.Bool, Default: false, Description: "evict pods with emptyDir volumes, losing that data"},
			runbook.ParamDef{Name: "ignore_daemonsets", Type: runbook.Bool, Default: true, Description: "leave DaemonSet pods in place; false refuses to drain nodes running them"},
			runbook.ParamDef{Name: "grace_period", Type: runbook.Int, Default: int64(-1), Description: "seconds each pod gets to terminate (-1: the pod's own)"},
			runbook.ParamDef{Name: "force", Type: runbook.Bool, Default: false, Description: "also evict pods that no controller manages, which are then gone for good"},
			runbook.ParamDef{Name: "pod_selector", Type: runbook.String, Description: "evict only the pods matching this label selector, e.g. quarantine!=true to keep quarantined pods in place as evidence"},
		),
		Validate: func(p runbook.Params) error {
			if err := validateNodeChoice(p); err != nil {
				return err
			}
			if p.Duration("timeout") <= 0 {
				return fmt.Errorf("timeout must be more than 0 (0 would wait forever)")
			}
			if p.Int("grace_period") < -1 {
				return fmt.Errorf("grace_period must be -1 (the pod's own) or more")
			}
			if _, err := labels.Parse(p.String("pod_selector")); err != nil {
				return fmt.Errorf("invalid pod_selector %q: %v", p.String("pod_selector"), err)
			}
			return nil
		},
	}
}

func (Drain) Permissions(p runbook.Params) []kube.Permission {
	return append(nodePermissions(p),
		kube.Permission{Verb: "list", Resource: "pods"},
		// Waiting for an evicted pod to go is a get.
		kube.Permission{Verb: "get", Resource: "pods"},
		kube.Permission{Verb: "create", Resource: "pods", Subresource: "eviction"},
		// The drain library deletes pods when the server has no eviction API.
		kube.Permission{Verb: "delete", Resource: "pods"},
		// It looks up the DaemonSet of every DaemonSet pod it meets.
		kube.Permission{Verb: "get", Group: appsv1.GroupName, Resource: "daemonsets"},
	)
}

// helper configures kubectl's drain library from the step's params.
func (Drain) helper(ctx context.Context, env *action.Env, c *kube.Clients, p runbook.Params) *drain.Helper {
	h := &drain.Helper{
		Ctx:                  ctx,
		Client:               c.Core,
		Force:                p.Bool("force"),
		GracePeriodSeconds:   int(p.Int("grace_period")),
		IgnoreAllDaemonSets:  p.Bool("ignore_daemonsets"),
		DeleteEmptyDirData:   p.Bool("delete_emptydir_data"),
		PodSelector:          p.String("pod_selector"),
		Timeout:              p.Duration("timeout"),
		EvictErrorRetryDelay: evictRetryDelay,
		ChunkSize:            500,
		// The library prints progress; it reaches the log, never stdout.
		Out:    logWriter{env.Log, zerolog.DebugLevel},
		ErrOut: logWriter{env.Log, zerolog.WarnLevel},
	}
	if env.DryRun == action.DryRunServer {
		h.DryRunStrategy = drain.DryRunServer
	}
	return h
}

// flagNames turns the library's kubectl flag hints into this action's
// param names.
var flagNames = strings.NewReplacer(
	"--ignore-daemonsets", "ignore_daemonsets: true",
	"--delete-emptydir-data", "delete_emptydir_data: true",
	"--force", "force: true",
)

// podsToEvict lists the pods a drain of node would evict, and the
// library's warnings (pods it leaves in place). Pods it refuses to evict
// with the current params make an error naming the param to change.
func podsToEvict(h *drain.Helper, node string) ([]corev1.Pod, string, error) {
	list, errs := h.GetPodsForDeletion(node)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = flagNames.Replace(e.Error())
		}
		sort.Strings(msgs)
		return nil, "", fmt.Errorf("node %s: %s", node, strings.Join(msgs, "; "))
	}
	pods := list.Pods()
	sort.Slice(pods, func(i, j int) bool { return podKey(pods[i]) < podKey(pods[j]) })
	return pods, list.Warnings(), nil
}

func podKey(p corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (d Drain) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	nodes, err := selectNodes(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return noNodes("drain"), nil
	}
	h := d.helper(ctx, env, c, p)
	todo := schedulable(nodes)
	plan := &action.Plan{State: names(nodes)}
	for _, n := range todo {
		plan.Targets = append(plan.Targets, "node/"+n+" (cordon)")
	}
	var evict []string
	for _, n := range nodes {
		pods, warnings, err := podsToEvict(h, n.Name)
		if err != nil {
			return nil, err
		}
		if warnings != "" {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s: %s", n.Name, warnings))
		}
		for _, pod := range pods {
			evict = append(evict, podKey(pod)+" (on "+n.Name+")")
		}
	}
	plan.Count = len(todo) + len(evict)
	plan.Targets = action.Abbreviate(append(plan.Targets, evict...), 20)
	all := strings.Join(names(nodes), ", ")
	if plan.Count == 0 {
		plan.Summary = fmt.Sprintf("nodes %s are cordoned and have no pods to evict", all)
		plan.Noop = true
		return plan, nil
	}
	plan.Summary = fmt.Sprintf("drain %d nodes (%s): cordon %d, evict %d pods", len(nodes), all, len(todo), len(evict))
	if sel := p.String("pod_selector"); sel != "" {
		plan.Summary += " matching " + sel
	}
	if len(evict) > 0 {
		plan.Warnings = append(plan.Warnings, "evicted pods lose their logs and local state: capture the evidence you need from them first")
	}
	return plan, nil
}

func (d Drain) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	timeout := p.Duration("timeout")
	var cordoned, evicted []string
	var failed []action.Failure
	// The pods to evict are listed node by node, so the total grows.
	env.Progress.Start(0, "pods evicted")
	for _, name := range plan.State.([]string) {
		changed, err := setUnschedulable(ctx, c, name, true, dry)
		if err != nil {
			// Never evict from a node that can take the pods straight back.
			failed = append(failed, action.Failure{Target: "node/" + name, Error: "not cordoned, so not drained: " + kube.Short(err)})
			continue
		}
		if changed {
			cordoned = append(cordoned, name)
		}
		gone, left := d.evictFrom(ctx, env, c, p, name, timeout)
		evicted = append(evicted, gone...)
		failed = append(failed, left...)
		if ctx.Err() != nil {
			break
		}
	}
	summary := fmt.Sprintf("cordoned %d nodes, evicted %d pods", len(cordoned), len(evicted))
	if len(failed) > 0 {
		summary += fmt.Sprintf("; %d left (their nodes stay cordoned)", len(failed))
	}
	res := &action.Result{Summary: summary, Changed: len(cordoned) + len(evicted), Failed: failed}
	// Both can be set: undo uncordons the nodes this step cordoned, then
	// says the evicted pods were not undone.
	if len(cordoned) > 0 {
		res.Undo, _ = json.Marshal(nodeUndo{Cordoned: cordoned})
	}
	if len(evicted) > 0 {
		res.Irreversible = evictedNote(evicted)
	}
	return res, ctx.Err()
}

// evictFrom evicts the node's pods, Workers at a time, all within one
// timeout for the node. Each pod goes through the library on its own, so
// that every pod's outcome is known: it returns the pods that went
// (namespace/name) and a failure for each pod left.
func (d Drain) evictFrom(ctx context.Context, env *action.Env, c *kube.Clients, p runbook.Params, node string, timeout time.Duration) ([]string, []action.Failure) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := d.helper(ctx, env, c, p)
	pods, _, err := podsToEvict(h, node)
	if err != nil {
		return nil, []action.Failure{{Target: "node/" + node, Error: err.Error()}}
	}
	var mu sync.Mutex
	var evicted []string
	started := make([]bool, len(pods))
	var failed []action.Failure
	env.Progress.Grow(int64(len(pods)))
	action.ForEach(ctx, Workers, len(pods), func(i int) {
		err := h.DeleteOrEvictPods(pods[i : i+1])
		env.Progress.Add(1)
		mu.Lock()
		defer mu.Unlock()
		started[i] = true
		if err != nil {
			why := kube.Short(err)
			if ctx.Err() != nil {
				// client-go itself waits out 429s (a PodDisruptionBudget
				// refusing), so the timeout is what the operator sees.
				why = fmt.Sprintf("not evicted within the %s timeout (%s)", timeout, why)
			}
			failed = append(failed, action.Failure{Target: podKey(pods[i]), Error: fmt.Sprintf("still on %s: %s", node, why)})
			return
		}
		evicted = append(evicted, podKey(pods[i]))
	})
	for i, ok := range started {
		if !ok {
			failed = append(failed, action.Failure{Target: podKey(pods[i]), Error: fmt.Sprintf("still on %s: the drain timed out before evicting it", node)})
		}
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	return evicted, failed
}

// Undo uncordons the nodes this step cordoned; evicted pods stay evicted.
func (Drain) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	return uncordon(ctx, env, raw)
}

// logWriter turns the drain library's printed lines into log events.
type logWriter struct {
	log   zerolog.Logger
	level zerolog.Level
}

func (w logWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if line != "" {
			w.log.WithLevel(w.level).Str("component", "drain").Msg(line)
		}
	}
	return len(b), nil
}

// Action params have no defaults in their schema; these give the default
// when the step did not set the param.
