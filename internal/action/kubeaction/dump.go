package kubeaction

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Dump saves the cluster state an investigation needs as YAML evidence,
// one file per kind, each listing the UID and resourceVersion of every
// object it holds: the cluster-compromise runbook's "collect evidence" and "analyze attack
// vector" commands (describe pods, images, persistence, RBAC changes,
// recent deployments, service accounts in use).
type Dump struct{}

// DumpKinds are the files a dump can write, in the order written.
var DumpKinds = []string{
	"pods", "pod-descriptions", "events", "images",
	"cronjobs", "jobs", "daemonsets", "deployments", "serviceaccounts",
	"roles", "rolebindings", "clusterroles", "clusterrolebindings", "rbac-events",
}

func (Dump) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.dump",
		Timeout: 30 * time.Minute, // the step's default deadline
		Description: "Save cluster state as YAML evidence, one file per kind: pods (and describe-like text with their events), events, container images, " +
			"cronjobs/jobs/daemonsets (persistence), deployments by creation time, service accounts in use, RBAC objects and RBAC events.",
		Uses: []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "kinds", Type: runbook.Strings, Default: DumpKinds, Description: "what to dump; an empty list dumps every kind"},
			{Name: "namespace", Type: runbook.String, Description: "only this namespace (unset: all namespaces; cluster roles and bindings are always dumped whole)"},
		},
		Validate: func(p runbook.Params) error {
			_, err := dumpKindsOf(p)
			return err
		},
	}
}

func dumpKindsOf(p runbook.Params) ([]string, error) {
	want := p.Strings("kinds")
	if len(want) == 0 {
		return DumpKinds, nil
	}
	known := map[string]bool{}
	for _, k := range DumpKinds {
		known[k] = true
	}
	for _, k := range want {
		if !known[k] {
			return nil, fmt.Errorf("kinds: unknown kind %q (want some of %s)", k, strings.Join(DumpKinds, ", "))
		}
	}
	return want, nil
}

// dumpResources are the API resources each kind reads.
var dumpResources = map[string][]struct{ group, resource string }{
	"pods":                {{"", "pods"}},
	"pod-descriptions":    {{"", "pods"}, {"", "events"}},
	"events":              {{"", "events"}},
	"images":              {{"", "pods"}},
	"cronjobs":            {{batchv1.GroupName, "cronjobs"}},
	"jobs":                {{batchv1.GroupName, "jobs"}},
	"daemonsets":          {{appsv1.GroupName, "daemonsets"}},
	"deployments":         {{appsv1.GroupName, "deployments"}},
	"serviceaccounts":     {{"", "pods"}, {"", "serviceaccounts"}},
	"roles":               {{rbacv1.GroupName, "roles"}},
	"rolebindings":        {{rbacv1.GroupName, "rolebindings"}},
	"clusterroles":        {{rbacv1.GroupName, "clusterroles"}},
	"clusterrolebindings": {{rbacv1.GroupName, "clusterrolebindings"}},
	"rbac-events":         {{"", "events"}},
}

func (Dump) Permissions(p runbook.Params) []kube.Permission {
	kinds, _ := dumpKindsOf(p)
	var out []kube.Permission
	for _, k := range kinds {
		for _, r := range dumpResources[k] {
			ns := p.String("namespace")
			if r.resource == "clusterroles" || r.resource == "clusterrolebindings" {
				ns = ""
			}
			out = append(out, kube.Permission{Verb: "list", Group: r.group, Resource: r.resource, Namespace: ns})
		}
	}
	return out
}

func (Dump) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	kinds, err := dumpKindsOf(p)
	if err != nil {
		return nil, err
	}
	if _, err := env.Kube(); err != nil {
		return nil, err
	}
	where := "all namespaces"
	if ns := p.String("namespace"); ns != "" {
		where = "namespace " + ns
	}
	targets := make([]string, len(kinds))
	for i, k := range kinds {
		targets[i] = "dump/" + k + dumpExt(k)
	}
	return &action.Plan{
		Summary: fmt.Sprintf("save %d kind(s) of cluster state from %s as evidence, one file per kind%s", len(kinds), where, collectNote(env)),
		Targets: targets,
		State:   kinds,
	}, nil
}

func dumpExt(kind string) string {
	if kind == "pod-descriptions" {
		return ".txt"
	}
	return ".yaml"
}

// clusterState is what a dump has read so far; lists are read once and
// shared by the kinds derived from them.
type clusterState struct {
	c  *kube.Clients
	ns string

	pods     []corev1.Pod
	podsRV   string
	podsErr  error
	podsRead bool

	events     []corev1.Event
	eventsRV   string
	eventsErr  error
	eventsRead bool
}

func (s *clusterState) getPods(ctx context.Context) ([]corev1.Pod, string, error) {
	if !s.podsRead {
		s.podsRead = true
		s.pods, s.podsRV, s.podsErr = listAll(ctx, func(o metav1.ListOptions) ([]corev1.Pod, metav1.ListMeta, error) {
			l, err := s.c.Core.CoreV1().Pods(s.ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		sort.Slice(s.pods, func(i, j int) bool { return objKey(&s.pods[i].ObjectMeta) < objKey(&s.pods[j].ObjectMeta) })
		for i := range s.pods {
			s.pods[i].APIVersion, s.pods[i].Kind = "v1", "Pod"
		}
	}
	return s.pods, s.podsRV, s.podsErr
}

func (s *clusterState) getEvents(ctx context.Context) ([]corev1.Event, string, error) {
	if !s.eventsRead {
		s.eventsRead = true
		s.events, s.eventsRV, s.eventsErr = listAll(ctx, func(o metav1.ListOptions) ([]corev1.Event, metav1.ListMeta, error) {
			l, err := s.c.Core.CoreV1().Events(s.ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		sort.SliceStable(s.events, func(i, j int) bool { return eventTime(&s.events[i]).Before(eventTime(&s.events[j])) })
		for i := range s.events {
			s.events[i].APIVersion, s.events[i].Kind = "v1", "Event"
		}
	}
	return s.events, s.eventsRV, s.eventsErr
}

func objKey(m *metav1.ObjectMeta) string { return m.Namespace + "/" + m.Name }

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// listAll pages through a list 500 objects at a time; the list's
// resourceVersion is that of the first page, which the rest continue.
func listAll[T any](ctx context.Context, list func(metav1.ListOptions) ([]T, metav1.ListMeta, error)) ([]T, string, error) {
	var out []T
	opts := metav1.ListOptions{Limit: 500}
	rv := ""
	for {
		items, meta, err := list(opts)
		if err != nil {
			return nil, "", err
		}
		out = append(out, items...)
		if rv == "" {
			rv = meta.ResourceVersion
		}
		if meta.Continue == "" || ctx.Err() != nil {
			return out, rv, ctx.Err()
		}
		opts.Continue = meta.Continue
	}
}

// dumpFile is one evidence file's content and provenance.
type dumpFile struct {
	body    []byte
	objects []evidence.Object
	listRV  string
	note    string
}

func (d Dump) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, store, err := collector(env)
	if err != nil {
		return nil, err
	}
	st := &clusterState{c: c, ns: p.String("namespace")}
	var failed []action.Failure
	var names []string
	objects := 0
	for _, kind := range plan.State.([]string) {
		if ctx.Err() != nil {
			break
		}
		f, err := dumpKind(ctx, st, kind)
		if err != nil {
			failed = append(failed, action.Failure{Target: kind, Error: kube.Short(err)})
			continue
		}
		e, err := store.WriteFile("dump/"+kind+dumpExt(kind), evidence.Source{
			Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: f.objects, ListResourceVersion: f.listRV, Note: f.note,
		}, f.body, evidence.Extra{})
		if err != nil {
			return nil, err
		}
		names = append(names, e.Name)
		objects += len(f.objects)
	}
	return &action.Result{
		Summary: fmt.Sprintf("saved %d dump file(s) covering %d object(s) as evidence: %s%s", len(names), objects, strings.Join(names, ", "), collectNote(env)),
		Failed:  failed,
	}, ctx.Err()
}

// dumpKind reads and renders one kind.
func dumpKind(ctx context.Context, st *clusterState, kind string) (*dumpFile, error) {
	c, ns := st.c, st.ns
	switch kind {
	case "pods":
		pods, rv, err := st.getPods(ctx)
		if err != nil {
			return nil, err
		}
		return yamlList(pods, rv, func(p *corev1.Pod) *metav1.ObjectMeta { return &p.ObjectMeta }, "v1", "Pod")
	case "events":
		events, rv, err := st.getEvents(ctx)
		if err != nil {
			return nil, err
		}
		return yamlList(events, rv, func(e *corev1.Event) *metav1.ObjectMeta { return &e.ObjectMeta }, "v1", "Event")
	case "rbac-events":
		events, rv, err := st.getEvents(ctx)
		if err != nil {
			return nil, err
		}
		f, err := yamlList(RBACEvents(events), rv, func(e *corev1.Event) *metav1.ObjectMeta { return &e.ObjectMeta }, "v1", "Event")
		if err == nil {
			f.note = "events about Roles, RoleBindings, ClusterRoles, ClusterRoleBindings, or mentioning rbac/role/binding"
		}
		return f, err
	case "pod-descriptions":
		pods, rv, err := st.getPods(ctx)
		if err != nil {
			return nil, err
		}
		events, _, err := st.getEvents(ctx)
		if err != nil {
			return nil, err
		}
		f := &dumpFile{body: DescribePods(pods, events), listRV: rv, note: "text in the manner of kubectl describe pods, with each pod's events"}
		for i := range pods {
			f.objects = append(f.objects, podObject(&pods[i]))
		}
		return f, nil
	case "images":
		pods, rv, err := st.getPods(ctx)
		if err != nil {
			return nil, err
		}
		return imagesFile(pods, rv)
	case "serviceaccounts":
		pods, _, err := st.getPods(ctx)
		if err != nil {
			return nil, err
		}
		sas, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]corev1.ServiceAccount, metav1.ListMeta, error) {
			l, err := c.Core.CoreV1().ServiceAccounts(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return serviceAccountsFile(pods, sas, rv)
	case "cronjobs":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]batchv1.CronJob, metav1.ListMeta, error) {
			l, err := c.Core.BatchV1().CronJobs(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *batchv1.CronJob) *metav1.ObjectMeta { return &x.ObjectMeta }, "batch/v1", "CronJob")
	case "jobs":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]batchv1.Job, metav1.ListMeta, error) {
			l, err := c.Core.BatchV1().Jobs(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *batchv1.Job) *metav1.ObjectMeta { return &x.ObjectMeta }, "batch/v1", "Job")
	case "daemonsets":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]appsv1.DaemonSet, metav1.ListMeta, error) {
			l, err := c.Core.AppsV1().DaemonSets(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *appsv1.DaemonSet) *metav1.ObjectMeta { return &x.ObjectMeta }, "apps/v1", "DaemonSet")
	case "deployments":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]appsv1.Deployment, metav1.ListMeta, error) {
			l, err := c.Core.AppsV1().Deployments(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		SortByCreation(items, func(d *appsv1.Deployment) *metav1.ObjectMeta { return &d.ObjectMeta })
		f, err := yamlList(items, rv, func(x *appsv1.Deployment) *metav1.ObjectMeta { return &x.ObjectMeta }, "apps/v1", "Deployment")
		if err == nil {
			f.note = "sorted by creationTimestamp, oldest first (the newest are last)"
		}
		return f, err
	case "roles":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]rbacv1.Role, metav1.ListMeta, error) {
			l, err := c.Core.RbacV1().Roles(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *rbacv1.Role) *metav1.ObjectMeta { return &x.ObjectMeta }, "rbac.authorization.k8s.io/v1", "Role")
	case "rolebindings":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]rbacv1.RoleBinding, metav1.ListMeta, error) {
			l, err := c.Core.RbacV1().RoleBindings(ns).List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *rbacv1.RoleBinding) *metav1.ObjectMeta { return &x.ObjectMeta }, "rbac.authorization.k8s.io/v1", "RoleBinding")
	case "clusterroles":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]rbacv1.ClusterRole, metav1.ListMeta, error) {
			l, err := c.Core.RbacV1().ClusterRoles().List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *rbacv1.ClusterRole) *metav1.ObjectMeta { return &x.ObjectMeta }, "rbac.authorization.k8s.io/v1", "ClusterRole")
	case "clusterrolebindings":
		items, rv, err := listAll(ctx, func(o metav1.ListOptions) ([]rbacv1.ClusterRoleBinding, metav1.ListMeta, error) {
			l, err := c.Core.RbacV1().ClusterRoleBindings().List(ctx, o)
			if err != nil {
				return nil, metav1.ListMeta{}, err
			}
			return l.Items, l.ListMeta, nil
		})
		if err != nil {
			return nil, err
		}
		return yamlList(items, rv, func(x *rbacv1.ClusterRoleBinding) *metav1.ObjectMeta { return &x.ObjectMeta }, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}
