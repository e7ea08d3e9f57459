package kubeaction

import (
	"context"
	"encoding/base64"
	"fmt"
	"path"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Delete removes objects chosen by kind and name, or by kind and label
// selector across namespaces (`kubectl delete cronjob,job -l
// malicious=true -A`), saving each object's manifest as evidence first.
type Delete struct{}

type deleteArgs struct {
	kinds         []string
	names         []string
	selector      string
	namespace     string
	allNamespaces bool
	// none: names given as an empty list (a runbook param that names
	// nothing by default), so there is nothing to delete.
	none bool
}

func deleteParams(p runbook.Params) (deleteArgs, error) {
	a := deleteArgs{kinds: p.Strings("kinds"), names: p.Strings("names"), selector: p.String("selector"),
		namespace: p.String("namespace"), allNamespaces: p.Bool("all_namespaces")}
	if len(a.kinds) == 0 {
		return a, fmt.Errorf("kinds: give at least one resource (e.g. [cronjobs, jobs])")
	}
	if err := validateResources("kinds", a.kinds); err != nil {
		return a, err
	}
	if p.Has("names") && len(a.names) == 0 && a.selector == "" {
		a.none = true
		return a, nil
	}
	if (len(a.names) > 0) == (a.selector != "") {
		return a, fmt.Errorf("give exactly one of names or selector")
	}
	if a.selector != "" {
		sel, err := labels.Parse(a.selector)
		if err != nil {
			return a, fmt.Errorf("invalid selector %q: %v", a.selector, err)
		}
		if sel.Empty() {
			return a, fmt.Errorf("selector %q selects everything: name what to delete", a.selector)
		}
	}
	for _, n := range a.names {
		// Names are not all DNS names (RBAC objects have colons): only
		// what cannot be an object name is refused.
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/%") {
			return a, fmt.Errorf("names: %q is not an object name", n)
		}
	}
	if a.allNamespaces && a.namespace != "" {
		return a, fmt.Errorf("give namespace or all_namespaces, not both")
	}
	return a, nil
}

func (Delete) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.delete",
		Description: "Delete objects by kinds and names, or kinds and a label selector in a namespace or all of them " +
			"(like kubectl delete cronjob,job -l malicious=true -A), saving each object's manifest as evidence before it is deleted. " +
			"Dependents (a Job's pods) are deleted in the background. Cannot be undone.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "kinds", Type: runbook.Strings, Required: true, Description: "resources to delete, as kubectl names them: cronjobs, job, cj, clusterrolebindings, or plural.group for custom resources"},
			{Name: "names", Type: runbook.Strings, Description: "names of the objects (this or selector)"},
			{Name: "selector", Type: runbook.String, Description: "label selector, e.g. malicious=true (this or names)"},
			{Name: "namespace", Type: runbook.String, Description: "namespace of namespaced objects (unset: \"default\" unless all_namespaces)"},
			{Name: "all_namespaces", Type: runbook.Bool, Description: "look in every namespace (kubectl -A)"},
		},
		Validate: func(p runbook.Params) error { _, err := deleteParams(p); return err },
	}
}

// deleteNamespace is where namespaced objects are looked for: "" for all.
func (a deleteArgs) where() string {
	switch {
	case a.allNamespaces:
		return ""
	case a.namespace != "":
		return a.namespace
	}
	return metav1.NamespaceDefault
}

func (Delete) Permissions(p runbook.Params) []kube.Permission {
	a := deleteArgs{kinds: p.Strings("kinds"), names: p.Strings("names"), namespace: p.String("namespace"), allNamespaces: p.Bool("all_namespaces")}
	find := "list"
	if len(a.names) > 0 {
		find = "get"
	}
	var perms []kube.Permission
	for _, k := range a.kinds {
		gr, ok := staticResource(k)
		if !ok {
			continue // the loader rejects it
		}
		ns := a.where()
		if !namespacedKnown(gr) {
			ns = ""
		}
		perms = append(perms,
			kube.Permission{Verb: find, Group: gr.Group, Resource: gr.Resource, Namespace: ns},
			// Deleting reads the object once more for the evidence.
			kube.Permission{Verb: "get", Group: gr.Group, Resource: gr.Resource, Namespace: ns},
			kube.Permission{Verb: "delete", Group: gr.Group, Resource: gr.Resource, Namespace: ns})
	}
	return dedupPerms(perms)
}

// clusterScoped are the known resources that live outside namespaces;
// custom resources are taken as namespaced, the permission then being
// asked in the step's namespace (cluster-wide with all_namespaces).
var clusterScoped = map[string]bool{
	"namespaces": true, "nodes": true, "clusterroles": true, "clusterrolebindings": true,
	"customresourcedefinitions": true, "mutatingwebhookconfigurations": true, "validatingwebhookconfigurations": true,
}

func namespacedKnown(gr schema.GroupResource) bool { return !clusterScoped[gr.Resource] }

func dedupPerms(perms []kube.Permission) []kube.Permission {
	seen := map[kube.Permission]bool{}
	var out []kube.Permission
	for _, p := range perms {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// deleteTarget is one object to delete.
type deleteTarget struct {
	res       resolvedResource
	namespace string
	name      string
	uid       string
}

func (t deleteTarget) String() string {
	if t.namespace == "" {
		return t.res.label() + "/" + t.name
	}
	return t.res.label() + " " + t.namespace + "/" + t.name
}

func (Delete) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := deleteParams(p)
	if err != nil {
		return nil, err
	}
	if a.none {
		return &action.Plan{Summary: fmt.Sprintf("delete %s: no objects named; skipped", strings.Join(a.kinds, ",")), Noop: true}, nil
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	resources, err := resolveResources(ctx, c, a.kinds)
	if err != nil {
		return nil, err
	}
	var targets []deleteTarget
	missing := 0
	for _, r := range resources {
		ns := a.where()
		if !r.Namespaced {
			ns = ""
		}
		client := c.Dynamic.Resource(r.GVR).Namespace(ns)
		if a.selector != "" {
			list, err := client.List(ctx, metav1.ListOptions{LabelSelector: a.selector})
			if err != nil {
				return nil, fmt.Errorf("list %s: %s", r.label(), kube.Short(err))
			}
			for _, o := range list.Items {
				targets = append(targets, deleteTarget{res: r, namespace: o.GetNamespace(), name: o.GetName(), uid: string(o.GetUID())})
			}
			continue
		}
		for _, n := range a.names {
			o, err := client.Get(ctx, n, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				missing++ // already gone: done
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("get %s %s: %s", r.label(), n, kube.Short(err))
			}
			targets = append(targets, deleteTarget{res: r, namespace: o.GetNamespace(), name: o.GetName(), uid: string(o.GetUID())})
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].String() < targets[j].String() })
	var kinds []string
	for _, r := range resources {
		kinds = append(kinds, r.label())
	}
	scope := "in namespace " + a.where()
	if a.allNamespaces {
		scope = "in all namespaces"
	}
	what := "named " + strings.Join(a.names, ", ")
	if a.selector != "" {
		what = "matching " + a.selector
	}
	if len(targets) == 0 {
		return &action.Plan{Summary: fmt.Sprintf("no %s %s %s: nothing to delete", strings.Join(kinds, ","), what, scope), Noop: true}, nil
	}
	list := make([]string, len(targets))
	for i, t := range targets {
		list[i] = t.String()
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("delete %d object(s) (%s %s %s), saving each manifest as evidence first", len(targets), strings.Join(kinds, ","), what, scope),
		Targets: action.Abbreviate(list, 50),
		Count:   len(targets),
		State:   targets,
	}
	if missing > 0 {
		plan.Summary += fmt.Sprintf("; %d named object(s) already gone", missing)
	}
	return plan, nil
}

func (Delete) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	targets := plan.State.([]deleteTarget)
	dry := env.DryRun == action.DryRunServer
	var store *evidence.Store
	if !dry {
		if store, err = env.Evidence(); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
	}
	var failed []action.Failure
	deleted, gone := 0, 0
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		err := deleteOne(ctx, env, c, store, t, dry)
		switch {
		case apierrors.IsNotFound(err):
			gone++
		case err != nil:
			failed = append(failed, action.Failure{Target: t.String(), Error: kube.Short(err)})
		default:
			deleted++
		}
	}
	summary := fmt.Sprintf("deleted %d object(s); their manifests are evidence under deleted/", deleted)
	if dry {
		summary = fmt.Sprintf("server dry run: the API server accepted deleting %d object(s); nothing was deleted or saved", deleted)
	}
	if gone > 0 {
		summary += fmt.Sprintf("; %d already gone", gone)
	}
	return &action.Result{Summary: summary, Changed: deleted, Failed: failed,
		Irreversible: "deleted objects cannot be restored by irctl; their manifests are in the evidence (deleted/), from which they can be recreated by hand"}, ctx.Err()
}

// deleteOne reads the object again (the manifest as deleted), saves it as
// evidence, then deletes exactly that object (UID precondition) with its
// dependents in the background.
func deleteOne(ctx context.Context, env *action.Env, c *kube.Clients, store *evidence.Store, t deleteTarget, dry bool) error {
	client := c.Dynamic.Resource(t.res.GVR).Namespace(t.namespace)
	o, err := client.Get(ctx, t.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if string(o.GetUID()) != t.uid {
		return fmt.Errorf("replaced since the plan (UID %s, planned %s): not deleted", o.GetUID(), t.uid)
	}
	if !dry {
		if err := saveManifest(env, c, store, t, o); err != nil {
			return fmt.Errorf("save the manifest as evidence, so not deleted: %w", err)
		}
	}
	uid := o.GetUID()
	bg := metav1.DeletePropagationBackground
	return client.Delete(ctx, t.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &bg, DryRun: kube.DryRunOpt(dry)})
}

// saveManifest writes the object's full manifest as evidence. A Secret's
// values are replaced by their fingerprints: evidence never holds secrets.
func saveManifest(env *action.Env, c *kube.Clients, store *evidence.Store, t deleteTarget, o *unstructured.Unstructured) error {
	o = o.DeepCopy()
	note := "the object's manifest as read just before irctl deleted it"
	if t.res.GVR.Group == "" && t.res.GVR.Resource == "secrets" {
		redactSecret(env, o)
		note += "; the Secret's values are replaced by their SHA-256 fingerprints"
	}
	body, err := yaml.Marshal(o.Object)
	if err != nil {
		return err
	}
	for _, s := range env.Secrets {
		if s != "" {
			body = []byte(strings.ReplaceAll(string(body), s, "[redacted]"))
		}
	}
	ns := t.namespace
	if ns == "" {
		ns = "_cluster"
	}
	name := path.Join("deleted", evidence.SafeName(ns), evidence.SafeName(t.res.label()), evidence.SafeName(t.name)+".yaml")
	_, err = store.WriteFile(name, evidence.Source{
		Kind: evidence.KindKubernetes, Server: c.Config.Host,
		Objects: []evidence.Object{{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName(), UID: string(o.GetUID()), ResourceVersion: o.GetResourceVersion()}},
		Note:    note,
	}, body, evidence.Extra{})
	return err
}

func redactSecret(env *action.Env, o *unstructured.Unstructured) {
	for _, field := range []string{"data", "stringData"} {
		m, ok := o.Object[field].(map[string]any)
		if !ok {
			continue
		}
		for k, v := range m {
			s, _ := v.(string)
			raw := []byte(s)
			if field == "data" {
				if b, err := base64.StdEncoding.DecodeString(s); err == nil {
					raw = b
				}
			}
			fp, err := env.Fingerprint(raw)
			if err != nil {
				fp = "[redacted]"
			}
			m[k] = fp
		}
	}
	// kubectl apply keeps the whole Secret, values included, here.
	ann := o.GetAnnotations()
	if _, ok := ann["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		ann["kubectl.kubernetes.io/last-applied-configuration"] = "[redacted: it holds the Secret's values]"
		o.SetAnnotations(ann)
	}
}
