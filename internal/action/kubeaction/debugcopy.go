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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// DebugCopy creates a copy of affected pods to analyse, leaving the
// originals untouched (the LLM-orchestrator runbook: `kubectl debug --copy-to`): the same spec
// under the name <pod>-forensic-<incident>, with every label removed but
// irctl.dev/forensic-copy-of, so that no Service, controller or label-
// selected policy picks it up, and no node assigned, so the scheduler
// places it. It is destructive because it creates a pod that runs the
// affected image again.
type DebugCopy struct{}

// LabelForensicCopyOf marks a forensic copy with the name of its original.
const LabelForensicCopyOf = "irctl.dev/forensic-copy-of"

func (DebugCopy) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.debug-copy",
		Timeout: 15 * time.Minute, // the step's default deadline
		Description: "Create a forensic copy of affected pods (<pod>-forensic-<incident>): same spec, labels stripped except " + LabelForensicCopyOf +
			", node unassigned, no service account token unless asked, optionally a debug container sharing its process namespace; originals untouched; undo deletes the copies.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(podParams(), []runbook.ParamDef{
			{Name: "debug_image", Type: runbook.String, Description: "add a debug container with this image (e.g. nicolaka/netshoot) sharing the copy's process namespace"},
			{Name: "keep_labels", Type: runbook.Strings, Description: "label keys the copy keeps, e.g. [quarantine] so that the isolation policy selects it too"},
			{Name: "keep_service_account_token", Type: runbook.Bool, Default: false, Description: "mount the pod's service account token in the copy (false: the copy gets no API credentials)"},
		}...),
		Validate: func(p runbook.Params) error { return validatePodChoice(p.Strings("names"), p.String("selector")) },
	}
}

func (DebugCopy) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	// Planning gets each copy's name to find copies a rerun already made,
	// whether the originals were chosen by name or by selector.
	return podReadPermissions(p,
		kube.Permission{Verb: "get", Resource: "pods", Namespace: ns},
		kube.Permission{Verb: "create", Resource: "pods", Namespace: ns})
}

// IncidentSuffix is the short incident form used in object names and label
// values: SEC-20261122-001 becomes 20261122-001.
func IncidentSuffix(id string) string {
	s := strings.ToLower(strings.TrimPrefix(id, "SEC-"))
	if s == "" {
		return "no-incident"
	}
	return s
}

// CopyName is the forensic copy's name for a pod.
func CopyName(pod, incident string) string {
	suffix := "-forensic-" + IncidentSuffix(incident)
	if len(pod)+len(suffix) > 253 {
		pod = strings.TrimRight(pod[:253-len(suffix)], "-.")
	}
	return pod + suffix
}

// CopyOptions shape a forensic copy.
type CopyOptions struct {
	Incident   string
	DebugImage string
	KeepLabels []string
	KeepToken  bool
}

// ForensicCopy builds the copy of pod. It never modifies pod.
func ForensicCopy(pod *corev1.Pod, o CopyOptions) *corev1.Pod {
	cp := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      CopyName(pod.Name, o.Incident),
			Namespace: pod.Namespace,
			Labels:    map[string]string{LabelForensicCopyOf: labelValue(pod.Name)},
			Annotations: map[string]string{
				"irctl.dev/forensic-copy-of-pod": pod.Name,
				"irctl.dev/forensic-copy-of-uid": string(pod.UID),
				AnnoIncident:                     o.Incident,
			},
		},
		Spec: *pod.Spec.DeepCopy(),
	}
	for k, v := range pod.Annotations {
		if _, ours := cp.Annotations[k]; !ours && k != corev1.LastAppliedConfigAnnotation {
			cp.Annotations[k] = v
		}
	}
	for _, k := range o.KeepLabels {
		if v, ok := pod.Labels[k]; ok {
			cp.Labels[k] = v
		}
	}
	s := &cp.Spec
	s.NodeName = ""
	s.EphemeralContainers = nil
	// Computed by admission from the priority class; a copy may not set them.
	s.Priority, s.PreemptionPolicy = nil, nil
	if !o.KeepToken {
		s.AutomountServiceAccountToken = ptr.To(false)
		dropTokenVolumes(s)
	}
	if o.DebugImage != "" {
		s.ShareProcessNamespace = ptr.To(true)
		s.Containers = append(s.Containers, corev1.Container{
			Name:                     uniqueContainerName(s, "forensics"),
			Image:                    o.DebugImage,
			Stdin:                    true,
			TTY:                      true,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		})
	}
	return cp
}

// labelValue fits a pod name into a label value (63 characters).
func labelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	return strings.TrimRight(name[:63], "-._")
}

// dropTokenVolumes removes the projected service account token volumes
// that admission added to the original (kube-api-access-*), and their
// mounts: automountServiceAccountToken alone would not remove them.
func dropTokenVolumes(s *corev1.PodSpec) {
	drop := map[string]bool{}
	var vols []corev1.Volume
	for _, v := range s.Volumes {
		if v.Projected != nil && hasTokenSource(v.Projected) {
			drop[v.Name] = true
			continue
		}
		vols = append(vols, v)
	}
	s.Volumes = vols
	strip := func(cs []corev1.Container) {
		for i := range cs {
			var mounts []corev1.VolumeMount
			for _, m := range cs[i].VolumeMounts {
				if !drop[m.Name] {
					mounts = append(mounts, m)
				}
			}
			cs[i].VolumeMounts = mounts
		}
	}
	strip(s.InitContainers)
	strip(s.Containers)
}

func hasTokenSource(p *corev1.ProjectedVolumeSource) bool {
	for _, src := range p.Sources {
		if src.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

func uniqueContainerName(s *corev1.PodSpec, base string) string {
	used := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, s.InitContainers...), s.Containers...) {
		used[c.Name] = true
	}
	name := base
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

// copyPlan is one copy to create.
type copyPlan struct {
	Original corev1.Pod
	Copy     *corev1.Pod
}

type copyUndo struct {
	Namespace string        `json:"namespace"`
	Copies    []copiedPodID `json:"copies"`
}

type copiedPodID struct {
	Name string    `json:"name"`
	UID  types.UID `json:"uid"`
}

func (d DebugCopy) options(env *action.Env, p runbook.Params) CopyOptions {
	return CopyOptions{Incident: env.Incident, DebugImage: p.String("debug_image"), KeepLabels: p.Strings("keep_labels"), KeepToken: p.Bool("keep_service_account_token")}
}

func (d DebugCopy) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, ns, pods, err := podsOf(ctx, env, p)
	if err != nil {
		return nil, err
	}
	o := d.options(env, p)
	var plans []copyPlan
	var targets, exist []string
	claims := map[string]bool{}
	for _, pod := range pods {
		if _, isCopy := pod.Labels[LabelForensicCopyOf]; isCopy {
			continue // never copy a copy
		}
		cp := ForensicCopy(&pod, o)
		got, err := c.Core.CoreV1().Pods(ns).Get(ctx, cp.Name, metav1.GetOptions{})
		switch {
		case err == nil && got.Annotations["irctl.dev/forensic-copy-of-uid"] == string(pod.UID):
			exist = append(exist, cp.Name)
			continue
		case err == nil:
			return nil, fmt.Errorf("pod %s/%s exists and is not this incident's forensic copy of %s; refusing to touch it", ns, cp.Name, pod.Name)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("get pod %s/%s: %s", ns, cp.Name, kube.Short(err))
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims[v.PersistentVolumeClaim.ClaimName] = true
			}
		}
		plans = append(plans, copyPlan{Original: pod, Copy: cp})
		targets = append(targets, fmt.Sprintf("%s/%s -> %s", ns, pod.Name, cp.Name))
	}
	sort.Strings(targets)
	var warnings []string
	if len(claims) > 0 {
		warnings = append(warnings, fmt.Sprintf("the copies mount claim(s) %s that the originals hold: a ReadWriteOnce volume may keep a copy from starting on another node", strings.Join(sortedSet(claims), ", ")))
	}
	if len(plans) > 0 && len(o.KeepLabels) == 0 {
		warnings = append(warnings, "the copies keep no label a NetworkPolicy may select: they are isolated only by policies selecting "+LabelForensicCopyOf+" (set keep_labels: [quarantine] to reuse the quarantine policy)")
	}
	summary := fmt.Sprintf("create %s in %s (labels stripped but %s, node unassigned, originals untouched)", copies(len(plans)), ns, LabelForensicCopyOf)
	if len(exist) > 0 {
		summary += fmt.Sprintf("; %d already exist", len(exist))
	}
	return &action.Plan{
		Summary:  summary,
		Targets:  action.Abbreviate(targets, 20),
		Count:    len(plans),
		Noop:     len(plans) == 0,
		Warnings: warnings,
		State:    plans,
	}, nil
}

// copies is "1 forensic copy", "3 forensic copies".
func copies(n int) string {
	if n == 1 {
		return "1 forensic copy"
	}
	return fmt.Sprintf("%d forensic copies", n)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (d DebugCopy) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	plans := plan.State.([]copyPlan)
	ns := p.String("namespace")
	dry := env.DryRun == action.DryRunServer
	var store *evidence.Store
	if !dry {
		if store, err = env.Evidence(); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
	}
	var mu sync.Mutex
	var created []copiedPodID
	var failed []action.Failure
	env.Progress.Start(int64(len(plans)), "copies")
	action.ForEach(ctx, Workers, len(plans), func(i int) {
		pl := plans[i]
		pods := c.Core.CoreV1().Pods(ns)
		got, made, err := createOwn(ctx, func() (*corev1.Pod, error) {
			return pods.Create(ctx, pl.Copy, metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)})
		}, func() (*corev1.Pod, error) {
			return pods.Get(ctx, pl.Copy.Name, metav1.GetOptions{})
		}, func(cur *corev1.Pod) bool {
			return cur.Annotations["irctl.dev/forensic-copy-of-uid"] == string(pl.Original.UID) && cur.Annotations[AnnoIncident] == pl.Copy.Annotations[AnnoIncident]
		}, dry)
		if err == nil && made && !dry {
			err = recordCopy(store, c, &pl.Original, got)
		}
		env.Progress.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, action.Failure{Target: ns + "/" + pl.Copy.Name, Error: kube.Short(err)})
			return
		}
		if made {
			created = append(created, copiedPodID{Name: got.Name, UID: got.UID})
		}
	})
	sort.Slice(created, func(i, j int) bool { return created[i].Name < created[j].Name })
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	undo, _ := json.Marshal(copyUndo{Namespace: ns, Copies: created})
	names := make([]string, len(created))
	for i, x := range created {
		names[i] = x.Name
	}
	summary := fmt.Sprintf("created %s in %s: %s; originals and their specs saved as evidence under forensic-copies/", copies(len(created)), ns, strings.Join(names, ", "))
	if dry {
		summary = fmt.Sprintf("server dry run: the API server accepted %s in %s; nothing was created", copies(len(created)), ns)
	}
	return &action.Result{Summary: summary, Changed: len(created), Failed: failed, Undo: undo}, ctx.Err()
}

// recordCopy saves the original pod as it was copied, and the copy, as
// evidence.
func recordCopy(store *evidence.Store, c *kube.Clients, orig, cp *corev1.Pod) error {
	o := orig.DeepCopy()
	o.APIVersion, o.Kind = "v1", "Pod"
	a, err := yaml.Marshal(o)
	if err != nil {
		return err
	}
	cp = cp.DeepCopy()
	cp.APIVersion, cp.Kind = "v1", "Pod"
	b, err := yaml.Marshal(cp)
	if err != nil {
		return err
	}
	body := append(append(a, "---\n"...), b...)
	_, err = store.WriteFile(fmt.Sprintf("forensic-copies/%s/%s.yaml", orig.Namespace, orig.Name), evidence.Source{
		Kind: evidence.KindKubernetes, Server: c.Config.Host,
		Objects: []evidence.Object{podObject(orig), podObject(cp)},
		Note:    "the original pod as copied, then its forensic copy as created",
	}, body, evidence.Extra{})
	return err
}

// Undo deletes the copies a run created (a UID precondition spares a pod
// recreated under the same name); a copy already gone counts as done.
func (DebugCopy) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[copyUndo](env, raw)
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	var failed []action.Failure
	deleted := 0
	for _, x := range u.Copies {
		uid := x.UID
		pods := c.Core.CoreV1().Pods(u.Namespace)
		// A delete whose response is lost is read back: gone is done.
		err := kube.Write(ctx, func() error {
			return pods.Delete(ctx, x.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, DryRun: kube.DryRunOpt(dry)})
		}, func() (bool, error) {
			cur, err := pods.Get(ctx, x.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) && !dry:
				return true, nil
			case err == nil && cur.UID != uid:
				return false, errReplaced
			}
			return false, err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			failed = append(failed, action.Failure{Target: u.Namespace + "/" + x.Name, Error: kube.Short(err)})
			continue
		}
		deleted++
	}
	return &action.Result{Summary: fmt.Sprintf("deleted %s in %s (their evidence records stay)", copies(deleted), u.Namespace), Changed: deleted, Failed: failed}, ctx.Err()
}
