package kubeaction

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
)

// readerDeployment runs a Deployment whose pods read Secret secret as an
// env var, and waits for its rollout.
func (f *fixture) readerDeployment(name, secret string, replicas int32) {
	f.t.Helper()
	labels := map[string]string{"app": name}
	grace := int64(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{Name: "api", Image: "example.com/api:1", Env: []corev1.EnvVar{{Name: "JWT_SECRET",
					ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "secret"}}}}}}}}},
	}
	if _, err := f.cs.AppsV1().Deployments(f.ns).Create(f.t.Context(), d, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.waitReaders(name)
}

func (f *fixture) waitReaders(name string) {
	f.t.Helper()
	env := f.env(action.DryRunNone)
	if err := WaitDeploymentRollout(f.t.Context(), env, f.clients, f.ns, name, 2*time.Minute); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) annotatedSecret(name string, ann map[string]string) {
	f.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}, Data: map[string][]byte{"secret": []byte("CANARY-value-" + name)}}
	if _, err := f.cs.CoreV1().Secrets(f.ns).Create(f.t.Context(), s, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) rotatedCheck(declared time.Time, names ...string) (*action.Result, error) {
	f.t.Helper()
	a := SecretsRotated{}
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "names": names})
	plan := f.plan(a, action.DryRunNone, p)
	env := f.env(action.DryRunNone)
	env.Declared = func() (time.Time, error) { return declared, nil }
	return a.Apply(f.t.Context(), env, p, plan)
}

// A rotated Secret whose consumers still run the pods started before the
// rotation fails the check, naming the pods; after a rollout restart it
// passes. Secrets rotated for another incident, before the declaration,
// never, or missing fail with the reason.
func TestSecretsRotatedNeedsRotationAndFreshPods(t *testing.T) {
	f := newFixture(t)
	declared := time.Now().Add(-time.Hour)
	f.readerDeployment("api", "jwt", 2)
	pods, err := f.cs.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var old []string
	var latest time.Time
	for _, p := range pods.Items {
		if podRunsOrWill(&p) {
			old = append(old, p.Name)
			if s := podStarted(&p); s.After(latest) {
				latest = s
			}
		}
	}
	if len(old) != 2 {
		t.Fatalf("want 2 running pods, got %v", old)
	}
	// Rotated (as k8s.secret-rotate records it) a second after the pods
	// started; the check reads the annotations, never the value.
	rotatedAt := latest.Truncate(time.Second).Add(time.Second)
	f.annotatedSecret("jwt", map[string]string{RotatedForIncident: f.incident, RotatedAt: rotatedAt.UTC().Format(time.RFC3339)})

	res, err := f.rotatedCheck(declared, "jwt")
	if err == nil {
		t.Fatalf("pods started before the rotation should fail the check: %+v", res.Table)
	}
	for _, p := range old {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("the error should name stale pod %s: %v", p, err)
		}
	}
	if res == nil || len(res.Table.Rows) != 1 || res.Table.Rows[0][2] != "deployment/api" || !strings.Contains(res.Table.Rows[0][3], old[0]) {
		t.Fatalf("table: %+v", res)
	}

	// A consumer whose copy needs no restart can be left out.
	a := SecretsRotated{}
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "names": []string{"jwt"}, "ignore": []string{"deployment/api"}})
	env := f.env(action.DryRunNone)
	env.Declared = func() (time.Time, error) { return declared, nil }
	res, err = a.Apply(t.Context(), env, p, f.plan(a, action.DryRunNone, p))
	if err != nil || res.Table.Rows[0][2] != "deployment/api (ignored)" {
		t.Fatalf("with deployment/api ignored: %v %+v", err, res)
	}

	// Restart once the rotation is in the past, as the rotating step does.
	time.Sleep(time.Until(rotatedAt.Add(100 * time.Millisecond)))
	if err := RestartDeployment(t.Context(), f.clients, f.ns, "api", time.Now(), false); err != nil {
		t.Fatal(err)
	}
	f.waitReaders("api")
	// The old pods terminate (they no longer count once being deleted).
	res, err = f.rotatedCheck(declared, "jwt")
	if err != nil {
		t.Fatalf("after the restart: %v\n%+v", err, res)
	}
	if res.Table.Rows[0][1] != rotatedAt.UTC().Format(time.RFC3339) || res.Table.Rows[0][3] != "none" {
		t.Errorf("table after the restart: %+v", res.Table.Rows)
	}
	for _, cell := range res.Table.Rows[0] {
		if strings.Contains(cell, "CANARY") {
			t.Errorf("a Secret's value in the table: %v", res.Table.Rows)
		}
	}

	// Not rotated for this incident, in every way.
	f.annotatedSecret("other", map[string]string{RotatedForIncident: "SEC-OTHER-1", RotatedAt: rotatedAt.UTC().Format(time.RFC3339)})
	f.annotatedSecret("early", map[string]string{RotatedForIncident: f.incident, RotatedAt: declared.Add(-time.Minute).UTC().Format(time.RFC3339)})
	f.annotatedSecret("never", nil)
	res, err = f.rotatedCheck(declared, "jwt", "other", "early", "never", "missing")
	if err == nil {
		t.Fatal("unrotated Secrets should fail the check")
	}
	for _, w := range []string{
		"Secret " + f.ns + "/other was rotated for incident SEC-OTHER-1, not " + f.incident,
		"Secret " + f.ns + "/early was rotated at",
		"before the incident was declared",
		"Secret " + f.ns + "/never was not rotated by irctl",
		"Secret " + f.ns + "/missing not found",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "/jwt") {
		t.Errorf("the rotated Secrets should pass: %v", err)
	}
	if res.Table.Total != 5 || !strings.Contains(res.Summary, "4 not rotated, 0 stale pod(s)") {
		t.Errorf("result: %s %+v", res.Summary, res.Table)
	}
}

func TestSecretsRotatedValidatesItsParams(t *testing.T) {
	a := SecretsRotated{}
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"namespace": "x", "names": []string{}}, "names is empty"},
		{map[string]any{"namespace": "x", "names": []string{"Bad_Name"}}, `names: "Bad_Name"`},
		{map[string]any{"namespace": "x", "names": []string{"a"}, "ignore": []string{"postgres"}}, `ignore: "postgres": want kind/name`},
	} {
		p, err := a.Spec().Bind(tc.vals)
		if err == nil {
			err = a.Spec().Validate(p)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.vals, err, tc.want)
		}
	}
	// The shipped responder role grants get on Secrets, not list.
	perms := a.Permissions(a.Spec().MustBind(map[string]any{"namespace": "x", "names": []string{"a"}}))
	for _, p := range perms {
		if p.Resource == "secrets" && p.Verb != "get" {
			t.Errorf("names need get only: %+v", perms)
		}
	}
}
