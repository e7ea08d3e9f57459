package kubeaction

// Resource names as a runbook gives them (kubectl's: "cronjob", "jobs",
// "cj", "cronjobs.batch"), resolved twice: statically, so that a step's
// permissions follow from its params before any server is asked, and
// through discovery (the RESTMapper) when the step plans, which must agree.

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"irctl.dev/irctl/internal/kube"
)

// knownResource is a built-in resource and the names it goes by.
type knownResource struct {
	group, resource string
	names           []string // singular, short names
}

var knownResources = []knownResource{
	{"", "pods", []string{"pod", "po"}},
	{"", "services", []string{"service", "svc"}},
	{"", "configmaps", []string{"configmap", "cm"}},
	{"", "secrets", []string{"secret"}},
	{"", "serviceaccounts", []string{"serviceaccount", "sa"}},
	{"", "persistentvolumeclaims", []string{"persistentvolumeclaim", "pvc"}},
	{"", "namespaces", []string{"namespace", "ns"}},
	{"", "nodes", []string{"node", "no"}},
	{"apps", "deployments", []string{"deployment", "deploy"}},
	{"apps", "statefulsets", []string{"statefulset", "sts"}},
	{"apps", "daemonsets", []string{"daemonset", "ds"}},
	{"apps", "replicasets", []string{"replicaset", "rs"}},
	{"batch", "jobs", []string{"job"}},
	{"batch", "cronjobs", []string{"cronjob", "cj"}},
	{"rbac.authorization.k8s.io", "roles", []string{"role"}},
	{"rbac.authorization.k8s.io", "rolebindings", []string{"rolebinding"}},
	{"rbac.authorization.k8s.io", "clusterroles", []string{"clusterrole"}},
	{"rbac.authorization.k8s.io", "clusterrolebindings", []string{"clusterrolebinding"}},
	{"networking.k8s.io", "networkpolicies", []string{"networkpolicy", "netpol"}},
	{"networking.k8s.io", "ingresses", []string{"ingress", "ing"}},
	{"apiextensions.k8s.io", "customresourcedefinitions", []string{"customresourcedefinition", "crd", "crds"}},
	{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", []string{"mutatingwebhookconfiguration"}},
	{"admissionregistration.k8s.io", "validatingwebhookconfigurations", []string{"validatingwebhookconfiguration"}},
}

// staticResource resolves a name without a server: a built-in resource by
// any of its names, or "resource.group" (a CRD's plural and group, as
// kubectl accepts it).
func staticResource(name string) (schema.GroupResource, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, k := range knownResources {
		if n == k.resource || n == k.resource+"."+k.group {
			return schema.GroupResource{Group: k.group, Resource: k.resource}, true
		}
		for _, alias := range k.names {
			if n == alias {
				return schema.GroupResource{Group: k.group, Resource: k.resource}, true
			}
		}
	}
	res, group, ok := strings.Cut(n, ".")
	if !ok || res == "" || !strings.Contains(group, ".") {
		return schema.GroupResource{}, false
	}
	return schema.GroupResource{Group: group, Resource: res}, true
}

// validateResources checks that every name resolves statically.
func validateResources(param string, names []string) error {
	for _, n := range names {
		if _, ok := staticResource(n); !ok {
			return fmt.Errorf("%s: unknown resource %q: give a built-in resource (cronjobs, jobs, pods, clusterrolebindings ...) or a custom one as plural.group (widgets.example.com)", param, n)
		}
	}
	return nil
}

// resolvedResource is a resource as the server serves it.
type resolvedResource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// label names a resource as kubectl prints it (cronjob.batch).
func (r resolvedResource) label() string {
	if r.GVR.Group == "" {
		return strings.ToLower(r.Kind)
	}
	return strings.ToLower(r.Kind) + "." + r.GVR.Group
}

// newMapper builds a RESTMapper over the server's discovery, with
// kubectl's short names.
func newMapper(c *kube.Clients) meta.RESTMapper {
	disc := memory.NewMemCacheClient(c.Core.Discovery())
	return restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(disc), disc, nil)
}

// resolveResources maps names to the server's resources; each must agree
// with its static resolution, on which the declared permissions rest.
func resolveResources(ctx context.Context, c *kube.Clients, names []string) ([]resolvedResource, error) {
	mapper := newMapper(c)
	var out []resolvedResource
	seen := map[schema.GroupVersionResource]bool{}
	for _, n := range names {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		want, ok := staticResource(n)
		if !ok {
			return nil, fmt.Errorf("unknown resource %q", n)
		}
		gvr, err := mapper.ResourceFor(want.WithVersion(""))
		if err != nil {
			return nil, fmt.Errorf("resource %q: the server does not serve %s: %s", n, want, kube.Short(err))
		}
		if gvr.GroupResource() != want {
			return nil, fmt.Errorf("resource %q resolves to %s on the server, not %s: name it as %s", n, gvr.GroupResource(), want, gvr.GroupResource())
		}
		gvk, err := mapper.KindFor(gvr)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %s", n, kube.Short(err))
		}
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %s", n, kube.Short(err))
		}
		if seen[gvr] {
			continue
		}
		seen[gvr] = true
		out = append(out, resolvedResource{GVR: gvr, Kind: gvk.Kind, Namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace})
	}
	return out, nil
}
