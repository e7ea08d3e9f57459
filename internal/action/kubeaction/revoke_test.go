package kubeaction

import (
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
)

// authenticates asks the API server, as the token itself, who it is
// (SelfSubjectReview): only a valid token gets an answer.
func (f *fixture) authenticates(token string) bool {
	f.t.Helper()
	cfg := rest.AnonymousClientConfig(f.clients.Config)
	cfg.BearerToken = token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	_, err = cs.AuthenticationV1().SelfSubjectReviews().Create(f.t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsUnauthorized(err) {
		f.t.Fatalf("SelfSubjectReview: %v", err)
	}
	return err == nil
}

func TestRevokeServiceAccount(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cs := f.cs
	const sa = "intruder"
	saObj, err := cs.CoreV1().ServiceAccounts(f.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Labels: map[string]string{"team": "x"}},
		Secrets: []corev1.ObjectReference{{Name: "intruder-token"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: f.ns}
	alice := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}
	asUser := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccount:" + f.ns + ":" + sa}
	view := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}
	crb := f.ns + "-intruder-admin"
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: crb, Labels: map[string]string{"created-by": "attacker"}},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}, Subjects: []rbacv1.Subject{subject}}, metav1.CreateOptions{})
	mustCreate(err)
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoleBindings().Delete(t.Context(), crb, metav1.DeleteOptions{}) })
	_, err = cs.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, RoleRef: view, Subjects: []rbacv1.Subject{alice, subject}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = cs.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "as-user"}, RoleRef: view, Subjects: []rbacv1.Subject{asUser}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = cs.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}, RoleRef: view, Subjects: []rbacv1.Subject{alice}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = cs.CoreV1().Secrets(f.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "intruder-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: sa}},
		Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{})
	mustCreate(err)

	// A token minted before the revocation, as an attacker holding it would.
	tr, err := cs.CoreV1().ServiceAccounts(f.ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	mustCreate(err)
	stolen := tr.Status.Token
	if !f.authenticates(stolen) {
		t.Fatal("the token does not authenticate even before the revocation: the test would prove nothing")
	}

	a := RevokeIdentity{}
	p := RevokeIdentity{}.Spec().MustBind(map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": f.ns})
	rvs := func() map[string]string {
		m := map[string]string{}
		if b, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, crb, metav1.GetOptions{}); err == nil {
			m["crb"] = b.ResourceVersion
		}
		for _, n := range []string{"shared", "as-user", "unrelated"} {
			if b, err := cs.RbacV1().RoleBindings(f.ns).Get(ctx, n, metav1.GetOptions{}); err == nil {
				m[n] = b.ResourceVersion
			}
		}
		if s, err := cs.CoreV1().Secrets(f.ns).Get(ctx, "intruder-token", metav1.GetOptions{}); err == nil {
			m["secret"] = s.ResourceVersion
		}
		if s, err := cs.CoreV1().ServiceAccounts(f.ns).Get(ctx, sa, metav1.GetOptions{}); err == nil {
			m["sa"] = string(s.UID)
		}
		return m
	}
	before := rvs()
	plan, res := f.run(a, action.DryRunServer, p)
	if plan.Count != 5 || res.Changed != 5 || len(res.Failed) != 0 {
		t.Errorf("dry run: plan %+v, result %+v", plan, res)
	}
	if after := rvs(); len(after) != 6 || after["sa"] != before["sa"] || after["crb"] != before["crb"] || after["shared"] != before["shared"] || after["secret"] != before["secret"] {
		t.Fatalf("the server dry run changed something: %v -> %v", before, after)
	}
	if !f.authenticates(stolen) {
		t.Fatal("the server dry run invalidated the token")
	}

	plan, res = f.run(a, action.DryRunNone, p)
	if len(res.Failed) != 0 || res.Changed != 5 || !strings.Contains(res.Summary, "no longer authenticates") {
		t.Fatalf("apply: %+v", res)
	}
	targets := strings.Join(plan.Targets, "\n")
	for _, want := range []string{"delete clusterrolebinding/" + crb, "remove the subject from rolebinding/" + f.ns + "/shared", "delete rolebinding/" + f.ns + "/as-user", "intruder-token", "recreate ServiceAccount"} {
		if !strings.Contains(targets, want) {
			t.Errorf("plan targets lack %q:\n%s", want, targets)
		}
	}
	after := rvs()
	if _, ok := after["crb"]; ok {
		t.Error("the ClusterRoleBinding whose only subject it was is still there")
	}
	if _, ok := after["as-user"]; ok {
		t.Error("the binding naming the ServiceAccount as a user is still there")
	}
	if _, ok := after["secret"]; ok {
		t.Error("the legacy token Secret is still there")
	}
	if after["sa"] == "" || after["sa"] == before["sa"] || after["unrelated"] != before["unrelated"] {
		t.Errorf("want the ServiceAccount recreated (new uid) and the unrelated binding untouched: %v -> %v", before, after)
	}
	shared, _ := cs.RbacV1().RoleBindings(f.ns).Get(ctx, "shared", metav1.GetOptions{})
	if len(shared.Subjects) != 1 || shared.Subjects[0] != alice {
		t.Errorf("shared binding should keep alice only: %v", shared.Subjects)
	}
	newSA, _ := cs.CoreV1().ServiceAccounts(f.ns).Get(ctx, sa, metav1.GetOptions{})
	if newSA.Labels["team"] != "x" || newSA.UID == saObj.UID {
		t.Errorf("recreated ServiceAccount: %+v", newSA.ObjectMeta)
	}
	// kube-apiserver caches a successful token authentication for 10 s
	// (its token success cache), so a token used just before can work a
	// little longer; after that it must fail.
	deadline := time.Now().Add(30 * time.Second)
	for f.authenticates(stolen) {
		if time.Now().After(deadline) {
			t.Fatal("the token minted before the revocation still authenticates 30 s later")
		}
		time.Sleep(time.Second)
	}
	if again := f.plan(a, action.DryRunNone, p); again.Count != 1 {
		// Only the recreation is left to do: no binding, no token Secret.
		t.Errorf("after the revocation: %+v", again)
	}

	// Undo restores the bindings, with their labels, not the token.
	u, err := a.Undo(ctx, f.env(action.DryRunNone), res.Undo)
	if err != nil || u.Changed != 3 || len(u.Failed) != 0 {
		t.Fatalf("undo: %+v, %v", u, err)
	}
	back, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, crb, metav1.GetOptions{})
	if err != nil || back.RoleRef.Name != "cluster-admin" || len(back.Subjects) != 1 || back.Subjects[0] != subject || back.Labels["created-by"] != "attacker" {
		t.Errorf("restored ClusterRoleBinding: %+v, %v", back, err)
	}
	shared, _ = cs.RbacV1().RoleBindings(f.ns).Get(ctx, "shared", metav1.GetOptions{})
	if len(shared.Subjects) != 2 {
		t.Errorf("shared binding should have both subjects again: %v", shared.Subjects)
	}
	if f.authenticates(stolen) {
		t.Error("undo must not make the old token valid again")
	}
}

func TestRevokeUserSaysWhatCannotBeRevoked(t *testing.T) {
	f := newFixture(t)
	user := "mallory-" + f.ns
	subj := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}
	if _, err := f.cs.RbacV1().RoleBindings(f.ns).Create(t.Context(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "m"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"}, Subjects: []rbacv1.Subject{subj}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := RevokeIdentity{}
	p := RevokeIdentity{}.Spec().MustBind(map[string]any{"kind": "User", "name": user})
	plan, res := f.run(a, action.DryRunNone, p)
	if plan.Count != 1 || !strings.Contains(strings.Join(plan.Warnings, " "), "cannot revoke a user's client certificate") {
		t.Errorf("plan: %+v", plan)
	}
	if _, err := f.cs.RbacV1().RoleBindings(f.ns).Get(t.Context(), "m", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("binding should be gone: %v (%+v)", err, res)
	}
	if again := f.plan(a, action.DryRunNone, p); !again.Noop {
		t.Errorf("nothing left: %+v", again)
	}
}

func TestRevokeValidatesParams(t *testing.T) {
	v := RevokeIdentity{}.Spec().Validate
	for _, p := range []map[string]any{
		{"kind": "Pod", "name": "x"},
		{"kind": "ServiceAccount", "name": "x"},
		{"kind": "User", "name": "x", "namespace": "y"},
		{"kind": "Group", "name": "system:masters"},
		{"kind": "User", "name": ""},
	} {
		if err := v(RevokeIdentity{}.Spec().MustBind(p)); err == nil {
			t.Errorf("%v: want an error", p)
		}
	}
}

// Audit logs name a ServiceAccount as the user system:serviceaccount:NS:NAME;
// revoking that user revokes the ServiceAccount, tokens included.
func TestRevokeUserNamedLikeAServiceAccountIsTheServiceAccount(t *testing.T) {
	p := RevokeIdentity{}.Spec().MustBind(map[string]any{"kind": "User", "name": "system:serviceaccount:kube-system:kube-cleanup"})
	r, err := revokeParams(p)
	if err != nil || r != (revokeTarget{kind: kindSA, name: "kube-cleanup", ns: "kube-system"}) {
		t.Fatalf("got %+v, %v", r, err)
	}
	var sawTokens bool
	for _, perm := range (RevokeIdentity{}).Permissions(p) {
		sawTokens = sawTokens || (perm.Resource == "serviceaccounts" && perm.Subresource == "token" && perm.Namespace == "kube-system")
	}
	if !sawTokens {
		t.Fatal("the ServiceAccount's token permissions are not declared")
	}
}
