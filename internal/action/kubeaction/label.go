// Package kubeaction holds the Kubernetes actions: labelling (quarantine),
// and the other steps that act on cluster objects.
package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Workers bounds concurrent API requests per step.
const Workers = 32

// Label sets labels on pods chosen by name or selector (quarantine=true),
// or removes them (releasing quarantine). With detach it also takes away
// the labels the pods' ReplicaSet and Services select on, so the
// ReplicaSet starts clean replacements and the Services stop routing to
// the quarantined pods, which stay for forensics.
type Label struct{}

func (Label) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.label",
		Timeout: 15 * time.Minute, // the step's default deadline
		Description: "Set labels (e.g. quarantine=true) on pods chosen by names or a label selector, or remove labels; " +
			"with detach, also remove the labels their ReplicaSet and Services select on (the ReplicaSet starts replacements, " +
			"the Services stop routing to them); undo restores the previous values.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(podParams(), []runbook.ParamDef{
			{Name: "labels", Type: runbook.Map, Description: "labels to set, e.g. {quarantine: \"true\"}"},
			{Name: "remove", Type: runbook.Strings, Description: "label keys to remove, like kubectl's `quarantine-` (e.g. [quarantine] to release quarantine)"},
			{Name: "detach", Type: runbook.Bool, Default: false, Description: "also remove the labels the pods' ReplicaSet and the namespace's Services select on, so the ReplicaSet replaces the pods and the Services stop routing to them; a rerun in the same incident leaves the replacements alone"},
			{Name: "allow_zero_ready", Type: runbook.Bool, Default: false, Description: "allow labelling every pod of a ReplicaSet or Service without detach (the isolated pods would be all it has), or detaching pods nothing replaces"},
		}...),
		Validate: func(p runbook.Params) error {
			if err := validatePodChoice(p.Strings("names"), p.String("selector")); err != nil {
				return err
			}
			return validateLabelChange(p.Map("labels"), p.Strings("remove"), p.Bool("detach"))
		},
	}
}

// validateLabelChange checks what a k8s.label step sets and removes.
func validateLabelChange(set map[string]string, remove []string, detach bool) error {
	if len(set) == 0 && len(remove) == 0 {
		return fmt.Errorf("give labels to set or remove (labels: {quarantine: \"true\"}, remove: [quarantine])")
	}
	if len(set) > 0 {
		if err := ValidateLabels(set); err != nil {
			return err
		}
	}
	for _, k := range remove {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("remove: label key %q: %s", k, errs[0])
		}
		if _, both := set[k]; both {
			return fmt.Errorf("label %s is both set and removed", k)
		}
	}
	if detach && len(set) == 0 {
		return fmt.Errorf("detach needs labels to set (the quarantine label the isolation policy selects)")
	}
	return nil
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
	perms := []kube.Permission{
		{Verb: verb, Resource: "pods", Namespace: ns},
		{Verb: "patch", Resource: "pods", Namespace: ns},
	}
	if guardsZeroReady(p) {
		// The ReplicaSets and Services that select the pods: what detach
		// removes, and whether the pods are all a workload has.
		perms = append(perms,
			kube.Permission{Verb: "list", Resource: "pods", Namespace: ns},
			kube.Permission{Verb: "list", Group: "apps", Resource: "replicasets", Namespace: ns},
			kube.Permission{Verb: "list", Resource: "services", Namespace: ns})
	}
	return perms
}

// labelChange is one pod to patch and the values it had before.
type labelChange struct {
	Name string             `json:"name"`
	UID  types.UID          `json:"uid"`
	Prev map[string]*string `json:"prev"` // nil value: the label was absent
	// Removed are the labels taken away (remove, or detach), Set those
	// written; both are in Prev with their previous values.
	Removed []string          `json:"removed,omitempty"`
	Set     map[string]string `json:"set,omitempty"`
	// PrevAnnotations are the previous values of the annotations a detach
	// writes (which incident, what was removed).
	PrevAnnotations map[string]*string `json:"prev_annotations,omitempty"`
	Annotations     map[string]string  `json:"-"`
}

// patch is what the change writes: labels (nil: removed) and annotations.
func (ch labelChange) patch() (map[string]*string, map[string]*string) {
	l := make(map[string]*string, len(ch.Set)+len(ch.Removed))
	for k, v := range ch.Set {
		l[k] = &v
	}
	for _, k := range ch.Removed {
		l[k] = nil
	}
	var a map[string]*string
	if len(ch.Annotations) > 0 {
		a = make(map[string]*string, len(ch.Annotations))
		for k, v := range ch.Annotations {
			a[k] = &v
		}
	}
	return l, a
}

// restore is what undo writes: the previous values.
func (ch labelChange) restore() (map[string]*string, map[string]*string) {
	return ch.Prev, ch.PrevAnnotations
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

func (Label) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	want, remove, detach := p.Map("labels"), p.Strings("remove"), p.Bool("detach")
	if err := validateLabelChange(want, remove, detach); err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, selector := p.String("namespace"), p.String("selector")
	var pods []corev1.Pod
	var setNames []string // the pods the step chose, for QuarantineSet
	plannedAt := time.Now()
	rerun := false
	if detach && selector != "" && env.Incident != "" {
		// The selector of a detached step matches the replacements once
		// the pods are detached: a rerun in the incident leaves them be,
		// and finishes the job on the originals an earlier run chose but
		// did not reach (it stopped partway; see detached.missed).
		done, err := detachedBefore(ctx, c, ns, want, selector, env.Incident)
		if err != nil {
			return nil, err
		}
		if len(done.pods) > 0 {
			list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return nil, fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
			}
			var missed []corev1.Pod
			for i, pod := range list.Items {
				if pod.Annotations[QuarantinedForIncident] != env.Incident && done.missed(&list.Items[i]) {
					missed = append(missed, pod)
				}
			}
			if len(missed) == 0 {
				return &action.Plan{
					Summary: fmt.Sprintf("%d pods in %s were already quarantined and detached for incident %s (%s); the selector %q now matches their replacements, which are left alone",
						len(done.pods), ns, env.Incident, strings.Join(action.Abbreviate(done.pods, 5), ", "), selector),
					Noop: true,
				}, nil
			}
			pods, rerun = missed, true
			for n := range done.chosen {
				setNames = append(setNames, n)
			}
			if !done.plannedAt.IsZero() {
				plannedAt = done.plannedAt
			}
		}
	}
	if !rerun {
		if pods, err = SelectPods(ctx, c, ns, p.Strings("names"), selector); err != nil {
			return nil, err
		}
	}
	var sel *selectors
	if guardsZeroReady(p) {
		if sel, err = loadSelectors(ctx, c, ns); err != nil {
			return nil, err
		}
	}
	for _, pod := range pods {
		setNames = append(setNames, pod.Name)
	}
	slices.Sort(setNames)
	chosenSet := ""
	if setNames = slices.Compact(setNames); len(setNames) <= maxQuarantineSet {
		chosenSet = strings.Join(setNames, ",")
	}
	var changes []labelChange
	var targets, warnings []string
	for _, pod := range pods {
		ch := labelChange{Name: pod.Name, UID: pod.UID, Prev: map[string]*string{}}
		for k, v := range want {
			old, had := pod.Labels[k]
			if had && old == v {
				continue
			}
			if ch.Set == nil {
				ch.Set = map[string]string{}
			}
			ch.Set[k] = v
			ch.Prev[k] = prevOf(old, had)
		}
		drop := map[string]bool{}
		for _, k := range remove {
			drop[k] = true
		}
		why := ""
		if detach {
			d := sel.detach(&pod, want)
			for _, k := range d.keys {
				drop[k] = true
			}
			why = d.why
			warnings = append(warnings, d.problems...)
		}
		for k := range drop {
			if old, had := pod.Labels[k]; had {
				ch.Removed = append(ch.Removed, k)
				ch.Prev[k] = &old
			}
		}
		sort.Strings(ch.Removed)
		if len(ch.Prev) == 0 {
			continue
		}
		target := ns + "/" + pod.Name
		if detach && len(ch.Removed) > 0 {
			ch.Annotations = map[string]string{
				QuarantinedForIncident: env.Incident,
				QuarantineSelector:     selector,
				DetachedLabels:         removedLabels(&pod, ch.Removed),
				QuarantinePlannedAt:    plannedAt.UTC().Format(time.RFC3339Nano),
				QuarantineSet:          chosenSet,
			}
			ch.PrevAnnotations = map[string]*string{}
			for k := range ch.Annotations {
				old, had := pod.Annotations[k]
				ch.PrevAnnotations[k] = prevOf(old, had)
			}
			for k, v := range ch.Annotations {
				if v == "" { // no incident, or pods chosen by name
					delete(ch.Annotations, k)
					delete(ch.PrevAnnotations, k)
				}
			}
			target += " (remove " + strings.Join(ch.Removed, ", ") + ": " + why + ")"
		} else if len(ch.Removed) > 0 {
			target += " (remove " + strings.Join(ch.Removed, ", ") + ")"
		}
		changes = append(changes, ch)
		targets = append(targets, target)
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	sort.Strings(targets)
	if sel != nil {
		notes, zero, err := sel.zeroReady(ctx, c, ns, pods, changes, detach)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, notes...)
		if len(zero) > 0 {
			if !p.Bool("allow_zero_ready") {
				return nil, exitcode.New(exitcode.Precondition, "refusing to leave %s with no pod serving: %s (detach: true lets the ReplicaSet start replacements; allow_zero_ready: true accepts it)",
					ns, strings.Join(zero, "; "))
			}
			for _, z := range zero {
				warnings = append(warnings, "allow_zero_ready: "+z)
			}
		}
	}
	what := describeChange(want, remove, detach)
	plan := &action.Plan{
		Summary:  planSummary(want, remove, detach, len(changes), len(pods), ns),
		Targets:  action.Abbreviate(targets, 20),
		Count:    len(changes),
		Noop:     len(changes) == 0,
		Warnings: warnings,
		State:    changes,
	}
	if detaching(changes) {
		plan.Warnings = append(plan.Warnings, "undo puts the removed labels back: the ReplicaSet adopts the pods again and deletes as many pods as it then has too many (the controller chooses which, usually the newest); "+
			"if the Deployment rolled out since, its old ReplicaSet, scaled to 0, deletes the re-attached pods - release quarantine per pod (remove: [quarantine]) to keep them")
	}
	if plan.Noop {
		plan.Summary = fmt.Sprintf("all %d pods in %s already are as asked (%s)", len(pods), ns, what)
		if len(want) > 0 && len(remove) == 0 {
			plan.Summary = fmt.Sprintf("all %d pods in %s already have %s", len(pods), ns, FormatLabels(want))
		}
	}
	return plan, nil
}

// guardsZeroReady: the step reads the namespace's ReplicaSets and
// Services, to detach the pods from them or to check that labelling (in
// place) does not isolate every pod they have (allow_zero_ready turns the
// refusal into a warning). Removing labels isolates nothing.
func guardsZeroReady(p runbook.Params) bool {
	return p.Bool("detach") || len(p.Map("labels")) > 0
}

func prevOf(old string, had bool) *string {
	if !had {
		return nil
	}
	return &old
}

// detaching: some change removes labels a ReplicaSet or Service selects.
func detaching(changes []labelChange) bool {
	for _, ch := range changes {
		if len(ch.Annotations) > 0 {
			return true
		}
	}
	return false
}

// planSummary: "label 3 of 3 pods in ns with quarantine=true and detach
// them from their ReplicaSet and Services", "remove quarantine from 1 of
// 1 pods in ns".
func planSummary(set map[string]string, remove []string, detach bool, n, of int, ns string) string {
	var b strings.Builder
	if len(set) > 0 {
		fmt.Fprintf(&b, "label %d of %d pods in %s with %s", n, of, ns, FormatLabels(set))
		if len(remove) > 0 {
			b.WriteString(", removing " + strings.Join(remove, ","))
		}
	} else {
		fmt.Fprintf(&b, "remove %s from %d of %d pods in %s", strings.Join(remove, ","), n, of, ns)
	}
	if detach {
		b.WriteString(" and detach them from their ReplicaSet and Services")
	}
	return b.String()
}

// describeChange says what a step does to each pod, for summaries.
func describeChange(set map[string]string, remove []string, detach bool) string {
	var parts []string
	if len(set) > 0 {
		parts = append(parts, "set "+FormatLabels(set))
	}
	if len(remove) > 0 {
		parts = append(parts, "remove "+strings.Join(remove, ","))
	}
	if detach {
		parts = append(parts, "detach from ReplicaSets and Services")
	}
	return strings.Join(parts, ", ")
}

func (Label) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns := p.String("namespace")
	changes := plan.State.([]labelChange)
	dry := env.DryRun == action.DryRunServer
	env.Progress.Start(int64(len(changes)), "pods labelled")
	done, failed := patchPods(ctx, c, ns, changes, labelChange.patch, dry, env.Progress)
	undo, _ := json.Marshal(labelUndo{Namespace: ns, Pods: done})
	detached := 0
	for _, ch := range done {
		if len(ch.Annotations) > 0 {
			detached++
		}
	}
	summary := fmt.Sprintf("%s: %d pods in %s", describeChange(p.Map("labels"), p.Strings("remove"), p.Bool("detach")), len(done), ns)
	if set := p.Map("labels"); len(set) > 0 && len(p.Strings("remove")) == 0 {
		summary = fmt.Sprintf("labelled %d pods in %s with %s", len(done), ns, FormatLabels(set))
	}
	if p.Bool("detach") {
		summary += fmt.Sprintf(" (%d detached from their ReplicaSet or Services)", detached)
	}
	return &action.Result{
		Summary: summary,
		Changed: len(done),
		Failed:  failed,
		Undo:    undo,
	}, ctx.Err()
}

// Undo puts back the label (and annotation) values recorded before the
// change. Labels a detach removed bring the pod back into its ReplicaSet,
// which then deletes the pods it has too many of.
func (Label) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[labelUndo](env, raw)
	if err != nil {
		return nil, err
	}
	env.Progress.Start(int64(len(u.Pods)), "pods restored")
	done, failed := patchPods(ctx, c, u.Namespace, u.Pods, labelChange.restore, env.DryRun == action.DryRunServer, env.Progress)
	summary := fmt.Sprintf("restored previous labels on %d pods in %s", len(done), u.Namespace)
	reattached := 0
	for _, ch := range done {
		if len(ch.PrevAnnotations) > 0 {
			reattached++
		}
	}
	if reattached > 0 {
		summary += fmt.Sprintf("; %d of them carry their ReplicaSet's and Services' labels again: the ReplicaSet adopts them and removes the pods it has too many of", reattached)
	}
	return &action.Result{Summary: summary, Changed: len(done), Failed: failed}, ctx.Err()
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
