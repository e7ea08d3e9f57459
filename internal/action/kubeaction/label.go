// Package kubeaction holds the Kubernetes actions: labelling (quarantine),
// and the other steps that act on cluster objects.
package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/runbook"
)

// Workers bounds concurrent API requests per step.
const Workers = 32

// Label sets labels on pods chosen by name or selector (quarantine=true).
type Label struct{}

func (Label) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "k8s.label",
		Timeout:     15 * time.Minute, // the step's default deadline
		Description: "Set labels (e.g. quarantine=true) on pods chosen by names or a label selector; undo restores the previous values.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(podParams(), []runbook.ParamDef{
			{Name: "labels", Type: runbook.Map, Required: true, Description: "labels to set, e.g. {quarantine: \"true\"}"},
		}...),
		Validate: func(p runbook.Params) error {
			if err := validatePodChoice(p.Strings("names"), p.String("selector")); err != nil {
				return err
			}
			return ValidateLabels(p.Map("labels"))
		},
	}
}

// validatePodChoice insists on exactly one of names or a valid selector.
func validatePodChoice(names []string, selector string) error {
	if (len(names) > 0) == (selector != "") {
		return fmt.Errorf("give exactly one of names or selector")
	}
	if selector != "" {
		if _, err := labels.Parse(selector); err != nil {
			return fmt.Errorf("invalid selector %q: %v", selector, err)
		}
	}
	return nil
}

func (Label) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	verb := "list"
	if len(p.Strings("names")) > 0 {
		verb = "get"
	}
	return []kube.Permission{
		{Verb: verb, Resource: "pods", Namespace: ns},
		{Verb: "patch", Resource: "pods", Namespace: ns},
	}
}

// labelChange is one pod to patch and the values it had before.
type labelChange struct {
	Name string             `json:"name"`
	UID  types.UID          `json:"uid"`
	Prev map[string]*string `json:"prev"` // nil value: the label was absent
}

type labelUndo struct {
	Namespace string        `json:"namespace"`
	Pods      []labelChange `json:"pods"`
}

// ValidateLabels checks keys and values as the API server would, so a bad
// label fails before any pod is touched.
func ValidateLabels(m map[string]string) error {
	if len(m) == 0 {
		return fmt.Errorf("labels: none given")
	}
	for k, v := range m {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("label key %q: %s", k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %s value %q: %s", k, v, errs[0])
		}
	}
	return nil
}

// podParams are the params podsOf reads: which pods a step acts on.
func podParams() []runbook.ParamDef {
	return []runbook.ParamDef{
		{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the pods"},
		{Name: "names", Type: runbook.Strings, Description: "pod names (this or selector)"},
		{Name: "selector", Type: runbook.String, Description: "label selector, e.g. app=orchestrator (this or names)"},
	}
}

// podsOf resolves the pods a step's namespace, names or selector choose.
func podsOf(ctx context.Context, env *action.Env, p runbook.Params) (*kube.Clients, string, []corev1.Pod, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, "", nil, err
	}
	ns := p.String("namespace")
	pods, err := SelectPods(ctx, c, ns, p.Strings("names"), p.String("selector"))
	return c, ns, pods, err
}

// SelectPods resolves names or a selector to pods; no match is an error,
// because quarantining nothing must never look like success.
func SelectPods(ctx context.Context, c *kube.Clients, ns string, names []string, selector string) ([]corev1.Pod, error) {
	if err := validatePodChoice(names, selector); err != nil {
		return nil, err
	}
	if selector != "" {
		list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("selector %q matches no pods in namespace %s", selector, ns)
		}
		return list.Items, nil
	}
	pods := make([]corev1.Pod, 0, len(names))
	for _, n := range names {
		p, err := c.Core.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("pod %s not found in namespace %s", n, ns)
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %s", ns, n, kube.Short(err))
		}
		pods = append(pods, *p)
	}
	return pods, nil
}

func (Label) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	want := p.Map("labels")
	if err := ValidateLabels(want); err != nil {
		return nil, err
	}
	_, ns, pods, err := podsOf(ctx, env, p)
	if err != nil {
		return nil, err
	}
	var changes []labelChange
	var targets []string
	for _, pod := range pods {
		prev := map[string]*string{}
		for k, v := range want {
			old, had := pod.Labels[k]
			if had && old == v {
				continue
			}
			if had {
				prev[k] = &old
			} else {
				prev[k] = nil
			}
		}
		if len(prev) > 0 {
			changes = append(changes, labelChange{Name: pod.Name, UID: pod.UID, Prev: prev})
			targets = append(targets, ns+"/"+pod.Name)
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	sort.Strings(targets)
	plan := &action.Plan{
		Summary: fmt.Sprintf("label %d of %d pods in %s with %s", len(changes), len(pods), ns, FormatLabels(want)),
		Targets: action.Abbreviate(targets, 20),
		Count:   len(changes),
		Noop:    len(changes) == 0,
		State:   changes,
	}
	if plan.Noop {
		plan.Summary = fmt.Sprintf("all %d pods in %s already have %s", len(pods), ns, FormatLabels(want))
	}
	return plan, nil
}

func (Label) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns := p.String("namespace")
	changes := plan.State.([]labelChange)
	want := p.Map("labels")
	set := make(map[string]*string, len(want))
	for k, v := range want {
		set[k] = &v
	}
	dry := env.DryRun == action.DryRunServer
	env.Progress.Start(int64(len(changes)), "pods labelled")
	done, failed := patchPods(ctx, c, ns, changes, func(labelChange) map[string]*string { return set }, dry, env.Progress)
	undo, _ := json.Marshal(labelUndo{Namespace: ns, Pods: done})
	return &action.Result{
		Summary: fmt.Sprintf("labelled %d pods in %s with %s", len(done), ns, FormatLabels(want)),
		Changed: len(done),
		Failed:  failed,
		Undo:    undo,
	}, ctx.Err()
}

// Undo puts back the label values recorded before the change.
func (Label) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	var u labelUndo
	if err := json.Unmarshal(raw, &u); err != nil {
		return nil, fmt.Errorf("undo record: %w", err)
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	restore := func(ch labelChange) map[string]*string { return ch.Prev }
	env.Progress.Start(int64(len(u.Pods)), "pods restored")
	done, failed := patchPods(ctx, c, u.Namespace, u.Pods, restore, env.DryRun == action.DryRunServer, env.Progress)
	return &action.Result{Summary: fmt.Sprintf("restored previous labels on %d pods in %s", len(done), u.Namespace), Changed: len(done), Failed: failed}, ctx.Err()
}

// patchPods merge-patches the labels of pods concurrently (a nil value
// removes the label). The patch carries a UID precondition so that a pod
// deleted and recreated under the same name is not touched by mistake.
// A patch whose outcome is uncertain (a lost response, a 5xx, a 429, a
// conflict) is not resent before the pod has been read again: a pod that
// already carries the labels is done, and stays in the undo record.
func patchPods(ctx context.Context, c *kube.Clients, ns string, changes []labelChange, labelsOf func(labelChange) map[string]*string, dry bool, prog *progress.Counter) ([]labelChange, []action.Failure) {
	var mu sync.Mutex
	var done []labelChange
	var failed []action.Failure
	opts := metav1.PatchOptions{
		FieldManager: kube.FieldManager,
		DryRun:       kube.DryRunOpt(dry),
		// The patch holds labels only, which have no unknown fields to
		// report; Ignore spares the API server a strict second decode
		// of every patched pod.
		FieldValidation: "Ignore",
	}
	pods := c.Core.CoreV1().Pods(ns)
	action.ForEach(ctx, Workers, len(changes), func(i int) {
		ch := changes[i]
		want := labelsOf(ch)
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": want, "uid": ch.UID}})
		err := kube.Write(ctx, func() error {
			_, err := pods.Patch(ctx, ch.Name, types.MergePatchType, b, opts)
			return err
		}, func() (bool, error) {
			// A server dry run leaves nothing to find: patch again.
			if dry {
				return false, nil
			}
			pod, err := pods.Get(ctx, ch.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if pod.UID != ch.UID {
				return false, fmt.Errorf("pod %s/%s was replaced (its UID changed)", ns, ch.Name)
			}
			return hasLabels(pod.Labels, want), nil
		})
		if err != nil && ctx.Err() != nil && !dry {
			// Interrupted mid-write: the patch may have reached the server.
			// Read it back (briefly, past the cancellation) so that a pod
			// that was changed is in the undo record, not in the failures.
			vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			if pod, gerr := pods.Get(vctx, ch.Name, metav1.GetOptions{}); gerr == nil && pod.UID == ch.UID && hasLabels(pod.Labels, want) {
				err = nil
			}
			cancel()
		}
		prog.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, action.Failure{Target: ns + "/" + ch.Name, Error: kube.Short(err)})
			return
		}
		done = append(done, ch)
	})
	sort.Slice(done, func(i, j int) bool { return done[i].Name < done[j].Name })
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	return done, failed
}

// hasLabels reports whether have matches want (nil: absent).
func hasLabels(have map[string]string, want map[string]*string) bool {
	for k, v := range want {
		got, ok := have[k]
		if (v == nil && ok) || (v != nil && (!ok || got != *v)) {
			return false
		}
	}
	return true
}

// FormatLabels prints labels as k=v,k2=v2 in key order.
func FormatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
