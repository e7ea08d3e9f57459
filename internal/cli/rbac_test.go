package cli

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
	"irctl.dev/irctl/internal/runbook"
)

// This file checks the shipped ClusterRole (runbooks/rbac/irctl-responder.yaml)
// against what irctl asks of Kubernetes, without any server: the role must
// grant every permission a step of a shipped runbook declares, every
// permission any action can declare, what undo and irctl itself need, and
// nothing more.

// grant is one verb on one resource ("pods/log" for a subresource) of one
// API group, the unit a ClusterRole grants. Namespaces do not matter: a
// ClusterRole's rules apply wherever it is bound.
type grant struct{ verb, group, resource string }

func (g grant) String() string {
	return fmt.Sprintf("verb=%s group=%q resource=%s", g.verb, g.group, g.resource)
}

func grantOf(p kube.Permission) grant {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	return grant{p.Verb, p.Group, r}
}

// undoPermissions are what each action's Undo does, which no Permissions
// method declares. Every action implementing action.Undoer must have an
// entry, so that a new undo cannot quietly need a rule the role lacks.
var undoPermissions = map[string][]kube.Permission{
	// Patches the labels back to their previous values.
	"k8s.label": {{Verb: "patch", Resource: "pods"}},
	// Deletes the policy it created (UID precondition), or reads it and
	// puts the previous spec back.
	"k8s.isolate": {
		{Verb: "delete", Group: networkingv1.GroupName, Resource: "networkpolicies"},
		{Verb: "get", Group: networkingv1.GroupName, Resource: "networkpolicies"},
		{Verb: "update", Group: networkingv1.GroupName, Resource: "networkpolicies"},
	},
	// Uncordons: reads each node again and patches spec.unschedulable.
	"k8s.cordon": {{Verb: "get", Resource: "nodes"}, {Verb: "patch", Resource: "nodes"}},
	"k8s.drain":  {{Verb: "get", Resource: "nodes"}, {Verb: "patch", Resource: "nodes"}},
	// Deletes the forensic copies it created (UID precondition).
	"k8s.debug-copy": {{Verb: "delete", Resource: "pods"}},
	// Creates the deleted bindings again, or gets and updates the ones it
	// took the subject out of; bind, for roles the responder lacks.
	"k8s.revoke-identity": {
		{Verb: "create", Group: rbacv1.GroupName, Resource: "clusterrolebindings"},
		{Verb: "create", Group: rbacv1.GroupName, Resource: "rolebindings"},
		{Verb: "get", Group: rbacv1.GroupName, Resource: "clusterrolebindings"},
		{Verb: "get", Group: rbacv1.GroupName, Resource: "rolebindings"},
		{Verb: "update", Group: rbacv1.GroupName, Resource: "clusterrolebindings"},
		{Verb: "update", Group: rbacv1.GroupName, Resource: "rolebindings"},
		{Verb: "bind", Group: rbacv1.GroupName, Resource: "clusterroles"},
		{Verb: "bind", Group: rbacv1.GroupName, Resource: "roles"},
	},
	// Reads the workload, patches the previous images back and waits for
	// the rollout (listing the pods of a stuck one).
	"k8s.set-image": {
		{Verb: "get", Group: "apps", Resource: "deployments"}, {Verb: "patch", Group: "apps", Resource: "deployments"},
		{Verb: "get", Group: "apps", Resource: "statefulsets"}, {Verb: "patch", Group: "apps", Resource: "statefulsets"},
		{Verb: "get", Group: "apps", Resource: "daemonsets"}, {Verb: "patch", Group: "apps", Resource: "daemonsets"},
		{Verb: "list", Resource: "pods"},
	},
	// Patches changed objects back and deletes created ones: the kinds
	// are the manifests', so the apply step declares get, patch, create
	// and delete of each (see requiredGrants) and its undo needs nothing
	// more.
	"k8s.apply": {},
	// Reads and writes the scale subresource back, waits for the rollout.
	"k8s.scale": {
		{Verb: "get", Group: "apps", Resource: "deployments", Subresource: "scale"}, {Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale"},
		{Verb: "get", Group: "apps", Resource: "statefulsets", Subresource: "scale"}, {Verb: "update", Group: "apps", Resource: "statefulsets", Subresource: "scale"},
		{Verb: "get", Group: "apps", Resource: "deployments"}, {Verb: "get", Group: "apps", Resource: "statefulsets"},
		{Verb: "list", Resource: "pods"},
	},
}

// irctlPermissions are what irctl itself needs, whatever the runbook: they
// are the role's documented rules that no action declares.
var irctlPermissions = []struct {
	perm kube.Permission
	why  string
}{
	// internal/lock: create the incident's Lease, get it when it exists
	// (to name the holder or take over an expired one, or to see who took
	// it over), update it (take over, renew) and delete it on release, in
	// the lock's namespace (lock.DefaultNamespace unless configured).
	{kube.Permission{Verb: "create", Group: coordinationv1.GroupName, Resource: "leases"}, "the responder lock (internal/lock)"},
	{kube.Permission{Verb: "get", Group: coordinationv1.GroupName, Resource: "leases"}, "the responder lock (internal/lock)"},
	{kube.Permission{Verb: "update", Group: coordinationv1.GroupName, Resource: "leases"}, "the responder lock (internal/lock)"},
	{kube.Permission{Verb: "delete", Group: coordinationv1.GroupName, Resource: "leases"}, "the responder lock (internal/lock)"},
	// internal/kube Preflight: one SelfSubjectAccessReview per permission.
	{kube.Permission{Verb: "create", Group: authorizationv1.GroupName, Resource: "selfsubjectaccessreviews"}, "the permission preflight (internal/kube)"},
	// internal/cli/evidence.go: the collector's identity in the manifest.
	{kube.Permission{Verb: "create", Group: authenticationv1.GroupName, Resource: "selfsubjectreviews"}, "the evidence manifest's Kubernetes identity (internal/cli/evidence.go)"},
}

// needs collects required grants and who needs each.
type needs map[grant][]string

func (n needs) add(p kube.Permission, why string) {
	g := grantOf(p)
	if !slices.Contains(n[g], why) {
		n[g] = append(n[g], why)
	}
}

func TestShippedRoleGrantsExactlyWhatActionsNeed(t *testing.T) {
	missing, unneeded := roleProblems(responderRoleGrants(t, responderRoleFile), requiredGrants(t))
	for _, m := range missing {
		t.Errorf("%s does not grant %s", responderRoleFile, m)
	}
	for _, u := range unneeded {
		t.Errorf("%s: %s", responderRoleFile, u)
	}
}

// roleProblems compares what a role grants with what is needed: the
// grants missing (with who needs them) and the grants nothing needs.
func roleProblems(granted map[grant][]string, need needs) (missing, unneeded []string) {
	for g, why := range need {
		if len(granted[g]) == 0 {
			missing = append(missing, fmt.Sprintf("%s, needed by %s", g, whoNeeds(why)))
		}
	}
	for g, rules := range granted {
		if len(need[g]) == 0 {
			unneeded = append(unneeded, fmt.Sprintf("rule %s grants %s, which no action, undo, the responder lock, the preflight or the evidence identity needs: remove it (least privilege)", ruleNames(rules), g))
		}
	}
	sort.Strings(missing)
	sort.Strings(unneeded)
	return missing, unneeded
}

// requiredGrants is every grant irctl needs: the steps of every shipped
// runbook (default params, placeholders for required ones), every shape of
// every action's declared permissions (a runbook given with -f uses the
// same actions), undo, and irctl's own.
func requiredGrants(t *testing.T) needs {
	t.Helper()
	reg := builtin.Registry()
	need := needs{}

	files, err := fs.Glob(irctl.Runbooks, "runbooks/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped runbooks: %v", err)
	}
	for _, f := range files {
		rb := loadWithPlaceholders(t, reg, f)
		for _, ph := range runbook.Phases {
			for _, s := range rb.Phases[ph] {
				a, ok := reg.Get(s.Action)
				if !ok {
					t.Fatalf("%s: step %s: unknown action %s", f, s.Name, s.Action)
				}
				why := fmt.Sprintf("runbook %s step %s/%s (%s)", rb.Name, ph, s.Name, s.Action)
				if pa, ok := a.(action.Permissioned); ok {
					for _, p := range pa.Permissions(s.Params) {
						need.add(p, why)
					}
				}
				// k8s.apply's permissions are its manifests' kinds, read
				// from the embedded files as the preflight reads them.
				if fa, ok := a.(action.FilePermissioned); ok {
					perms, err := fa.PermissionsIn(&action.Env{Files: irctl.RunbookDir(), Kube: noKube}, s.Params)
					if err != nil {
						t.Fatalf("%s: step %s: %v", f, s.Name, err)
					}
					for _, p := range perms {
						need.add(p, why)
					}
				}
			}
		}
	}
	if len(need) == 0 {
		t.Fatal("the shipped runbooks declare no Kubernetes permissions at all; is the registry wired up?")
	}

	for _, name := range reg.Names() {
		a, _ := reg.Get(name)
		if pa, ok := a.(action.Permissioned); ok {
			// Name the shape only for a grant the required params alone
			// do not declare.
			seen := map[grant]bool{}
			for i, shape := range paramShapes(a.Spec()) {
				for _, p := range pa.Permissions(shape.params) {
					if g := grantOf(p); !seen[g] {
						seen[g] = true
						why := "action " + name
						if i > 0 {
							why += " " + shape.desc
						}
						need.add(p, why)
					}
				}
			}
		}
		_, undoes := a.(action.Undoer)
		perms, listed := undoPermissions[name]
		switch {
		case undoes && !listed:
			t.Errorf("action %s can undo but undoPermissions has no entry for it: list what its Undo does", name)
		case !undoes && listed:
			t.Errorf("undoPermissions lists %s, which has no Undo", name)
		}
		for _, p := range perms {
			need.add(p, "undo of "+name)
		}
	}
	for name := range undoPermissions {
		if _, ok := reg.Get(name); !ok {
			t.Errorf("undoPermissions lists %s, which is not a registered action", name)
		}
	}

	for _, x := range irctlPermissions {
		need.add(x.perm, x.why)
	}
	return need
}

// noKube is the Kubernetes of a check without a server: a manifest of a
// kind only the server knows fails the check.
func noKube() (*kube.Clients, error) {
	return nil, fmt.Errorf("the role check has no server: give the shipped manifests built-in kinds only")
}

// loadWithPlaceholders loads a shipped runbook with its defaults and a
// placeholder for each param that has no value, so that every step resolves.
func loadWithPlaceholders(t *testing.T, reg *action.Registry, file string) *runbook.Runbook {
	t.Helper()
	data, err := fs.ReadFile(irctl.Runbooks, file)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := runbook.Load(file, data, runbook.Options{Catalog: reg})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	set := map[string]string{}
	for _, p := range rb.Params {
		if _, ok := rb.Values[p.Name]; !ok {
			set[p.Name] = setPlaceholder(t, p)
		}
	}
	rb, err = runbook.Load(file, data, runbook.Options{Catalog: reg, Set: set, Incident: "SEC-20260101-001"})
	if err != nil {
		t.Fatalf("%s with placeholders %v: %v", file, set, err)
	}
	for _, ph := range runbook.Phases {
		for _, s := range rb.Phases[ph] {
			if len(s.Unresolved) > 0 {
				t.Fatalf("%s: step %s still needs %v after placeholders %v", file, s.Name, s.Unresolved, set)
			}
		}
	}
	return rb
}

// setPlaceholder is a --set value of the param's type.
func setPlaceholder(t *testing.T, p runbook.Param) string {
	switch p.Type {
	case runbook.String, runbook.Strings:
		if strings.HasSuffix(p.Name, "url") {
			return "http://placeholder.invalid/"
		}
		return "placeholder"
	case runbook.Int, runbook.Ints:
		return "1"
	case runbook.Bool:
		return "true"
	case runbook.Duration:
		return "1h"
	case runbook.CIDRs:
		return "192.0.2.0/24"
	case runbook.IPs:
		return "192.0.2.1"
	}
	t.Fatalf("param %s: no placeholder for type %q", p.Name, p.Type)
	return ""
}

type paramShape struct {
	desc   string
	params runbook.Params
}

// paramShapes are ways a step can use an action: its required params
// alone, then each optional param added in turn (bools both ways), so
// that every permission that depends on a param (names: get, selector:
// list, node_selector: list nodes, retain: VolumeSnapshotContents ...)
// is declared by some shape.
func paramShapes(spec runbook.Spec) []paramShape {
	base := map[string]any{}
	for _, d := range spec.Params {
		if d.Required {
			base[d.Name] = actionPlaceholder(d.Type)
		}
	}
	shapes := []paramShape{{"required params only", spec.MustBind(base)}}
	for _, d := range spec.Params {
		if d.Required {
			continue
		}
		values := []any{actionPlaceholder(d.Type)}
		if d.Type == runbook.Bool {
			values = append(values, false)
		}
		for _, v := range values {
			p := map[string]any{d.Name: v}
			for k, bv := range base {
				p[k] = bv
			}
			shapes = append(shapes, paramShape{fmt.Sprintf("with %s=%v", d.Name, v), spec.MustBind(p)})
		}
	}
	return shapes
}

// actionPlaceholder is a converted value of an action param's type.
func actionPlaceholder(typ runbook.Type) any {
	switch typ {
	case runbook.Int:
		return int64(1)
	case runbook.Bool:
		return true
	case runbook.Duration:
		return time.Minute
	case runbook.Strings:
		return []string{"placeholder"}
	case runbook.Ints:
		return []int64{1}
	case runbook.CIDRs:
		return []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	case runbook.IPs:
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	case runbook.Map:
		return map[string]string{"placeholder": "true"}
	}
	return "placeholder" // string and any
}

// responderRoleGrants parses the shipped ClusterRole and returns every
// grant with the rules (by index and resources) that make it.
func responderRoleGrants(t *testing.T, file string) map[grant][]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if role.Kind != "ClusterRole" || role.APIVersion != rbacv1.SchemeGroupVersion.String() || role.Name != "irctl-responder" {
		t.Fatalf("%s: want the %s ClusterRole irctl-responder, got %s %s %s", file, rbacv1.SchemeGroupVersion, role.APIVersion, role.Kind, role.Name)
	}
	if role.AggregationRule != nil {
		t.Fatalf("%s: an aggregated role's rules are not the file's; this test cannot check it", file)
	}
	granted := map[grant][]string{}
	for i, r := range role.Rules {
		name := fmt.Sprintf("#%d (%s: %s)", i+1, strings.Join(r.Resources, ","), strings.Join(r.Verbs, ","))
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("%s: rule %s uses nonResourceURLs or resourceNames, which no action needs", file, name)
		}
		if len(r.APIGroups) == 0 || len(r.Resources) == 0 || len(r.Verbs) == 0 {
			t.Errorf("%s: rule %s grants nothing (apiGroups, resources and verbs are all needed)", file, name)
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(list, rbacv1.APIGroupAll) || slices.ContainsFunc(list, func(s string) bool { return strings.HasSuffix(s, "/*") }) {
				t.Errorf("%s: rule %s uses a wildcard: name each group, resource and verb (least privilege)", file, name)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					k := grant{v, g, res}
					granted[k] = append(granted[k], name)
				}
			}
		}
	}
	return granted
}

// whoNeeds lists the reasons for a grant, the shipped runbooks' steps
// first.
func whoNeeds(why []string) string {
	why = slices.Clone(why)
	sort.Slice(why, func(i, j int) bool {
		ri, rj := strings.HasPrefix(why[i], "runbook "), strings.HasPrefix(why[j], "runbook ")
		if ri != rj {
			return ri
		}
		return why[i] < why[j]
	})
	const show = 3
	if len(why) <= show {
		return strings.Join(why, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(why[:show], "; "), len(why)-show)
}

func ruleNames(rules []string) string {
	return strings.Join(slices.Compact(slices.Sorted(slices.Values(rules))), " and ")
}

// The check above would pass vacuously if the grants were computed
// wrongly: make sure it names a rule gone missing and a rule too many, and
// that the permissions it collects are the ones expected.
func TestShippedRoleCheckSeesMissingAndExtraRules(t *testing.T) {
	need := requiredGrants(t)
	for _, g := range []grant{
		{"get", "", "pods/log"},
		{"list", "rbac.authorization.k8s.io", "clusterrolebindings"},
		{"create", "", "pods"},
		{"patch", "snapshot.storage.k8s.io", "volumesnapshotcontents"},
		{"create", "authentication.k8s.io", "selfsubjectreviews"},
		{"delete", "coordination.k8s.io", "leases"},
		{"delete", "networking.k8s.io", "networkpolicies"},
	} {
		if len(need[g]) == 0 {
			t.Errorf("%s should be needed", g)
		}
	}
	for _, g := range []grant{
		{"create", "", "pods/exec"},
		{"get", "", "persistentvolumes"},
		{"list", "", "secrets"},
	} {
		if len(need[g]) > 0 {
			t.Errorf("%s should not be needed, but is by %s", g, whoNeeds(need[g]))
		}
	}

	granted := responderRoleGrants(t, responderRoleFile)
	gone, extra := grant{"get", "", "pods/log"}, grant{"create", "", "pods/exec"}
	delete(granted, gone)
	granted[extra] = []string{"#99 (pods/exec: create)"}
	missing, unneeded := roleProblems(granted, need)
	if len(missing) != 1 || !strings.HasPrefix(missing[0], gone.String()+", needed by ") || !strings.Contains(missing[0], "(k8s.logs)") {
		t.Errorf("without %s: missing %q", gone, missing)
	}
	if len(unneeded) != 1 || !strings.Contains(unneeded[0], "#99") || !strings.Contains(unneeded[0], extra.String()) {
		t.Errorf("with %s: unneeded %q", extra, unneeded)
	}
}

// TestShippedRoleIsEnoughForClusterCompromisePreserve runs the preserve
// phase of the cluster-compromise runbook as a responder holding only the
// shipped role: the preflight passes, the pods' logs are saved (read
// through the API server from the sandbox's kubelets), the cluster state
// is dumped and the forensic copies are made.
func TestShippedRoleIsEnoughForClusterCompromisePreserve(t *testing.T) {
	h := newHarness(t, 2)
	r := h.newResponder()
	res := r.run("preserve", "--yes", "-f", "../../runbooks/k8s-cluster-compromise.yaml", "--set", "affected_selector=app=orchestrator",
		"--set", "evidence_selector=app=orchestrator") // not contained first: the pods are not quarantined
	t.Logf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	if res.code != 0 || strings.Contains(res.stderr, "permission preflight") || strings.Contains(res.stderr, "forbidden") {
		t.Fatalf("preserve as the responder: exit %d, want 0", res.code)
	}
	if !strings.Contains(res.stdout, "saved 2 of 2 container log(s)") {
		t.Errorf("the pods' logs were not saved:\n%s", res.stdout)
	}
	logs, _ := filepath.Glob(filepath.Join(h.evidenceDir(), "logs", h.ns, "*", "app.log"))
	if len(logs) != 2 {
		t.Errorf("log evidence %v, want one per pod", logs)
	}
	for _, f := range []string{"pods.yaml", "pod-descriptions.txt", "events.yaml", "images.yaml", "cronjobs.yaml", "jobs.yaml", "daemonsets.yaml",
		"deployments.yaml", "serviceaccounts.yaml", "roles.yaml", "rolebindings.yaml", "clusterroles.yaml", "clusterrolebindings.yaml", "rbac-events.yaml"} {
		if _, err := os.Stat(filepath.Join(h.evidenceDir(), "dump", f)); err != nil {
			t.Errorf("dump/%s: %v", f, err)
		}
	}
	copies, err := h.cs.CoreV1().Pods(h.ns).List(t.Context(), metav1.ListOptions{LabelSelector: kubeaction.LabelForensicCopyOf})
	if err != nil || len(copies.Items) != 2 {
		t.Errorf("want 2 forensic copies: %v %v", err, copies)
	}
}

// The role's Lease rule says where the Lease lives: the comment must name
// the namespace, flag and variable the lock really uses.
func TestShippedRoleNamesTheLockNamespace(t *testing.T) {
	data, err := os.ReadFile(responderRoleFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`namespace "` + lock.DefaultNamespace + `"`, "--lock-namespace", lock.NamespaceEnv} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not say %q about the responder lock's Lease", responderRoleFile, want)
		}
	}
}
