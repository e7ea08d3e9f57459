package kubeaction

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/metadata"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// SecretsRotated checks that Secrets were rotated for this incident and
// that every pod reading them started after: a rotated Secret that a pod
// still holds in its environment has not taken the old value out of use.
type SecretsRotated struct{}

var secretsGR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

func (SecretsRotated) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.secrets-rotated",
		Description: "Check that Secrets were rotated for this incident since it was declared (irctl's rotated-for-incident and rotated-at " +
			"annotations) and that every pod that reads them (env, envFrom, volumes) started after the rotation; a table of Secrets, " +
			"their consumers and stale pods. Fails naming each Secret not rotated and each stale pod. Reads metadata only, never values.",
		Uses:    []string{runbook.UsesKubernetes},
		Timeout: 2 * time.Minute,
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the Secrets and their consumers"},
			// By name only: finding Secrets by a selector needs list on
			// Secrets, which grants reading every value in the namespace
			// and which the responder role does not give.
			{Name: "names", Type: runbook.Strings, Required: true, Description: "the Secrets that must have been rotated"},
			{Name: "ignore", Type: runbook.Strings, Description: "consumers (kind/name: statefulset/postgres, deployment/x, pod/y) whose copy of the value needs no restart, " +
				"e.g. a PostgreSQL server that reads POSTGRES_PASSWORD only when it initialises its data directory"},
		},
		Validate: func(p runbook.Params) error { return rotatedParams(p) },
	}
}

func rotatedParams(p runbook.Params) error {
	names := p.Strings("names")
	if len(names) == 0 {
		return fmt.Errorf("names is empty: name the Secrets that must have been rotated")
	}
	for _, n := range names {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("names: %q: %s", n, errs[0])
		}
	}
	for _, n := range p.Strings("ignore") {
		kind, name, ok := strings.Cut(n, "/")
		if !ok || !ignorableKinds[kind] || validation.IsDNS1123Subdomain(name) != nil {
			return fmt.Errorf("ignore: %q: want kind/name, kind one of deployment, statefulset, daemonset, pod", n)
		}
	}
	return nil
}

var ignorableKinds = map[string]bool{"deployment": true, "statefulset": true, "daemonset": true, "pod": true}

func (SecretsRotated) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	perms := []kube.Permission{{Verb: "list", Resource: "pods", Namespace: ns}, {Verb: "get", Resource: "secrets", Namespace: ns}}
	for _, r := range []string{"deployments", "statefulsets", "daemonsets"} {
		perms = append(perms, kube.Permission{Verb: "list", Group: "apps", Resource: r, Namespace: ns})
	}
	return perms
}

func (SecretsRotated) Plan(_ context.Context, _ *action.Env, p runbook.Params) (*action.Plan, error) {
	if err := rotatedParams(p); err != nil {
		return nil, err
	}
	what := "Secrets " + strings.Join(p.Strings("names"), ", ")
	return &action.Plan{Summary: fmt.Sprintf("check that %s in namespace %s were rotated for this incident and that every pod reading them started since (read-only)", what, p.String("namespace"))}, nil
}

// rotation is what one Secret's check found.
type rotation struct {
	name      string
	rotatedAt time.Time
	problem   string   // why it does not count as rotated
	consumers []string // workloads and pods that read it
	stale     []string // pods started before the rotation
	evidence  int      // quarantined pods and forensic copies, not counted
}

// Apply checks every Secret and fails naming what is not rotated and
// which pods still run with an old value; the table goes with the error.
func (SecretsRotated) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	if env.Declared == nil {
		return nil, fmt.Errorf("the incident's declaration time is not known: run within an incident (--incident)")
	}
	declared, err := env.Declared()
	if err != nil {
		return nil, fmt.Errorf("the incident's declaration time: %w", err)
	}
	meta, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	ns := p.String("namespace")
	secrets, err := secretMetas(ctx, meta, ns, p.Strings("names"))
	if err != nil {
		return nil, err
	}
	pods, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
	}
	templates, err := podTemplates(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	ignore := map[string]bool{}
	for _, n := range p.Strings("ignore") {
		ignore[n] = true
	}
	var rs []rotation
	for _, s := range secrets {
		r := rotation{name: s.Name}
		switch {
		case s.missing:
			r.problem = "not found"
		default:
			r.rotatedAt, r.problem = rotatedFor(s.annotations, env.Incident, declared)
		}
		for _, t := range templates {
			if podSpecReads(&t.spec, s.Name) {
				r.consumers = append(r.consumers, consumerName(t.name, ignore))
			}
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if !podSpecReads(&pod.Spec, s.Name) || !podRunsOrWill(pod) {
				continue
			}
			if isolatedEvidence(pod, env.Incident) {
				r.evidence++
				continue
			}
			owner := workloadOfPod(pod)
			if owner == "" {
				r.consumers = append(r.consumers, consumerName("pod/"+pod.Name, ignore))
			}
			if ignore[owner] || ignore["pod/"+pod.Name] {
				continue
			}
			// Start times are whole seconds: a pod started in the
			// rotation's second counts as started after it (as
			// k8s.rollout-restart's after_rotation_of does).
			if r.problem == "" && podStarted(pod).Before(r.rotatedAt.Truncate(time.Second)) {
				r.stale = append(r.stale, fmt.Sprintf("%s (started %s)", pod.Name, podStarted(pod).UTC().Format(time.RFC3339)))
			}
		}
		rs = append(rs, r)
	}
	return rotatedResult(rs, ns, declared)
}

func rotatedResult(rs []rotation, ns string, declared time.Time) (*action.Result, error) {
	table := &action.Table{Columns: []string{"SECRET", "ROTATED AT", "CONSUMERS", "STALE PODS"}, Total: len(rs)}
	var problems []string
	stale, evidence := 0, 0
	for _, r := range rs {
		evidence += r.evidence
		at := r.problem
		if at == "" {
			at = r.rotatedAt.UTC().Format(time.RFC3339)
		} else {
			problems = append(problems, fmt.Sprintf("Secret %s/%s %s", ns, r.name, r.problem))
		}
		cons := strings.Join(r.consumers, ", ")
		if cons == "" {
			cons = "none"
		}
		st := strings.Join(r.stale, ", ")
		if st == "" {
			st = "none"
		}
		if len(r.stale) > 0 {
			stale += len(r.stale)
			problems = append(problems, fmt.Sprintf("pods reading Secret %s/%s started before its rotation: %s", ns, r.name, strings.Join(action.Abbreviate(r.stale, 10), ", ")))
		}
		table.Rows = append(table.Rows, []string{r.name, at, cons, st})
	}
	summary := fmt.Sprintf("%d Secret(s) in %s checked against the incident declared at %s: %d not rotated, %d stale pod(s)",
		len(rs), ns, declared.UTC().Format(time.RFC3339), countProblems(rs), stale)
	if evidence > 0 {
		summary += fmt.Sprintf("; %d reading(s) by quarantined pods or forensic copies not counted (isolated evidence, kept as they were)", evidence)
	}
	res := &action.Result{Summary: summary, Table: table}
	if len(problems) > 0 {
		return res, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return res, nil
}

func countProblems(rs []rotation) int {
	n := 0
	for _, r := range rs {
		if r.problem != "" {
			n++
		}
	}
	return n
}

// rotatedFor reads a Secret's rotation annotations: rotated for this
// incident, at a time no earlier than its declaration (rotated-at is
// whole seconds; the declaration is compared at the same precision).
func rotatedFor(ann map[string]string, incident string, declared time.Time) (time.Time, string) {
	for_ := ann[RotatedForIncident]
	switch {
	case for_ == "":
		return time.Time{}, "was not rotated by irctl (no " + RotatedForIncident + " annotation)"
	case for_ != incident:
		return time.Time{}, fmt.Sprintf("was rotated for incident %s, not %s", for_, incident)
	}
	raw := ann[RotatedAt]
	if raw == "" {
		return time.Time{}, "has no " + RotatedAt + " annotation: when it was rotated is unknown"
	}
	at, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return time.Time{}, fmt.Sprintf("has an unreadable %s annotation %q", RotatedAt, raw)
	}
	if at.Before(declared.Truncate(time.Second)) {
		return at, fmt.Sprintf("was rotated at %s, before the incident was declared (%s)", at.UTC().Format(time.RFC3339), declared.UTC().Format(time.RFC3339))
	}
	return at, ""
}

type secretMeta struct {
	Name        string
	annotations map[string]string
	missing     bool
}

// secretMetas reads the Secrets' metadata only: their values never reach
// irctl.
func secretMetas(ctx context.Context, meta metadata.Interface, ns string, names []string) ([]secretMeta, error) {
	res := meta.Resource(secretsGR).Namespace(ns)
	var out []secretMeta
	for _, n := range names {
		s, err := res.Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			out = append(out, secretMeta{Name: n, missing: true})
		case err != nil:
			return nil, fmt.Errorf("get Secret %s/%s: %s", ns, n, kube.Short(err))
		default:
			out = append(out, secretMeta{Name: n, annotations: s.Annotations})
		}
	}
	return out, nil
}

type namedTemplate struct {
	name string // kind/name
	spec corev1.PodSpec
}

// podTemplates lists the namespace's Deployments, StatefulSets and
// DaemonSets, for the consumers column: a workload scaled to zero still
// reads the Secret when it comes back.
func podTemplates(ctx context.Context, c *kube.Clients, ns string) ([]namedTemplate, error) {
	apps := c.Core.AppsV1()
	var out []namedTemplate
	deps, err := apps.Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list deployments in %s: %s", ns, kube.Short(err))
	}
	for _, d := range deps.Items {
		out = append(out, namedTemplate{"deployment/" + d.Name, d.Spec.Template.Spec})
	}
	sts, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list statefulsets in %s: %s", ns, kube.Short(err))
	}
	for _, s := range sts.Items {
		out = append(out, namedTemplate{"statefulset/" + s.Name, s.Spec.Template.Spec})
	}
	dss, err := apps.DaemonSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list daemonsets in %s: %s", ns, kube.Short(err))
	}
	for _, d := range dss.Items {
		out = append(out, namedTemplate{"daemonset/" + d.Name, d.Spec.Template.Spec})
	}
	return out, nil
}

// podSpecReads reports whether a pod spec reads Secret name: an env var,
// envFrom, a secret volume or a projected volume source (in any
// container, init and ephemeral ones included).
func podSpecReads(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	reads := func(env []corev1.EnvVar, from []corev1.EnvFromSource) bool {
		for _, e := range env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
		for _, f := range from {
			if f.SecretRef != nil && f.SecretRef.Name == name {
				return true
			}
		}
		return false
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if reads(c.Env, c.EnvFrom) {
			return true
		}
	}
	for _, c := range spec.EphemeralContainers {
		if reads(c.Env, c.EnvFrom) {
			return true
		}
	}
	return false
}

// isolatedEvidence is a pod quarantined for this incident, or a forensic
// copy made for it: kept with the values they started with on purpose,
// behind the isolation policy, so a rotation does not reach them and need
// not. Both marks name the incident, so a pod merely labelled like a copy
// is still checked.
func isolatedEvidence(p *corev1.Pod, incident string) bool {
	return isolatedEvidenceMeta(p.Labels, p.Annotations, incident)
}

func isolatedEvidenceMeta(labels, annotations map[string]string, incident string) bool {
	if incident == "" {
		return false
	}
	if _, copied := labels[LabelForensicCopyOf]; copied && annotations[AnnoIncident] == incident {
		return true
	}
	return annotations[QuarantinedForIncident] == incident
}

// podRunsOrWill leaves out pods that will never read the value again:
// finished ones and those being deleted (a rollout's old pods, on their
// way out).
func podRunsOrWill(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// workloadOfPod names the Deployment, StatefulSet or DaemonSet a pod
// belongs to (kind/name, as the consumers column lists them), or "" for
// a pod of its own. A ReplicaSet's Deployment is its name without the
// pod-template-hash suffix the Deployment controller adds.
func workloadOfPod(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "StatefulSet", "DaemonSet":
			return strings.ToLower(o.Kind) + "/" + o.Name
		case "ReplicaSet":
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return "deployment/" + strings.TrimSuffix(o.Name, "-"+h)
			}
		}
	}
	return ""
}

func consumerName(name string, ignore map[string]bool) string {
	if ignore[name] {
		return name + " (ignored)"
	}
	return name
}

// podStarted is when the pod's containers last read their environment:
// the earliest start of its running containers (a container restarted
// after the rotation reads the new value), else the pod's start time. A
// pod not started yet reads the new value: it counts as started now.
func podStarted(p *corev1.Pod) time.Time {
	var earliest time.Time
	all := len(p.Status.ContainerStatuses) > 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			all = false
			break
		}
		if t := cs.State.Running.StartedAt.Time; earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	if all && !earliest.IsZero() {
		return earliest
	}
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return time.Now()
}
