package kubeaction

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Find searches the cluster's objects for indicators of compromise: names,
// labels, container images and their registries, service accounts and
// RBAC subjects. It is the runbook's `kubectl get all -A | grep`, without
// `get all`'s blind spots (CronJobs' templates, RBAC, ConfigMaps, CRDs).
type Find struct{}

// DefaultFindKinds are searched when a step names none: what an attacker
// leaves behind to run code or keep access. Secrets are not among them:
// listing Secrets grants reading every value, which the responder role
// does not give; name them in kinds to search their metadata.
var DefaultFindKinds = []string{
	"pods", "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs",
	"services", "configmaps", "serviceaccounts",
	"roles", "rolebindings", "clusterroles", "clusterrolebindings", "customresourcedefinitions",
}

// allKinds, as the kinds param, searches every listable resource.
const allKinds = "*"

// metadataOnly are searched by their metadata alone: their contents never
// reach irctl.
var metadataOnly = map[schema.GroupResource]bool{{Resource: "secrets"}: true, {Resource: "configmaps"}: true}

type findArgs struct {
	kinds      []string
	namespace  string
	indicators []string
	patterns   []*regexp.Regexp
	registries []string
	allowed    []string
	expectNone bool
	incident   string // pods kept as this incident's evidence are reported apart
}

func findParams(p runbook.Params) (findArgs, error) {
	a := findArgs{kinds: p.Strings("kinds"), namespace: p.String("namespace"), registries: p.Strings("registries"),
		allowed: p.Strings("allowed_registries"), expectNone: p.Bool("expect_none")}
	if len(a.kinds) == 0 {
		a.kinds = DefaultFindKinds
	}
	if !(len(a.kinds) == 1 && a.kinds[0] == allKinds) {
		if err := validateResources("kinds", a.kinds); err != nil {
			return a, err
		}
	}
	for _, s := range p.Strings("indicators") {
		if s = strings.TrimSpace(s); s == "" {
			return a, fmt.Errorf("indicators: an empty indicator matches everything")
		}
		a.indicators = append(a.indicators, strings.ToLower(s))
	}
	for _, s := range p.Strings("patterns") {
		re, err := regexp.Compile(s)
		if err != nil {
			return a, fmt.Errorf("patterns: %q: %v", s, err)
		}
		if re.MatchString("") {
			return a, fmt.Errorf("patterns: %q matches the empty string, so everything", s)
		}
		a.patterns = append(a.patterns, re)
	}
	if len(a.indicators)+len(a.patterns)+len(a.registries)+len(a.allowed) == 0 {
		return a, fmt.Errorf("give indicators, patterns, registries or allowed_registries: what to look for")
	}
	return a, nil
}

func (Find) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.find",
		Description: "Search objects of many kinds in all namespaces for indicators: substrings or regular expressions in names, labels, " +
			"container images, service accounts and RBAC subjects, and images from given (or not allowed) registries; " +
			"a table of matches. Secrets and ConfigMaps are searched by metadata only. With expect_none the step fails on any match.",
		Uses:  []string{runbook.UsesKubernetes},
		Table: true, // `expect:` judges its rows
		Params: []runbook.ParamDef{
			{Name: "indicators", Type: runbook.Strings, Description: "substrings to look for (case-insensitive)"},
			{Name: "patterns", Type: runbook.Strings, Description: "regular expressions (RE2) to look for"},
			{Name: "registries", Type: runbook.Strings, Description: "image registries or repository prefixes that are indicators, e.g. 203.0.113.66:5000"},
			{Name: "allowed_registries", Type: runbook.Strings, Description: "the registries or prefixes images may come from (e.g. ghcr.io/llm-orchestrator, docker.io/library): any other is a match"},
			{Name: "kinds", Type: runbook.Strings, Default: DefaultFindKinds, Description: "resources to search; [\"*\"] searches every listable resource, which needs list on everything"},
			{Name: "namespace", Type: runbook.String, Description: "search one namespace only (unset: all, and cluster-scoped objects)"},
			{Name: "expect_none", Type: runbook.Bool, Description: "fail the step when anything matches (for validate)"},
		},
		Validate: func(p runbook.Params) error { _, err := findParams(p); return err },
	}
}

func (Find) Permissions(p runbook.Params) []kube.Permission {
	a, _ := findParams(p)
	if len(a.kinds) == 1 && a.kinds[0] == allKinds {
		return []kube.Permission{{Verb: "list", Group: "*", Resource: "*", Namespace: a.namespace}}
	}
	var perms []kube.Permission
	for _, k := range a.kinds {
		if gr, ok := staticResource(k); ok {
			ns := a.namespace
			if !namespacedKnown(gr) {
				ns = ""
			}
			perms = append(perms, kube.Permission{Verb: "list", Group: gr.Group, Resource: gr.Resource, Namespace: ns})
		}
	}
	return dedupPerms(perms)
}

// listable finds every resource the server lists (one version each).
func listable(c *kube.Clients) ([]resolvedResource, error) {
	lists, err := c.Core.Discovery().ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discovery: %s", kube.Short(err))
	}
	var out []resolvedResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerb(r.Verbs, "list") {
				continue
			}
			out = append(out, resolvedResource{GVR: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced})
		}
	}
	return out, nil
}

func hasVerb(verbs []string, v string) bool {
	for _, x := range verbs {
		if x == v {
			return true
		}
	}
	return false
}

func (Find) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := findParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	var resources []resolvedResource
	if len(a.kinds) == 1 && a.kinds[0] == allKinds {
		resources, err = listable(c)
	} else {
		resources, err = resolveResources(ctx, c, a.kinds)
	}
	if err != nil {
		return nil, err
	}
	where := "all namespaces"
	if a.namespace != "" {
		where = "namespace " + a.namespace
	}
	labels := make([]string, len(resources))
	for i, r := range resources {
		labels[i] = r.label()
	}
	sort.Strings(labels)
	return &action.Plan{
		Summary: fmt.Sprintf("search %d kind(s) in %s for %s (read-only)", len(resources), where, a.describe()),
		Targets: action.Abbreviate(labels, 30),
		State:   resources,
	}, nil
}

func (a findArgs) describe() string {
	var parts []string
	if len(a.indicators) > 0 {
		parts = append(parts, "indicators "+strings.Join(a.indicators, ", "))
	}
	for _, re := range a.patterns {
		parts = append(parts, "pattern "+re.String())
	}
	if len(a.registries) > 0 {
		parts = append(parts, "images from "+strings.Join(a.registries, ", "))
	}
	if len(a.allowed) > 0 {
		parts = append(parts, "images not from "+strings.Join(a.allowed, ", "))
	}
	return strings.Join(parts, "; ")
}

// findMatch is one object that matched, and what in it.
type findMatch struct {
	kind, namespace, name string
	what                  []string
	// evidence: a pod quarantined or copied for this incident, kept on
	// purpose behind the isolation policy: not a remaining indicator.
	evidence bool
}

func (Find) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	a, err := findParams(p)
	if err != nil {
		return nil, err
	}
	a.incident = env.Incident
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	meta, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	resources := plan.State.([]resolvedResource)
	var mu sync.Mutex
	var matches []findMatch
	var failed []action.Failure
	searched := 0
	action.ForEach(ctx, 4, len(resources), func(i int) {
		r := resources[i]
		ns := a.namespace
		if !r.Namespaced {
			ns = ""
			if a.namespace != "" {
				return // one namespace: cluster-scoped objects are not in it
			}
		}
		found, n, err := searchResource(ctx, c, meta, r, ns, a)
		mu.Lock()
		defer mu.Unlock()
		searched += n
		if err != nil {
			failed = append(failed, action.Failure{Target: r.label(), Error: kube.Short(err)})
			return
		}
		matches = append(matches, found...)
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	sort.Slice(matches, func(i, j int) bool {
		x, y := matches[i], matches[j]
		if x.kind != y.kind {
			return x.kind < y.kind
		}
		if x.namespace != y.namespace {
			return x.namespace < y.namespace
		}
		return x.name < y.name
	})
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	var evidence []string
	kept := matches[:0]
	for _, m := range matches {
		if m.evidence {
			evidence = append(evidence, nsName(m.namespace, m.name))
			continue
		}
		kept = append(kept, m)
	}
	matches = kept
	table := &action.Table{Columns: []string{"kind", "namespace", "name", "matched"}, Total: len(matches)}
	for _, m := range matches {
		table.Rows = append(table.Rows, []string{m.kind, m.namespace, m.name, strings.Join(m.what, "; ")})
	}
	summary := fmt.Sprintf("%d object(s) of %d searched in %d kind(s) match %s", len(matches), searched, len(resources)-len(failed), a.describe())
	if len(evidence) > 0 {
		summary += fmt.Sprintf("; %d more are pods kept as this incident's evidence (quarantined or forensic copies, isolated), not counted: %s",
			len(evidence), strings.Join(action.Abbreviate(evidence, 5), ", "))
	}
	if a.expectNone && len(matches) > 0 {
		var first []string
		for _, m := range matches {
			first = append(first, fmt.Sprintf("%s %s (%s)", m.kind, nsName(m.namespace, m.name), strings.Join(m.what, "; ")))
		}
		return nil, fmt.Errorf("expected no match, found %s: %s", summary, strings.Join(action.Abbreviate(first, 10), ", "))
	}
	return &action.Result{Summary: summary, Table: table, Failed: failed}, nil
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// searchResource lists one resource page by page and matches each object.
func searchResource(ctx context.Context, c *kube.Clients, meta metadata.Interface, r resolvedResource, ns string, a findArgs) ([]findMatch, int, error) {
	var out []findMatch
	n := 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		var objs []map[string]any
		var cont string
		if metadataOnly[r.GVR.GroupResource()] {
			list, err := meta.Resource(r.GVR).Namespace(ns).List(ctx, opts)
			if err != nil {
				return nil, n, err
			}
			for i := range list.Items {
				m := list.Items[i].ObjectMeta
				objs = append(objs, map[string]any{"metadata": map[string]any{"name": m.Name, "namespace": m.Namespace, "labels": toAny(m.Labels)}})
			}
			cont = list.Continue
		} else {
			list, err := c.Dynamic.Resource(r.GVR).Namespace(ns).List(ctx, opts)
			if err != nil {
				return nil, n, err
			}
			for i := range list.Items {
				objs = append(objs, list.Items[i].Object)
			}
			cont = list.GetContinue()
		}
		for _, o := range objs {
			n++
			if what := matchObject(o, a); len(what) > 0 {
				md, _ := o["metadata"].(map[string]any)
				name, _ := md["name"].(string)
				namespace, _ := md["namespace"].(string)
				m := findMatch{kind: r.label(), namespace: namespace, name: name, what: what}
				if r.GVR.Group == "" && r.GVR.Resource == "pods" {
					m.evidence = isolatedEvidenceMeta(stringMap(md["labels"]), stringMap(md["annotations"]), a.incident)
				}
				out = append(out, m)
			}
		}
		if cont == "" {
			return out, n, nil
		}
		opts.Continue = cont
	}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// stringMap reads labels or annotations of an unstructured object.
func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}
