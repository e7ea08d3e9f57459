package kubeaction

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// IncidentLabel marks objects irctl created for an incident.
const IncidentLabel = "irctl.dev/incident"

// Job runs a scanner Job (the cluster compromise runbook's trivy scan)
// from a manifest in the runbook, as a ServiceAccount of its own that may
// only read what the step lists, waits for it, and saves its logs and
// final status as evidence.
type Job struct{}

const defaultJobDeadline = 10 * time.Minute

func (Job) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.job",
		Description: "Run a Job from an inline manifest with a pinned image, as its own ServiceAccount granted only get/list/watch " +
			"on the listed resources, with a deadline; wait for it, save its logs and final status as evidence; the step fails if the Job fails.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace the Job runs in"},
			{Name: "manifest", Type: runbook.String, Required: true, Description: "the batch/v1 Job, as YAML"},
			{Name: "read", Type: runbook.Strings, Description: "resources the Job may get/list/watch, as resource or resource.group (e.g. pods, deployments.apps)"},
			{Name: "cluster_wide", Type: runbook.Bool, Description: "grant the reads in every namespace (ClusterRole) rather than only the Job's own"},
			{Name: "deadline", Type: runbook.Duration, Default: defaultJobDeadline, Description: "activeDeadlineSeconds of the Job (a smaller one in the manifest is kept)"},
			{Name: "allow_mutable_tag", Type: runbook.Bool, Description: "run an image given by tag rather than digest (otherwise refused)"},
		},
		Validate: func(p runbook.Params) error { _, err := jobParams(p, ""); return err },
	}
}

type jobSpec struct {
	job         *batchv1.Job
	rules       []rbacv1.PolicyRule
	clusterWide bool
	deadline    time.Duration
	warnings    []string
}

// jobParams reads and checks the params in one place and builds the Job.
func jobParams(p runbook.Params, incident string) (*jobSpec, error) {
	s := &jobSpec{deadline: p.Duration("deadline"), clusterWide: p.Bool("cluster_wide")}
	if s.deadline < time.Second {
		return nil, fmt.Errorf("deadline %s: want at least 1s", s.deadline)
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(p.String("manifest")), &job); err != nil {
		return nil, fmt.Errorf("manifest: %v", err)
	}
	if job.Kind != "Job" || job.APIVersion != "batch/v1" || job.Name == "" {
		return nil, fmt.Errorf("manifest: want apiVersion batch/v1, kind Job and a metadata.name")
	}
	if job.Namespace != "" && job.Namespace != p.String("namespace") {
		return nil, fmt.Errorf("manifest: namespace %q differs from the step's namespace %q", job.Namespace, p.String("namespace"))
	}
	if job.Spec.Template.Spec.ServiceAccountName != "" {
		return nil, fmt.Errorf("manifest: serviceAccountName is set; the step creates the Job's own ServiceAccount")
	}
	for _, c := range append(job.Spec.Template.Spec.InitContainers, job.Spec.Template.Spec.Containers...) {
		if !strings.Contains(c.Image, "@sha256:") {
			msg := fmt.Sprintf("container %s: image %q is not pinned by digest: what runs can change under the same tag", c.Name, c.Image)
			if !p.Bool("allow_mutable_tag") {
				return nil, fmt.Errorf("%s (pin it as image@sha256:..., or set allow_mutable_tag)", msg)
			}
			s.warnings = append(s.warnings, msg)
		}
	}
	for _, r := range p.Strings("read") {
		res, group, _ := strings.Cut(r, ".")
		if res == "" || res == "*" || group == "*" {
			return nil, fmt.Errorf("read %q: want resource or resource.group, no wildcards", r)
		}
		if res == "secrets" && group == "" {
			s.warnings = append(s.warnings, "the Job may read Secrets: their values, not only their names")
		}
		s.rules = append(s.rules, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{res}, Verbs: []string{"get", "list", "watch"}})
	}
	job.Namespace = p.String("namespace")
	sa := "irctl-" + job.Name
	job.Labels = withIncident(job.Labels, incident)
	job.Spec.Template.Labels = withIncident(job.Spec.Template.Labels, incident)
	job.Spec.Template.Spec.ServiceAccountName = sa
	if job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds > int64(s.deadline.Seconds()) {
		d := int64(s.deadline.Seconds())
		job.Spec.ActiveDeadlineSeconds = &d
	}
	s.job = &job
	return s, nil
}

func withIncident(m map[string]string, incident string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range managedByLabel {
		out[k] = v
	}
	if incident != "" {
		out[IncidentLabel] = incident
	}
	return out
}

func (Job) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	rbacNS, role, binding := ns, "roles", "rolebindings"
	if p.Bool("cluster_wide") {
		rbacNS, role, binding = "", "clusterroles", "clusterrolebindings"
	}
	return []kube.Permission{
		{Verb: "get", Resource: "serviceaccounts", Namespace: ns},
		{Verb: "create", Resource: "serviceaccounts", Namespace: ns},
		{Verb: "create", Group: rbacv1.GroupName, Resource: role, Namespace: rbacNS},
		{Verb: "create", Group: rbacv1.GroupName, Resource: binding, Namespace: rbacNS},
		// Granting reads the responder may not hold itself.
		{Verb: "bind", Group: rbacv1.GroupName, Resource: role, Namespace: rbacNS},
		{Verb: "create", Group: batchv1.GroupName, Resource: "jobs", Namespace: ns},
		{Verb: "get", Group: batchv1.GroupName, Resource: "jobs", Namespace: ns},
		{Verb: "list", Resource: "pods", Namespace: ns},
		{Verb: "get", Resource: "pods", Subresource: "log", Namespace: ns},
	}
}

func (Job) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	s, err := jobParams(p, env.Incident)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, name := s.job.Namespace, s.job.Name
	if _, err := c.Core.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil, fmt.Errorf("Job %s/%s already exists: delete it or rename the Job in the manifest", ns, name)
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get Job %s/%s: %s", ns, name, kube.Short(err))
	}
	// A ServiceAccount of that name may hold grants irctl did not give:
	// never run the scanner as it.
	sa := s.job.Spec.Template.Spec.ServiceAccountName
	if _, err := c.Core.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{}); err == nil {
		return nil, fmt.Errorf("ServiceAccount %s/%s already exists (an earlier run?): delete it, its Role and RoleBinding, or rename the Job", ns, sa)
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get ServiceAccount %s/%s: %s", ns, sa, kube.Short(err))
	}
	scope := "in " + ns
	if s.clusterWide {
		scope = "in every namespace"
	}
	reads := "nothing"
	if len(p.Strings("read")) > 0 {
		reads = strings.Join(p.Strings("read"), ", ")
	}
	return &action.Plan{
		Summary: fmt.Sprintf("run Job %s/%s (deadline %s) as ServiceAccount %s, which may read %s %s; save its logs and status as evidence",
			ns, name, time.Duration(*s.job.Spec.ActiveDeadlineSeconds)*time.Second, s.job.Spec.Template.Spec.ServiceAccountName, reads, scope),
		Targets:  []string{"job/" + ns + "/" + name},
		Count:    4,
		Warnings: s.warnings,
	}, nil
}

func (Job) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	s, err := jobParams(p, env.Incident)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	if err := createJobRBAC(ctx, c, s, env.Incident, dry); err != nil {
		return nil, err
	}
	job := s.job
	where := job.Namespace + "/" + job.Name
	opts := metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	created, err := c.Core.BatchV1().Jobs(job.Namespace).Create(ctx, job, opts)
	if err != nil {
		return nil, fmt.Errorf("create Job %s: %s", where, kube.Short(err))
	}
	irr := "the Job, its ServiceAccount and grants stay, labelled " + IncidentLabel + ", for the record"
	if dry {
		return &action.Result{Summary: "would run Job " + where, Changed: 4, Irreversible: irr}, nil
	}
	final, waitErr := waitJob(ctx, c, created, time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second+time.Minute)
	if final == nil {
		final = created
	}
	store, err := env.Evidence()
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	logNote, err := saveJobEvidence(ctx, c, store, final)
	if err != nil {
		return nil, err
	}
	if waitErr != nil {
		return nil, fmt.Errorf("Job %s: %v; its status and logs are saved as evidence", where, waitErr)
	}
	return &action.Result{Summary: fmt.Sprintf("Job %s completed (%d succeeded); status and logs saved as evidence%s", where, final.Status.Succeeded, logNote),
		Changed: 4, Irreversible: irr}, nil
}

// createJobRBAC creates the Job's ServiceAccount, its read-only role and
// the binding. An existing ServiceAccount is reused only if irctl made it.
func createJobRBAC(ctx context.Context, c *kube.Clients, s *jobSpec, incident string, dry bool) error {
	ns, sa := s.job.Namespace, s.job.Spec.Template.Spec.ServiceAccountName
	labels := withIncident(nil, incident)
	opts := metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	meta := metav1.ObjectMeta{Name: sa, Namespace: ns, Labels: labels}
	if _, err := c.Core.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: boolPtr(len(s.rules) > 0)}, opts); err != nil {
		return fmt.Errorf("create ServiceAccount %s/%s: %s", ns, sa, kube.Short(err))
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}
	rbac := c.Core.RbacV1()
	var err error
	if s.clusterWide {
		cm := metav1.ObjectMeta{Name: sa + "-" + ns, Labels: labels}
		if _, err = rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: cm, Rules: s.rules}, opts); err == nil {
			_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: cm, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cm.Name}}, opts)
		}
	} else {
		if _, err = rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: s.rules}, opts); err == nil {
			_, err = rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa}}, opts)
		}
	}
	if err != nil {
		return fmt.Errorf("grant ServiceAccount %s/%s its reads: %s", ns, sa, kube.Short(err))
	}
	return nil
}

func boolPtr(b bool) *bool { return &b }

// waitJob waits for the Job's Complete or Failed condition.
func waitJob(ctx context.Context, c *kube.Clients, job *batchv1.Job, timeout time.Duration) (*batchv1.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := job
	for {
		j, err := c.Core.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err == nil {
			last = j
			for _, cond := range j.Status.Conditions {
				if cond.Status != corev1.ConditionTrue {
					continue
				}
				switch cond.Type {
				case batchv1.JobComplete:
					return j, nil
				case batchv1.JobFailed:
					return j, fmt.Errorf("failed: %s: %s", cond.Reason, cond.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("not finished within %s (%d active, %d failed)", timeout, last.Status.Active, last.Status.Failed)
		case <-time.After(time.Second):
		}
	}
}

// saveJobEvidence saves the Job's final status and its pods' logs. Logs a
// node cannot serve are noted, not an error: the status is the verdict.
func saveJobEvidence(ctx context.Context, c *kube.Clients, store *evidence.Store, job *batchv1.Job) (string, error) {
	obj := evidence.Object{APIVersion: "batch/v1", Kind: "Job", Namespace: job.Namespace, Name: job.Name, UID: string(job.UID), ResourceVersion: job.ResourceVersion}
	job.ManagedFields = nil
	body, _ := yaml.Marshal(job)
	base := "jobs/" + evidence.SafeName(job.Namespace+"-"+job.Name)
	if _, err := store.WriteFile(base+"/job.yaml", evidence.Source{Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: []evidence.Object{obj}}, body, evidence.Extra{}); err != nil {
		return "", err
	}
	pods, err := c.Core.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job.Name})
	if err != nil {
		return "; its pods could not be listed for logs: " + kube.Short(err), nil
	}
	var missing []string
	saved := 0
	for _, pod := range pods.Items {
		for _, ctr := range pod.Spec.Containers {
			data, err := podLog(ctx, c, pod, ctr.Name)
			if err != nil {
				missing = append(missing, pod.Name+"/"+ctr.Name+": "+kube.Short(err))
				continue
			}
			src := evidence.Source{Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: []evidence.Object{{
				APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), ResourceVersion: pod.ResourceVersion, Container: ctr.Name}}}
			if _, err := store.WriteFile(base+"/"+evidence.SafeName(pod.Name+"-"+ctr.Name)+".log", src, data, evidence.Extra{}); err != nil {
				return "", err
			}
			saved++
		}
	}
	note := fmt.Sprintf("; %d container log(s) saved", saved)
	if len(missing) > 0 {
		note += fmt.Sprintf("; logs unavailable for %s", strings.Join(missing, "; "))
	}
	return note, nil
}

func podLog(ctx context.Context, c *kube.Clients, pod corev1.Pod, container string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	limit := int64(DefaultLogLimit)
	rc, err := c.Stream.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
