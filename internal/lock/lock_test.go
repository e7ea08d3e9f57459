package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func wantMessage(namespace, verbs string) string {
	return "responder lock: not allowed to " + verbs + " leases.coordination.k8s.io in namespace " + namespace +
		"; nothing was changed (see runbooks/rbac/irctl-responder.yaml)"
}

func TestRoleFileExists(t *testing.T) {
	if _, err := os.Stat("../../" + kube.RoleFile); err != nil {
		t.Errorf("the refusal points at %s: %v", kube.RoleFile, err)
	}
}

// fakeServer answers every SelfSubjectAccessReview with allowed (an
// authorizer that says yes to the review but no to the request, as a
// webhook might) and the Lease calls with status, so that the refusals
// of the calls themselves are tested.
func fakeServer(t *testing.T, create, get int) *kube.Clients {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		lease := schema.GroupResource{Group: coordinationv1.GroupName, Resource: "leases"}
		var body any
		code := http.StatusOK
		switch {
		case strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews"):
			var review authorizationv1.SelfSubjectAccessReview
			_ = json.NewDecoder(r.Body).Decode(&review)
			review.Status.Allowed = true
			body, code = &review, http.StatusCreated
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/leases"):
			code = create
			if create == http.StatusConflict {
				body = apierrors.NewAlreadyExists(lease, "irctl-sec-20260101-001").Status()
			} else {
				body = apierrors.NewForbidden(lease, "", nil).Status()
			}
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/leases/"):
			code = get
			body = apierrors.NewForbidden(lease, "irctl-sec-20260101-001", nil).Status()
		default:
			code = http.StatusNotFound
			body = apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path).Status()
		}
		if st, ok := body.(metav1.Status); ok {
			st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
			body = st
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	c, err := kube.NewClients(&rest.Config{Host: srv.URL}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestForbiddenLeaseCallsAreAPreconditionNamingTheVerb(t *testing.T) {
	for _, tc := range []struct {
		name        string
		create, get int
		verb        string
	}{
		{"create", http.StatusForbidden, http.StatusOK, "create"},
		{"get of an existing lease", http.StatusConflict, http.StatusForbidden, "get"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeServer(t, tc.create, tc.get)
			l, err := Acquire(t.Context(), Options{Incident: "SEC-20260101-001", Holder: "test", Kube: c, Namespace: "ops"})
			if l != nil || exitcode.Code(err) != exitcode.Precondition {
				t.Fatalf("want exit %d, got %d: %v", exitcode.Precondition, exitcode.Code(err), err)
			}
			if err.Error() != wantMessage("ops", tc.verb) {
				t.Errorf("got  %q\nwant %q", err, wantMessage("ops", tc.verb))
			}
		})
	}
}

// TestLeasePermissionsAreCheckedBeforeTheLeaseIsTaken runs against the
// sandbox's API server with a user whose Role grants only some of the
// Lease verbs: a lock that could be taken but not renewed or released
// would hold the incident after the run, so it is refused up front.
func TestLeasePermissionsAreCheckedBeforeTheLeaseIsTaken(t *testing.T) {
	sb := sandboxtest.Get(t)
	ctx := t.Context()
	admin, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := "lock-" + randHex(4)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := "responder-" + randHex(4)
	cfg, err := sb.AddKubeUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClients(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Incident: "SEC-20260101-001", Holder: user + " (pid 1)", Kube: c, Namespace: ns}
	leaseGone := func() {
		t.Helper()
		if _, err := admin.CoordinationV1().Leases(ns).Get(ctx, LeaseName(o.Incident), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("want no Lease, got %v", err)
		}
	}

	l, err := Acquire(ctx, o)
	if l != nil || exitcode.Code(err) != exitcode.Precondition || err.Error() != wantMessage(ns, "create, get, update, delete") {
		t.Fatalf("without any grant: exit %d, %v", exitcode.Code(err), err)
	}
	leaseGone()

	grant(t, admin, ns, user, []string{"create", "get", "update"}, "update", true)
	l, err = Acquire(ctx, o)
	if l != nil || exitcode.Code(err) != exitcode.Precondition || err.Error() != wantMessage(ns, "delete") {
		t.Fatalf("without delete: exit %d, %v", exitcode.Code(err), err)
	}
	leaseGone()

	grant(t, admin, ns, user, []string{"create", "get", "update", "delete"}, "delete", true)
	runCtx, cancel := context.WithCancel(ctx)
	l, err = Acquire(runCtx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(ctx, o); !IsHeld(err) || !strings.Contains(err.Error(), user+" (pid 1)") {
		t.Errorf("a second Acquire should be refused naming the holder: %v", err)
	}
	// An interrupted run (its context cancelled) still releases the Lease.
	cancel()
	l.Release()
	leaseGone()
}

// grant (re)binds user to a Role in ns with the given Lease verbs and
// waits until the authorizer answers probe as want.
func grant(t *testing.T, admin kubernetes.Interface, ns, user string, verbs []string, probe string, want bool) {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "lease-holder", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: verbs}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := admin.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	_, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lease-holder", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "lease-holder"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: probe, Group: coordinationv1.GroupName, Resource: "leases"},
	}}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed == want {
			return
		}
	}
	t.Fatalf("RBAC change not visible after 10s: %s leases allowed should be %v", probe, want)
}
