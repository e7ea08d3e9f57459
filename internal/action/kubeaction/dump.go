package kubeaction

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

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
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	store, err := env.Evidence()
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
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

// SortByCreation orders objects by creationTimestamp, oldest first, then
// by namespace/name.
func SortByCreation[T any](items []T, meta func(*T) *metav1.ObjectMeta) {
	sort.SliceStable(items, func(i, j int) bool {
		a, b := meta(&items[i]), meta(&items[j])
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return objKey(a) < objKey(b)
	})
}

// yamlList renders items as a kubectl-style v1 List document, setting
// each item's apiVersion and kind (typed lists leave them empty), and
// records each object's identity.
func yamlList[T any](items []T, rv string, meta func(*T) *metav1.ObjectMeta, apiVersion, kind string) (*dumpFile, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: %q\n", rv)
	if len(items) == 0 {
		b.WriteString("items: []\n")
	} else {
		b.WriteString("items:\n")
	}
	f := &dumpFile{listRV: rv}
	for i := range items {
		m := meta(&items[i])
		y, err := yaml.Marshal(&items[i])
		if err != nil {
			return nil, err
		}
		y = setTypeMeta(y, apiVersion, kind)
		writeListItem(&b, y)
		f.objects = append(f.objects, evidence.Object{APIVersion: apiVersion, Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), ResourceVersion: m.ResourceVersion})
	}
	f.body = b.Bytes()
	return f, nil
}

var typeMetaLine = regexp.MustCompile(`(?m)^(apiVersion|kind): .*\n`)

// setTypeMeta puts apiVersion and kind first in an object's YAML, replacing
// any present.
func setTypeMeta(y []byte, apiVersion, kind string) []byte {
	y = typeMetaLine.ReplaceAll(y, nil)
	return append([]byte(fmt.Sprintf("apiVersion: %s\nkind: %s\n", apiVersion, kind)), y...)
}

// writeListItem indents one YAML document as an item of a list.
func writeListItem(b *bytes.Buffer, y []byte) {
	lines := strings.Split(strings.TrimRight(string(y), "\n"), "\n")
	for i, l := range lines {
		if i == 0 {
			b.WriteString("- ")
		} else if l != "" {
			b.WriteString("  ")
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
}

var rbacKinds = map[string]bool{"Role": true, "RoleBinding": true, "ClusterRole": true, "ClusterRoleBinding": true}
var rbacWords = regexp.MustCompile(`(?i)rbac|role|binding`)

// RBACEvents keeps the events about RBAC objects, or whose reason or
// message mentions rbac, role or binding (the cluster-compromise runbook: `get events -A | grep
// -E "rbac|role|binding"`).
func RBACEvents(events []corev1.Event) []corev1.Event {
	var out []corev1.Event
	for _, e := range events {
		if rbacKinds[e.InvolvedObject.Kind] || rbacWords.MatchString(e.Reason) || rbacWords.MatchString(e.Message) {
			out = append(out, e)
		}
	}
	return out
}

// ContainerImage is one container and its image.
type ContainerImage struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Init      bool   `json:"init,omitempty"`
	Image     string `json:"image"`
	ImageID   string `json:"imageID,omitempty"` // the digest the kubelet ran, when reported
}

func imagesFile(pods []corev1.Pod, rv string) (*dumpFile, error) {
	var list []ContainerImage
	f := &dumpFile{listRV: rv, note: "every container's image and, where the kubelet reported it, the image ID (digest) it ran"}
	for i := range pods {
		p := &pods[i]
		ids := map[string]string{}
		for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			ids[s.Name] = s.ImageID
		}
		for _, c := range p.Spec.InitContainers {
			list = append(list, ContainerImage{Namespace: p.Namespace, Pod: p.Name, Container: c.Name, Init: true, Image: c.Image, ImageID: ids[c.Name]})
		}
		for _, c := range p.Spec.Containers {
			list = append(list, ContainerImage{Namespace: p.Namespace, Pod: p.Name, Container: c.Name, Image: c.Image, ImageID: ids[c.Name]})
		}
		f.objects = append(f.objects, podObject(p))
	}
	body, err := yaml.Marshal(map[string]any{"images": list})
	if err != nil {
		return nil, err
	}
	f.body = body
	return f, nil
}

// AccountInUse is a service account and the pods running as it.
type AccountInUse struct {
	Namespace      string                 `json:"namespace"`
	ServiceAccount string                 `json:"serviceAccount"`
	Pods           []string               `json:"pods"`
	Object         *corev1.ServiceAccount `json:"object,omitempty"` // absent: the account does not exist
}

func serviceAccountsFile(pods []corev1.Pod, sas []corev1.ServiceAccount, rv string) (*dumpFile, error) {
	byKey := map[string]*corev1.ServiceAccount{}
	for i := range sas {
		sas[i].APIVersion, sas[i].Kind = "v1", "ServiceAccount"
		byKey[objKey(&sas[i].ObjectMeta)] = &sas[i]
	}
	use := map[string]*AccountInUse{}
	for _, p := range pods {
		name := p.Spec.ServiceAccountName
		if name == "" {
			name = "default"
		}
		k := p.Namespace + "/" + name
		if use[k] == nil {
			use[k] = &AccountInUse{Namespace: p.Namespace, ServiceAccount: name, Object: byKey[k]}
		}
		use[k].Pods = append(use[k].Pods, p.Name)
	}
	keys := make([]string, 0, len(use))
	for k := range use {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := &dumpFile{listRV: rv, note: "service accounts that pods run as, with the pods; a missing object means the account does not exist"}
	list := make([]AccountInUse, 0, len(keys))
	for _, k := range keys {
		a := use[k]
		list = append(list, *a)
		if a.Object != nil {
			f.objects = append(f.objects, evidence.Object{APIVersion: "v1", Kind: "ServiceAccount", Namespace: a.Namespace, Name: a.ServiceAccount, UID: string(a.Object.UID), ResourceVersion: a.Object.ResourceVersion})
		}
	}
	body, err := yaml.Marshal(map[string]any{"serviceAccountsInUse": list})
	if err != nil {
		return nil, err
	}
	f.body = body
	return f, nil
}

// DescribePods renders pods as text in the manner of `kubectl describe
// pods`, each followed by the events about it.
func DescribePods(pods []corev1.Pod, events []corev1.Event) []byte {
	byUID := map[string][]corev1.Event{}
	for _, e := range events {
		byUID[string(e.InvolvedObject.UID)] = append(byUID[string(e.InvolvedObject.UID)], e)
	}
	var b bytes.Buffer
	for i := range pods {
		if i > 0 {
			b.WriteString("\n\n")
		}
		describePod(&b, &pods[i], byUID[string(pods[i].UID)])
	}
	return b.Bytes()
}

func describePod(out io.Writer, p *corev1.Pod, events []corev1.Event) {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	defer w.Flush()
	field := func(indent, k, v string) { fmt.Fprintf(w, "%s%s:\t%s\n", indent, k, v) }
	field("", "Name", p.Name)
	field("", "Namespace", p.Namespace)
	field("", "UID", string(p.UID))
	field("", "Resource Version", p.ResourceVersion)
	field("", "Service Account", orNone(p.Spec.ServiceAccountName))
	field("", "Node", orNone(p.Spec.NodeName)+"/"+orNone(p.Status.HostIP))
	field("", "Created", p.CreationTimestamp.UTC().Format(time.RFC3339))
	if p.Status.StartTime != nil {
		field("", "Start Time", p.Status.StartTime.UTC().Format(time.RFC3339))
	}
	field("", "Labels", mapText(p.Labels))
	field("", "Annotations", mapText(p.Annotations))
	field("", "Status", string(p.Status.Phase))
	field("", "IP", orNone(p.Status.PodIP))
	for _, o := range p.OwnerReferences {
		field("", "Controlled By", o.Kind+"/"+o.Name)
	}
	if sc := p.Spec.SecurityContext; sc != nil && (sc.RunAsUser != nil || sc.RunAsNonRoot != nil) {
		field("", "Security Context", fmt.Sprintf("runAsUser=%s runAsNonRoot=%s", ptrText(sc.RunAsUser), ptrText(sc.RunAsNonRoot)))
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		field("", "Host Namespaces", fmt.Sprintf("network=%v pid=%v ipc=%v", p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC))
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		statuses[s.Name] = s
	}
	section := func(title string, cs []corev1.Container) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, c := range cs {
			s := statuses[c.Name]
			fmt.Fprintf(w, "  %s:\n", c.Name)
			field("    ", "Image", c.Image)
			field("    ", "Image ID", orNone(s.ImageID))
			field("    ", "Container ID", orNone(s.ContainerID))
			if len(c.Command) > 0 {
				field("    ", "Command", strings.Join(c.Command, " "))
			}
			if len(c.Args) > 0 {
				field("    ", "Args", strings.Join(c.Args, " "))
			}
			field("    ", "State", stateText(s.State))
			if s.LastTerminationState.Terminated != nil {
				field("    ", "Last State", stateText(s.LastTerminationState))
			}
			field("    ", "Ready", fmt.Sprint(s.Ready))
			field("    ", "Restart Count", fmt.Sprint(s.RestartCount))
			if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
				field("    ", "Privileged", "true")
			}
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil {
					v = valueFromText(e.ValueFrom)
				}
				field("    ", "Env "+e.Name, v)
			}
			for _, m := range c.VolumeMounts {
				field("    ", "Mount "+m.MountPath, fmt.Sprintf("from %s (ro=%v)", m.Name, m.ReadOnly))
			}
		}
	}
	section("Init Containers", p.Spec.InitContainers)
	section("Containers", p.Spec.Containers)
	if len(p.Status.Conditions) > 0 {
		fmt.Fprintln(w, "Conditions:")
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(w, "  %s\t%s\n", c.Type, c.Status)
		}
	}
	if len(p.Spec.Volumes) > 0 {
		fmt.Fprintln(w, "Volumes:")
		for _, v := range p.Spec.Volumes {
			field("  ", v.Name, volumeText(v))
		}
	}
	if len(events) == 0 {
		fmt.Fprintln(w, "Events:\t<none>")
		return
	}
	fmt.Fprintln(w, "Events:")
	fmt.Fprintln(w, "  TIME\tTYPE\tREASON\tFROM\tCOUNT\tMESSAGE")
	for _, e := range events {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%d\t%s\n", eventTime(&e).UTC().Format(time.RFC3339), e.Type, e.Reason, e.Source.Component, e.Count, strings.Join(strings.Fields(e.Message), " "))
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func ptrText[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

func mapText(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strings.Join(strings.Fields(m[k]), " ")
	}
	return strings.Join(parts, ", ")
}

func stateText(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Waiting != nil:
		return "Waiting: " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("Terminated: %s (exit %d) at %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.FinishedAt.UTC().Format(time.RFC3339))
	}
	return "<unknown>"
}

// valueFromText names where an env var comes from, never its value.
func valueFromText(v *corev1.EnvVarSource) string {
	switch {
	case v.SecretKeyRef != nil:
		return fmt.Sprintf("<secret %s key %s>", v.SecretKeyRef.Name, v.SecretKeyRef.Key)
	case v.ConfigMapKeyRef != nil:
		return fmt.Sprintf("<configmap %s key %s>", v.ConfigMapKeyRef.Name, v.ConfigMapKeyRef.Key)
	case v.FieldRef != nil:
		return "<field " + v.FieldRef.FieldPath + ">"
	case v.ResourceFieldRef != nil:
		return "<resource " + v.ResourceFieldRef.Resource + ">"
	}
	return "<from elsewhere>"
}

func volumeText(v corev1.Volume) string {
	switch {
	case v.PersistentVolumeClaim != nil:
		return "PersistentVolumeClaim " + v.PersistentVolumeClaim.ClaimName
	case v.Secret != nil:
		return "Secret " + v.Secret.SecretName
	case v.ConfigMap != nil:
		return "ConfigMap " + v.ConfigMap.Name
	case v.HostPath != nil:
		return "HostPath " + v.HostPath.Path
	case v.EmptyDir != nil:
		return "EmptyDir"
	case v.Projected != nil:
		return "Projected"
	}
	return "other"
}
