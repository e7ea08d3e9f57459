package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

const responderRoleFile = "../../" + kube.RoleFile

// responder is a non-admin identity bound to a copy of the shipped
// ClusterRole, whose rules a test can change.
type responder struct {
	h          *harness
	user, role string
	rules      []rbacv1.PolicyRule // the shipped role's
	kubeconfig string
}

func (h *harness) newResponder() *responder {
	h.t.Helper()
	data, err := os.ReadFile(responderRoleFile)
	if err != nil {
		h.t.Fatal(err)
	}
	var shipped rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &shipped); err != nil {
		h.t.Fatalf("%s: %v", responderRoleFile, err)
	}
	if shipped.Kind != "ClusterRole" || shipped.Name != "irctl-responder" || len(shipped.Rules) == 0 {
		h.t.Fatalf("%s: want the ClusterRole irctl-responder, got %s %s", responderRoleFile, shipped.Kind, shipped.Name)
	}
	r := &responder{h: h, user: "responder-" + randHex(4), rules: shipped.Rules}
	r.role = "irctl-responder-" + r.user
	cfg, err := h.sb.AddKubeUser(r.user, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx := h.t.Context()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: r.role}, Rules: shipped.Rules}
	if _, err := h.cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	_, err = h.cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: r.role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: r.user}},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}

	// A kubeconfig like the one a responder would have: their own
	// credentials, the incident's namespace as the default (which the
	// responder lock's Lease does not follow).
	kc := clientcmdapi.NewConfig()
	kc.Clusters["sandbox"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[r.user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["responder"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: r.user, Namespace: h.ns}
	kc.CurrentContext = "responder"
	r.kubeconfig = filepath.Join(h.t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, r.kubeconfig); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// grant replaces the role's rules and waits until the API server's
// authorizer has seen the change: probe is allowed exactly when want.
func (r *responder) grant(rules []rbacv1.PolicyRule, probe kube.Permission, want bool) {
	r.h.t.Helper()
	ctx := r.h.t.Context()
	role, err := r.h.cs.RbacV1().ClusterRoles().Get(ctx, r.role, metav1.GetOptions{})
	if err != nil {
		r.h.t.Fatal(err)
	}
	role.Rules = rules
	if _, err := r.h.cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		r.h.t.Fatal(err)
	}
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   r.user,
		Groups: []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: probe.Namespace, Verb: probe.Verb, Group: probe.Group, Resource: probe.Resource, Subresource: probe.Subresource,
		},
	}}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, err := r.h.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			r.h.t.Fatal(err)
		}
		if res.Status.Allowed == want {
			return
		}
	}
	r.h.t.Fatalf("RBAC change not visible after 10s: %s allowed should be %v", probe, want)
}

// run runs irctl as the responder.
func (r *responder) run(args ...string) result {
	return r.h.run(append(args, "--kubeconfig", r.kubeconfig)...)
}

// covers reports whether rule grants perm.
func covers(rule rbacv1.PolicyRule, perm kube.Permission) bool {
	resource := perm.Resource
	if perm.Subresource != "" {
		resource += "/" + perm.Subresource
	}
	return slices.Contains(rule.APIGroups, perm.Group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, perm.Verb)
}

// phasePermissions is what the engine's preflight checks for phase, plus
// the responder lock's Lease.
func (h *harness) phasePermissions(file string, set map[string]string, phase string) []kube.Permission {
	h.t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		h.t.Fatal(err)
	}
	reg := builtin.Registry()
	rb, err := runbook.Load(file, data, runbook.Options{Catalog: reg, Set: set})
	if err != nil {
		h.t.Fatal(err)
	}
	perms := []kube.Permission{{Verb: "create", Group: coordinationv1.GroupName, Resource: "leases", Namespace: lock.DefaultNamespace}}
	for _, s := range rb.Phases[phase] {
		a, _ := reg.Get(s.Action)
		if pa, ok := a.(action.Permissioned); ok {
			perms = append(perms, pa.Permissions(s.Params)...)
		}
	}
	return perms
}

// checkEveryRuleIsNeeded removes each rule of the shipped role in turn:
// when the phase needs a permission only that rule grants, the run must
// stop before changing anything (state() unchanged), naming what is
// missing. Then, with every rule back, the run must succeed.
func checkEveryRuleIsNeeded(t *testing.T, h *harness, r *responder, perms []kube.Permission, state func() string, args ...string) {
	t.Helper()
	for i, rule := range r.rules {
		rest := slices.Delete(slices.Clone(r.rules), i, i+1)
		var missing []kube.Permission
		for _, p := range perms {
			if covers(rule, p) && !slices.ContainsFunc(rest, func(o rbacv1.PolicyRule) bool { return covers(o, p) }) && !slices.Contains(missing, p) {
				missing = append(missing, p)
			}
		}
		name := strings.Join(rule.Resources, ",") + ":" + strings.Join(rule.Verbs, ",")
		if len(missing) == 0 {
			t.Logf("rule %s: not needed by this phase", name)
			continue
		}
		t.Run("without "+name, func(t *testing.T) {
			r.grant(rest, missing[0], false)
			before := state()
			res := r.run(args...)
			t.Logf("exit %d: %s", res.code, strings.TrimSpace(res.stderr))
			if missing[0].Resource == "leases" {
				// The responder lock is taken before the preflight runs.
				if res.code != exitcode.Precondition || !strings.Contains(res.stderr, "responder lock: not allowed to create") {
					t.Errorf("without the Lease rule: exit %d, want %d: %q", res.code, exitcode.Precondition, res.stderr)
				}
			} else {
				if res.code != exitcode.Precondition || !strings.Contains(res.stderr, "permission preflight") {
					t.Errorf("exit %d, want %d (permission preflight): %s", res.code, exitcode.Precondition, res.stderr)
				}
				for _, p := range missing {
					if !strings.Contains(res.stderr, p.String()) {
						t.Errorf("the error should name %q: %s", p, res.stderr)
					}
				}
			}
			// Both refusals point at the shipped role, which is there.
			if !strings.Contains(res.stderr, "(see "+strings.TrimPrefix(responderRoleFile, "../../")) {
				t.Errorf("the refusal should point at %s: %s", responderRoleFile, res.stderr)
			}
			if after := state(); after != before {
				t.Errorf("a refused run changed something:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	r.grant(r.rules, perms[0], true)
	if res := r.run(args...); res.code != 0 {
		t.Fatalf("with the shipped role: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}

// TestWithoutLeasePermissionsTheRunIsRefusedBeforeAnything gives the
// responder every permission of the shipped role except the Lease ones:
// the responder lock cannot be taken, so the run stops with exit 5 and
// one line naming what is missing, before the first write.
func TestWithoutLeasePermissionsTheRunIsRefusedBeforeAnything(t *testing.T) {
	h := newHarness(t, 3)
	r := h.newResponder()
	var rest []rbacv1.PolicyRule
	for _, rule := range r.rules {
		if !slices.Contains(rule.Resources, "leases") {
			rest = append(rest, rule)
		}
	}
	if len(rest) == len(r.rules) {
		t.Fatalf("%s grants no leases", responderRoleFile)
	}
	r.grant(rest, kube.Permission{Verb: "create", Group: coordinationv1.GroupName, Resource: "leases", Namespace: lock.DefaultNamespace}, false)
	before := h.podVersions()

	res := r.run("contain", "--yes")
	want := "irctl: responder lock: not allowed to create, get, update, delete leases.coordination.k8s.io in namespace " + lock.DefaultNamespace +
		"; nothing was changed (see runbooks/rbac/irctl-responder.yaml)"
	if res.code != exitcode.Precondition || strings.TrimSpace(res.stderr) != want {
		t.Errorf("exit %d, want %d\ngot  %q\nwant %q", res.code, exitcode.Precondition, strings.TrimSpace(res.stderr), want)
	}
	if after := h.podVersions(); after != before {
		t.Errorf("a refused run changed something:\nbefore %s\nafter  %s", before, after)
	}
	if recs := h.journal(); len(recs) != 0 {
		t.Errorf("a refused run journaled %d records", len(recs))
	}
	if _, err := h.cs.CoordinationV1().Leases(lock.DefaultNamespace).Get(t.Context(), lock.LeaseName(h.incident), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("want no Lease in %s, got %v", lock.DefaultNamespace, err)
	}
}

// podVersions is the namespace's pods with their resourceVersions and
// labels, and the database tables contain writes.
func (h *harness) podVersions() string {
	var b strings.Builder
	st := h.podState()
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(k + "@" + st[k] + " ")
	}
	return b.String() + h.dbState()
}

func TestShippedRoleIsEnoughForContainAndEveryRuleIsNeeded(t *testing.T) {
	h := newHarness(t, 3)
	r := h.newResponder()
	// As the harness runs it (defaultRunbookSets): no restart to do.
	perms := h.phasePermissions("../../runbooks/security-incident.yaml", map[string]string{"namespace": h.ns, "jwt_consumer_deployment": "", "evidence_selector": "app=orchestrator"}, "contain")
	checkEveryRuleIsNeeded(t, h, r, perms, h.podVersions, "contain", "--yes")

	for name, st := range h.podState() {
		if !strings.HasSuffix(st, "quarantine=true") {
			t.Errorf("pod %s not quarantined: %s", name, st)
		}
	}
	if _, err := h.cs.NetworkingV1().NetworkPolicies(h.ns).Get(t.Context(), "quarantine-policy", metav1.GetOptions{}); err != nil {
		t.Errorf("quarantine-policy: %v", err)
	}
	if _, err := h.cs.CoreV1().Secrets(h.ns).Get(t.Context(), "orchestrator-jwt-secret", metav1.GetOptions{}); err != nil {
		t.Errorf("rotated secret: %v", err)
	}
}

// TestShippedRoleIsEnoughForClusterCompromise runs the cordon and drain
// runbook as the responder, on a node of the test's own.
func TestShippedRoleIsEnoughForClusterCompromise(t *testing.T) {
	h := newHarness(t, 2)
	ctx := t.Context()
	node := "node-" + h.ns
	if _, err := h.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// On the compromised node: an affected pod, which is quarantined and
	// stays as evidence, and a bystander, which is evicted.
	victim := h.runningPodOn(node, map[string]string{"app": "orchestrator"})
	bystander := h.runningPodOn(node, map[string]string{"app": "web"})
	if _, err := h.cs.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db-credentials"},
		Data:       map[string][]byte{"username": []byte("app"), "password": []byte("exposed")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	file := "../../runbooks/k8s-cluster-compromise.yaml"
	set := map[string]string{"namespace": h.ns, "affected_selector": "app=orchestrator", "affected_nodes": node, "compromised_secret": "db-credentials"}
	args := []string{"contain", "--yes", "-f", file}
	for k, v := range set {
		args = append(args, "--set", k+"="+v)
	}
	state := func() string {
		n, err := h.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The node's spec, not its resourceVersion: kwok heartbeats
		// its status on its own schedule.
		return h.podVersions() + fmt.Sprintf(" node unschedulable=%v taints=%v", n.Spec.Unschedulable, n.Spec.Taints)
	}
	r := h.newResponder()
	checkEveryRuleIsNeeded(t, h, r, h.phasePermissions(file, set, "contain"), state, args...)

	n, err := h.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil || !n.Spec.Unschedulable {
		t.Errorf("node %s should be cordoned: %v", node, err)
	}
	pods := h.podState()
	if !strings.HasSuffix(pods[victim], "quarantine=true") {
		t.Errorf("the affected pod should stay, quarantined: %q", pods[victim])
	}
	if _, ok := pods[bystander]; ok {
		t.Errorf("the bystander pod %s should be evicted", bystander)
	}
	s, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "db-credentials", metav1.GetOptions{})
	if err != nil || string(s.Data["password"]) == "exposed" || string(s.Data["username"]) != "app" {
		t.Errorf("password should be rotated and username kept: %v", err)
	}
}

// runningPodOn creates a pod on node, with a controller so that a drain may
// evict it, and reports it Running as a kubelet would. The controller is
// an object no controller of the sandbox acts on (a ConfigMap), so nothing
// replaces the pod; it exists, as the garbage collector deletes pods whose
// owner is gone.
func (h *harness) runningPodOn(node string, labels map[string]string) string {
	h.t.Helper()
	ctx := h.t.Context()
	owner, err := h.cs.CoreV1().ConfigMaps(h.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "owner-" + randHex(3)},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	pod, err := h.cs.CoreV1().Pods(h.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "pod-" + randHex(4),
			Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name,
				UID: owner.UID, Controller: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	// kwok, which reports new pods' status too, may get there first.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := h.cs.CoreV1().Pods(h.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.Phase = corev1.PodRunning
		_, err = h.cs.CoreV1().Pods(h.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return pod.Name
}

// TestRotatedSecretValueNeverReachesOutputOrJournal runs contain at the
// most verbose log level and looks for the value the rotation stored.
func TestRotatedSecretValueNeverReachesOutputOrJournal(t *testing.T) {
	h := newHarness(t, 2)
	r := h.run("contain", "--yes", "--log-level", "debug", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("contain: exit %d %s", r.code, r.stderr)
	}
	s, err := h.cs.CoreV1().Secrets(h.ns).Get(t.Context(), "orchestrator-jwt-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := string(s.Data["secret"])
	journal, err := os.ReadFile(filepath.Join(h.stateDir, h.incident, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "journal": string(journal)} {
		if len(value) < 64 || strings.Contains(text, value) || strings.Contains(text, value[:24]) {
			t.Errorf("the rotated value leaked into %s", what)
		}
	}
	key, err := redact.LoadKey(filepath.Join(h.stateDir, h.incident))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(journal), redact.Fingerprint(key, s.Data["secret"])) {
		t.Error("the journal should record the new value's fingerprint")
	}
}
