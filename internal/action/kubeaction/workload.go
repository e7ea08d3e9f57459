package kubeaction

// Workloads (Deployment, StatefulSet, DaemonSet) as the recover actions
// name, read and patch them. A step names its workload with one param per
// kind (deployment: orchestrator), so that the permissions it needs follow
// from its params alone.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Workload kinds, as their params are named.
const (
	kindDeployment  = "deployment"
	kindStatefulSet = "statefulset"
	kindDaemonSet   = "daemonset"
)

var allWorkloadKinds = []string{kindDeployment, kindStatefulSet, kindDaemonSet}

// workloadRef names one workload.
type workloadRef struct {
	Kind      string `json:"kind"` // deployment, statefulset or daemonset
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (w workloadRef) String() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// resource is the workload's API resource (all of group apps).
func (w workloadRef) resource() string { return w.Kind + "s" }

// workloadParams are the params naming a workload of one of kinds.
func workloadParams(kinds ...string) []runbook.ParamDef {
	defs := []runbook.ParamDef{{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the workload"}}
	for _, k := range kinds {
		defs = append(defs, runbook.ParamDef{Name: k, Type: runbook.String, Description: "name of the " + kindTitle(k) + " (give exactly one of " + strings.Join(kinds, ", ") + ")"})
	}
	return defs
}

func kindTitle(k string) string {
	switch k {
	case kindDeployment:
		return "Deployment"
	case kindStatefulSet:
		return "StatefulSet"
	}
	return "DaemonSet"
}

// workloadOf reads the workload a step names; exactly one kind param.
func workloadOf(p runbook.Params, kinds ...string) (workloadRef, error) {
	var found []workloadRef
	for _, k := range kinds {
		if p.Has(k) {
			found = append(found, workloadRef{Kind: k, Namespace: p.String("namespace"), Name: p.String(k)})
		}
	}
	if len(found) != 1 {
		return workloadRef{}, fmt.Errorf("give exactly one of %s (the workload's name)", strings.Join(kinds, ", "))
	}
	if errs := validation.IsDNS1123Subdomain(found[0].Name); len(errs) > 0 {
		return workloadRef{}, fmt.Errorf("%s %q: %s", found[0].Kind, found[0].Name, errs[0])
	}
	return found[0], nil
}

// workloadPermissions declares verbs on the workload the params name (on
// each kind param given, so a malformed step still declares what it asks),
// plus listing its pods, which a stuck rollout's report names.
func workloadPermissions(p runbook.Params, kinds []string, sub string, verbs ...string) []kube.Permission {
	ns := p.String("namespace")
	var perms []kube.Permission
	for _, k := range kinds {
		if !p.Has(k) {
			continue
		}
		perms = append(perms, kube.Permission{Verb: "get", Group: appsv1.GroupName, Resource: k + "s", Namespace: ns})
		for _, v := range verbs {
			perms = append(perms, kube.Permission{Verb: v, Group: appsv1.GroupName, Resource: k + "s", Subresource: sub, Namespace: ns})
		}
	}
	if len(perms) > 0 {
		perms = append(perms, kube.Permission{Verb: "list", Resource: "pods", Namespace: ns})
	}
	return perms
}

// workload is a live workload, whatever its kind.
type workload struct {
	ref      workloadRef
	obj      any // *appsv1.Deployment, *appsv1.StatefulSet or *appsv1.DaemonSet
	meta     *metav1.ObjectMeta
	template *corev1.PodTemplateSpec
	selector *metav1.LabelSelector
}

func wrapWorkload(ref workloadRef, obj any) *workload {
	w := &workload{ref: ref, obj: obj}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		w.meta, w.template, w.selector = &o.ObjectMeta, &o.Spec.Template, o.Spec.Selector
	case *appsv1.StatefulSet:
		w.meta, w.template, w.selector = &o.ObjectMeta, &o.Spec.Template, o.Spec.Selector
	case *appsv1.DaemonSet:
		w.meta, w.template, w.selector = &o.ObjectMeta, &o.Spec.Template, o.Spec.Selector
	}
	return w
}

// getWorkload reads the workload; NotFound says which.
func getWorkload(ctx context.Context, c *kube.Clients, ref workloadRef) (*workload, error) {
	apps := c.Core.AppsV1()
	var obj any
	var err error
	switch ref.Kind {
	case kindDeployment:
		obj, err = apps.Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	case kindStatefulSet:
		obj, err = apps.StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	case kindDaemonSet:
		obj, err = apps.DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	default:
		return nil, fmt.Errorf("unknown workload kind %q", ref.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s %s not found in namespace %s", kindTitle(ref.Kind), ref.Name, ref.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %s", ref, kube.Short(err))
	}
	return wrapWorkload(ref, obj), nil
}

// patchWorkload sends a strategic merge patch to the workload.
func patchWorkload(ctx context.Context, c *kube.Clients, ref workloadRef, patch []byte, dry bool) (*workload, error) {
	apps := c.Core.AppsV1()
	opts := metav1.PatchOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	var obj any
	var err error
	switch ref.Kind {
	case kindDeployment:
		obj, err = apps.Deployments(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, opts)
	case kindStatefulSet:
		obj, err = apps.StatefulSets(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, opts)
	case kindDaemonSet:
		obj, err = apps.DaemonSets(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, opts)
	default:
		return nil, fmt.Errorf("unknown workload kind %q", ref.Kind)
	}
	if err != nil {
		return nil, err
	}
	return wrapWorkload(ref, obj), nil
}

// setImages sets container images, reading the workload first and sending
// its resourceVersion with the patch, so that the images it reports as
// previous are exactly the ones replaced. want maps container to image;
// only ones that differ are sent. It returns the previous images of the
// containers it changed.
func setImages(ctx context.Context, c *kube.Clients, ref workloadRef, want map[string]string, dry bool) (map[string]string, error) {
	var prev map[string]string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w, err := getWorkload(ctx, c, ref)
		if err != nil {
			return err
		}
		cur, err := containerImages(w.template, keys(want))
		if err != nil {
			return err
		}
		prev = map[string]string{}
		var containers, inits []map[string]string
		for _, name := range keys(want) {
			if cur[name] == want[name] {
				continue
			}
			prev[name] = cur[name]
			entry := map[string]string{"name": name, "image": want[name]}
			if isInit(w.template, name) {
				inits = append(inits, entry)
			} else {
				containers = append(containers, entry)
			}
		}
		if len(prev) == 0 {
			return nil
		}
		spec := map[string]any{}
		if len(containers) > 0 {
			spec["containers"] = containers
		}
		if len(inits) > 0 {
			spec["initContainers"] = inits
		}
		patch, _ := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": w.meta.ResourceVersion},
			"spec":     map[string]any{"template": map[string]any{"spec": spec}},
		})
		_, err = patchWorkload(ctx, c, ref, patch, dry)
		return err
	})
	if err != nil {
		return nil, err
	}
	return prev, nil
}

// containerImages returns the images of the named containers (init
// containers too); a name the template lacks is an error naming the ones
// it has.
func containerImages(t *corev1.PodTemplateSpec, names []string) (map[string]string, error) {
	have := map[string]string{}
	var all []string
	for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for _, ct := range cs {
			have[ct.Name] = ct.Image
			all = append(all, ct.Name)
		}
	}
	out := map[string]string{}
	for _, n := range names {
		img, ok := have[n]
		if !ok {
			sort.Strings(all)
			return nil, fmt.Errorf("no container %q in the pod template (it has %s)", n, strings.Join(all, ", "))
		}
		out[n] = img
	}
	return out, nil
}

func isInit(t *corev1.PodTemplateSpec, name string) bool {
	for _, ct := range t.Spec.InitContainers {
		if ct.Name == name {
			return true
		}
	}
	return false
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// undoRecord decodes an action's undo record and opens the clients that
// reverse it: the start of every Undo here.
func undoRecord[T any](env *action.Env, raw json.RawMessage) (T, *kube.Clients, error) {
	var u T
	if err := json.Unmarshal(raw, &u); err != nil {
		return u, nil, fmt.Errorf("undo record: %w", err)
	}
	c, err := env.Kube()
	return u, c, err
}

// collector opens the clients and the evidence store: the start of every
// Apply that reads the cluster into evidence.
func collector(env *action.Env) (*kube.Clients, *evidence.Store, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, nil, err
	}
	store, err := env.Evidence()
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: %w", err)
	}
	return c, store, nil
}
