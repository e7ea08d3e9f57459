package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// RevokeIdentity takes every RBAC grant away from a user, group or
// ServiceAccount, and for a ServiceAccount also invalidates its tokens.
// It is what the cluster compromise runbook's `kubectl patch user` meant:
// Kubernetes has no user objects, so revoking a user is removing it from
// bindings.
type RevokeIdentity struct{}

// Subject kinds, as RBAC names them.
const (
	kindUser = rbacv1.UserKind
	kindGrp  = rbacv1.GroupKind
	kindSA   = rbacv1.ServiceAccountKind
)

func (RevokeIdentity) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.revoke-identity",
		Description: "Revoke a Kubernetes identity: remove the subject from every RoleBinding and ClusterRoleBinding " +
			"(deleting bindings it alone was bound by); for a ServiceAccount also delete its legacy token Secrets and " +
			"recreate it, so that every token issued for it stops authenticating. Undo restores the bindings, not the tokens.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "kind", Type: runbook.String, Required: true, Description: "User, Group or ServiceAccount"},
			{Name: "name", Type: runbook.String, Required: true, Description: "the user, group or ServiceAccount name; a User named system:serviceaccount:NS:NAME (as audit logs show it) is that ServiceAccount"},
			{Name: "namespace", Type: runbook.String, Description: "the ServiceAccount's namespace (ServiceAccount only)"},
		},
		Validate: func(p runbook.Params) error { _, err := revokeParams(p); return err },
	}
}

type revokeTarget struct{ kind, name, ns string }

const serviceAccountUserPrefix = "system:serviceaccount:"

func revokeParams(p runbook.Params) (revokeTarget, error) {
	r := revokeTarget{kind: p.String("kind"), name: p.String("name"), ns: p.String("namespace")}
	// The API server authenticates a ServiceAccount as the user
	// system:serviceaccount:NS:NAME; revoking that user is revoking it.
	if rest, ok := strings.CutPrefix(r.name, serviceAccountUserPrefix); ok && r.kind == kindUser && r.ns == "" {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			r = revokeTarget{kind: kindSA, name: name, ns: ns}
		}
	}
	switch r.kind {
	case kindUser, kindGrp:
		if r.ns != "" {
			return r, fmt.Errorf("namespace is for a ServiceAccount; a %s is cluster-wide", r.kind)
		}
	case kindSA:
		if errs := validation.IsDNS1123Subdomain(r.name); len(errs) > 0 {
			return r, fmt.Errorf("name %q: %s", r.name, errs[0])
		}
		if errs := validation.IsDNS1123Label(r.ns); len(errs) > 0 {
			return r, fmt.Errorf("namespace %q: a ServiceAccount needs its namespace: %s", r.ns, errs[0])
		}
		return r, nil
	default:
		return r, fmt.Errorf("kind %q: want User, Group or ServiceAccount", r.kind)
	}
	if r.name == "" {
		return r, fmt.Errorf("name is empty")
	}
	if r.kind == kindGrp && (r.name == "system:masters" || r.name == "system:authenticated" || r.name == "system:serviceaccounts") {
		return r, fmt.Errorf("group %q cannot be revoked through RBAC (system:masters bypasses it; the others are everyone)", r.name)
	}
	return r, nil
}

func (r revokeTarget) String() string {
	if r.kind == kindSA {
		return "ServiceAccount " + r.ns + "/" + r.name
	}
	return r.kind + " " + r.name
}

// matches reports whether a binding subject is the identity. A
// ServiceAccount is also the user system:serviceaccount:NS:NAME.
func (r revokeTarget) matches(s rbacv1.Subject) bool {
	switch r.kind {
	case kindSA:
		return (s.Kind == kindSA && s.Name == r.name && s.Namespace == r.ns) ||
			(s.Kind == kindUser && s.Name == "system:serviceaccount:"+r.ns+":"+r.name)
	default:
		return s.Kind == r.kind && s.Name == r.name
	}
}

func (RevokeIdentity) Permissions(p runbook.Params) []kube.Permission {
	const g = rbacv1.GroupName
	perms := []kube.Permission{
		{Verb: "list", Group: g, Resource: "clusterrolebindings"},
		{Verb: "list", Group: g, Resource: "rolebindings"},
		{Verb: "delete", Group: g, Resource: "clusterrolebindings"},
		{Verb: "delete", Group: g, Resource: "rolebindings"},
		{Verb: "update", Group: g, Resource: "clusterrolebindings"},
		{Verb: "update", Group: g, Resource: "rolebindings"},
		// Updating a binding to a role the responder does not hold itself
		// needs bind on that role (RBAC's escalation check).
		{Verb: "bind", Group: g, Resource: "clusterroles"},
		{Verb: "bind", Group: g, Resource: "roles"},
	}
	// Anything but a user or group (Validate lets only ServiceAccount
	// through) declares the ServiceAccount's permissions too.
	if r, _ := revokeParams(p); r.kind != kindUser && r.kind != kindGrp {
		ns := r.ns
		perms = append(perms,
			kube.Permission{Verb: "get", Resource: "secrets", Namespace: ns},
			kube.Permission{Verb: "delete", Resource: "secrets", Namespace: ns},
			kube.Permission{Verb: "get", Resource: "serviceaccounts", Namespace: ns},
			kube.Permission{Verb: "delete", Resource: "serviceaccounts", Namespace: ns},
			kube.Permission{Verb: "create", Resource: "serviceaccounts", Namespace: ns},
			// The proof: a token minted before no longer authenticates.
			kube.Permission{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: ns},
			kube.Permission{Verb: "create", Group: authenticationv1.GroupName, Resource: "tokenreviews"},
		)
	}
	return perms
}

// bindingChange is one binding the identity is removed from: the whole
// binding when it is deleted, else the subjects taken out.
type bindingChange struct {
	Kind      string            `json:"kind"` // ClusterRoleBinding or RoleBinding
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name"`
	Delete    bool              `json:"delete"`
	RoleRef   rbacv1.RoleRef    `json:"roleRef"`
	Subjects  []rbacv1.Subject  `json:"subjects"` // removed ones, or all when deleted
	Labels    map[string]string `json:"labels,omitempty"`
	Annots    map[string]string `json:"annotations,omitempty"`
	uid, rv   string
}

func (b bindingChange) ref() string {
	if b.Namespace != "" {
		return "rolebinding/" + b.Namespace + "/" + b.Name
	}
	return "clusterrolebinding/" + b.Name
}

type revokeState struct {
	bindings []bindingChange
	tokens   []string // legacy token Secrets
	sa       *corev1.ServiceAccount
}

func (RevokeIdentity) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	r, err := revokeParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	st, err := findGrants(ctx, c, r)
	if err != nil {
		return nil, err
	}
	plan := &action.Plan{State: st}
	var targets []string
	for _, b := range st.bindings {
		what := "remove the subject from " + b.ref() + " (to " + b.RoleRef.Kind + " " + b.RoleRef.Name + ")"
		if b.Delete {
			what = "delete " + b.ref() + " (to " + b.RoleRef.Kind + " " + b.RoleRef.Name + "): its only subject"
		}
		targets = append(targets, what)
	}
	for _, s := range st.tokens {
		targets = append(targets, "delete legacy token Secret "+r.ns+"/"+s)
	}
	plan.Count = len(st.bindings) + len(st.tokens)
	switch r.kind {
	case kindSA:
		if st.sa != nil {
			targets = append(targets, "delete and recreate ServiceAccount "+r.ns+"/"+r.name+" (uid "+string(st.sa.UID)+"): every token bound to the old uid stops authenticating")
			plan.Count++
			plan.Warnings = append(plan.Warnings, "pods running as "+r.String()+" lose API access until they are restarted; undo restores the bindings, not the tokens",
				"kube-apiserver caches a successful token authentication for 10 s (per server): a token used just before keeps working that long")
		} else {
			plan.Warnings = append(plan.Warnings, r.String()+" does not exist: only its bindings are removed")
		}
	case kindUser:
		plan.Warnings = append(plan.Warnings, "Kubernetes cannot revoke a user's client certificate: it stays valid until it expires (only rotating the cluster CA ends it sooner); "+
			"tokens from an OIDC provider or a static token file are revoked there, not here. Removing every RBAC grant is what irctl can do; the user still authenticates")
	case kindGrp:
		plan.Warnings = append(plan.Warnings, "group membership is asserted by the authenticator (certificate O=, OIDC groups claim): members keep authenticating, only the group's grants are removed")
	}
	plan.Targets = action.Abbreviate(targets, 50)
	plan.Noop = plan.Count == 0
	plan.Summary = fmt.Sprintf("revoke %s: %d binding(s), %d legacy token Secret(s)", r, len(st.bindings), len(st.tokens))
	if r.kind == kindSA && st.sa != nil {
		plan.Summary += ", recreate the ServiceAccount"
	}
	if plan.Noop {
		plan.Summary = fmt.Sprintf("%s has no RBAC bindings and nothing to invalidate", r)
	}
	return plan, nil
}

func findGrants(ctx context.Context, c *kube.Clients, r revokeTarget) (*revokeState, error) {
	st := &revokeState{}
	rbac := c.Core.RbacV1()
	crbs, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ClusterRoleBindings: %s", kube.Short(err))
	}
	for _, b := range crbs.Items {
		if ch, ok := change(r, "ClusterRoleBinding", b.ObjectMeta, b.RoleRef, b.Subjects); ok {
			st.bindings = append(st.bindings, ch)
		}
	}
	rbs, err := rbac.RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list RoleBindings: %s", kube.Short(err))
	}
	for _, b := range rbs.Items {
		if ch, ok := change(r, "RoleBinding", b.ObjectMeta, b.RoleRef, b.Subjects); ok {
			st.bindings = append(st.bindings, ch)
		}
	}
	if r.kind != kindSA {
		return st, nil
	}
	sa, err := c.Core.CoreV1().ServiceAccounts(r.ns).Get(ctx, r.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("get %s: %s", r, kube.Short(err))
	default:
		st.sa = sa
	}
	if st.sa == nil {
		return st, nil
	}
	// The token Secrets the ServiceAccount names, read one by one: listing
	// Secrets would let the responder read every secret value in the
	// namespace. A token Secret it does not name is invalidated all the
	// same, since a legacy token carries the ServiceAccount's uid.
	for _, ref := range st.sa.Secrets {
		s, err := c.Core.CoreV1().Secrets(r.ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get Secret %s/%s: %s", r.ns, ref.Name, kube.Short(err))
		}
		if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == r.name {
			st.tokens = append(st.tokens, s.Name)
		}
	}
	sort.Strings(st.tokens)
	return st, nil
}

func change(r revokeTarget, kind string, m metav1.ObjectMeta, ref rbacv1.RoleRef, subjects []rbacv1.Subject) (bindingChange, bool) {
	var removed, kept []rbacv1.Subject
	for _, s := range subjects {
		if r.matches(s) {
			removed = append(removed, s)
		} else {
			kept = append(kept, s)
		}
	}
	if len(removed) == 0 {
		return bindingChange{}, false
	}
	ch := bindingChange{Kind: kind, Namespace: m.Namespace, Name: m.Name, Delete: len(kept) == 0, RoleRef: ref, Subjects: removed, uid: string(m.UID), rv: m.ResourceVersion}
	if ch.Delete {
		ch.Labels, ch.Annots = m.Labels, m.Annotations
	}
	return ch, true
}

type revokeUndo struct {
	Bindings []bindingChange `json:"bindings"`
}

func (a RevokeIdentity) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	r, err := revokeParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	st := plan.State.(*revokeState)
	dry := env.DryRun == action.DryRunServer
	res := &action.Result{Irreversible: "tokens are not restored by undo: an invalidated token stays invalid"}
	var done []bindingChange
	for _, b := range st.bindings {
		if err := revokeBinding(ctx, c, r, b, dry); err != nil {
			res.Failed = append(res.Failed, action.Failure{Target: b.ref(), Error: kube.Short(err)})
			continue
		}
		done = append(done, b)
	}
	res.Changed = len(done)
	if len(done) > 0 {
		res.Undo, _ = json.Marshal(revokeUndo{Bindings: done})
	}
	recreated := false
	if r.kind == kindSA {
		del := metav1.DeleteOptions{DryRun: kube.DryRunOpt(dry)}
		for _, s := range st.tokens {
			if err := c.Core.CoreV1().Secrets(r.ns).Delete(ctx, s, del); err != nil && !apierrors.IsNotFound(err) {
				res.Failed = append(res.Failed, action.Failure{Target: "secret/" + r.ns + "/" + s, Error: kube.Short(err)})
				continue
			}
			res.Changed++
		}
		if st.sa != nil {
			if err := recreateSA(ctx, c, st.sa, dry); err != nil {
				res.Failed = append(res.Failed, action.Failure{Target: "serviceaccount/" + r.ns + "/" + r.name, Error: err.Error()})
			} else {
				res.Changed++
				recreated = !dry
			}
		}
	}
	res.Summary = fmt.Sprintf("revoked %s: %d binding(s) changed, %d legacy token Secret(s) deleted", r, len(done), len(st.tokens))
	if recreated {
		res.Summary += "; ServiceAccount recreated, a token issued before no longer authenticates"
	}
	if dry {
		res.Summary = "would have " + res.Summary
	}
	return res, nil
}

// revokeBinding deletes the binding (UID and resourceVersion preconditions:
// only the binding as planned) or takes the subject out of it.
func revokeBinding(ctx context.Context, c *kube.Clients, r revokeTarget, b bindingChange, dry bool) error {
	rbac := c.Core.RbacV1()
	opts := metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	if b.Delete {
		del := metav1.DeleteOptions{DryRun: kube.DryRunOpt(dry), Preconditions: &metav1.Preconditions{UID: ptr.To(ktypes.UID(b.uid)), ResourceVersion: &b.rv}}
		var err error
		if b.Namespace == "" {
			err = rbac.ClusterRoleBindings().Delete(ctx, b.Name, del)
		} else {
			err = rbac.RoleBindings(b.Namespace).Delete(ctx, b.Name, del)
		}
		if apierrors.IsConflict(err) {
			return fmt.Errorf("changed since the plan: run the step again")
		}
		return err
	}
	keep := func(subjects []rbacv1.Subject) []rbacv1.Subject {
		return slices.DeleteFunc(subjects, r.matches)
	}
	if b.Namespace == "" {
		cur, err := rbac.ClusterRoleBindings().Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Subjects = keep(cur.Subjects)
		_, err = rbac.ClusterRoleBindings().Update(ctx, cur, opts)
		return err
	}
	cur, err := rbac.RoleBindings(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Subjects = keep(cur.Subjects)
	_, err = rbac.RoleBindings(b.Namespace).Update(ctx, cur, opts)
	return err
}

// recreateSA deletes the ServiceAccount and creates it again with the same
// name, labels, annotations and pull secrets: the new UID invalidates
// every token bound to the old one. Before, it mints a short token, and
// after it checks with a TokenReview that the token no longer works.
func recreateSA(ctx context.Context, c *kube.Clients, sa *corev1.ServiceAccount, dry bool) error {
	sas := c.Core.CoreV1().ServiceAccounts(sa.Namespace)
	var probe string
	if !dry {
		tr, err := sas.CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("minting a probe token: %s", kube.Short(err))
		}
		probe = tr.Status.Token
	}
	del := metav1.DeleteOptions{DryRun: kube.DryRunOpt(dry), Preconditions: &metav1.Preconditions{UID: &sa.UID}}
	if err := sas.Delete(ctx, sa.Name, del); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete: %s", kube.Short(err))
	}
	if dry {
		return nil // the dry-run delete left it in place: a create would conflict
	}
	fresh := &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace, Labels: sa.Labels, Annotations: sa.Annotations},
		ImagePullSecrets:             sa.ImagePullSecrets,
		AutomountServiceAccountToken: sa.AutomountServiceAccountToken,
	}
	created, err := sas.Create(ctx, fresh, metav1.CreateOptions{FieldManager: kube.FieldManager})
	if err != nil {
		return fmt.Errorf("deleted, but creating it again failed (create it by hand): %s", kube.Short(err))
	}
	review, err := c.Core.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: probe}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("recreated (uid %s), but the TokenReview proving the old tokens invalid failed: %s", created.UID, kube.Short(err))
	}
	if review.Status.Authenticated {
		return fmt.Errorf("recreated (uid %s), but a token issued before still authenticates", created.UID)
	}
	return nil
}

func (RevokeIdentity) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[revokeUndo](env, raw)
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	res := &action.Result{}
	for _, b := range u.Bindings {
		if err := restoreBinding(ctx, c, b, dry); err != nil {
			res.Failed = append(res.Failed, action.Failure{Target: b.ref(), Error: kube.Short(err)})
			continue
		}
		res.Changed++
	}
	res.Summary = fmt.Sprintf("restored %d binding(s); tokens invalidated stay invalid", res.Changed)
	return res, nil
}

// restoreBinding creates a deleted binding again, or puts the removed
// subjects back into one that is still there.
func restoreBinding(ctx context.Context, c *kube.Clients, b bindingChange, dry bool) error {
	rbac := c.Core.RbacV1()
	create := metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	update := metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
	meta := metav1.ObjectMeta{Name: b.Name, Namespace: b.Namespace, Labels: b.Labels, Annotations: b.Annots}
	merge := func(ref rbacv1.RoleRef, cur []rbacv1.Subject) ([]rbacv1.Subject, error) {
		if ref != b.RoleRef {
			return nil, fmt.Errorf("now refers to %s %s, not %s %s: left alone", ref.Kind, ref.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if !slices.Contains(cur, s) {
				cur = append(cur, s)
			}
		}
		return cur, nil
	}
	if b.Namespace == "" {
		_, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: b.RoleRef, Subjects: b.Subjects}, create)
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		cur, err := rbac.ClusterRoleBindings().Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Subjects, err = merge(cur.RoleRef, cur.Subjects); err != nil {
			return err
		}
		_, err = rbac.ClusterRoleBindings().Update(ctx, cur, update)
		return err
	}
	_, err := rbac.RoleBindings(b.Namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: b.RoleRef, Subjects: b.Subjects}, create)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := rbac.RoleBindings(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Subjects, err = merge(cur.RoleRef, cur.Subjects); err != nil {
		return err
	}
	_, err = rbac.RoleBindings(b.Namespace).Update(ctx, cur, update)
	return err
}
