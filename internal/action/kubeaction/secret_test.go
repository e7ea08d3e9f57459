package kubeaction

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
)

func (f *fixture) secret(name string) *corev1.Secret {
	f.t.Helper()
	s, err := f.cs.CoreV1().Secrets(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// noLeak fails if value appears in anything the action returned or logged.
func (f *fixture) noLeak(value []byte, outputs ...any) {
	f.t.Helper()
	b, _ := json.Marshal(outputs)
	all := string(b) + f.logs.String()
	if strings.Contains(all, string(value)) {
		f.t.Errorf("the secret value leaked into the plan, result or log:\n%s", all)
	}
}

// fingerprint is what the actions show for value (keyed with the
// process's key: the fixture's environment has no incident directory).
func (f *fixture) fingerprint(value []byte) string {
	f.t.Helper()
	fp, err := f.env(action.DryRunNone).Fingerprint(value)
	if err != nil {
		f.t.Fatal(err)
	}
	return fp
}

func TestSecretRotateCreatesThenReplacesOncePerIncident(t *testing.T) {
	f := newFixture(t)
	a := SecretRotate{}
	const name = "orchestrator-jwt-secret-emergency"
	p := SecretRotate{}.Spec().MustBind(map[string]any{"namespace": f.ns, "name": name})

	// Server dry run: nothing stored.
	plan, res := f.run(a, action.DryRunServer, p)
	if plan.Summary != `create Secret `+f.ns+`/`+name+` with a new random key "secret"` || res.Changed != 1 {
		t.Errorf("dry run: plan %q, result %+v", plan.Summary, res)
	}
	if f.secret(name) != nil {
		t.Fatal("server dry run created the Secret")
	}

	plan, res = f.run(a, action.DryRunNone, p)
	s := f.secret(name)
	if s == nil {
		t.Fatal("Secret not created")
	}
	value := s.Data["secret"]
	raw, err := base64.StdEncoding.DecodeString(string(value))
	if err != nil || len(raw) != defaultSecretBytes {
		t.Errorf("want %d random bytes, base64-encoded; got %d bytes (%v)", defaultSecretBytes, len(raw), err)
	}
	if at, err := time.Parse(time.RFC3339, s.Annotations[RotatedAt]); s.Annotations[RotatedForIncident] != f.incident || err != nil || time.Since(at) > time.Minute {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if !contains(plan.Warnings, "no Deployment, StatefulSet, DaemonSet or CronJob in the namespace reads Secret "+f.ns+"/"+name) {
		t.Errorf("the plan should warn that nothing reads the Secret: %q", plan.Warnings)
	}
	if !strings.Contains(res.Summary, f.fingerprint(value)) || res.Irreversible == "" || len(res.Undo) != 0 {
		t.Errorf("result should carry the new fingerprint, be irreversible and record no undo: %+v", res)
	}
	if _, ok := any(a).(action.Undoer); ok {
		t.Error("a rotation keeps no old value, so it must not offer an undo")
	}
	f.noLeak(value, plan, res)

	// Rotated once for this incident: running the phase again changes nothing.
	if again := f.plan(a, action.DryRunNone, p); !again.Noop || !strings.Contains(again.Summary, "already rotated for incident "+f.incident) {
		t.Errorf("second plan should be a no-op: %+v", again)
	}

	// Another incident rotates again, keeping the Secret's other keys.
	s.Data["username"] = []byte("orchestrator")
	if _, err := f.cs.CoreV1().Secrets(f.ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.incident = "SEC-TEST-" + randHex(3)
	// Now a Deployment reads the key as an env var and a CronJob mounts the
	// Secret: the plan names both, and how each sees the new value.
	f.deployment("reader", 0, "example.com/app:v1", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "JWT_SECRET", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "secret"}}},
			{Name: "OTHER", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "username"}}}}
	})
	if _, err := f.cs.BatchV1().CronJobs(f.ns).Create(t.Context(), &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "mounter"},
		Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "example.com/c:v1"}},
			Volumes: []corev1.Volume{{Name: "jwt", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}}}}}}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := f.secret(name)
	plan, res = f.run(a, action.DryRunServer, p)
	if !strings.Contains(plan.Summary, "replace key \"secret\"") || !strings.Contains(plan.Summary, f.fingerprint(value)) || !contains(plan.Warnings, "username") {
		t.Errorf("replace plan: %+v", plan)
	}
	if !contains(plan.Warnings, "environment variables by deployment/reader (env JWT_SECRET): their pods keep the old value until they restart") ||
		!contains(plan.Warnings, "mounted by cronjob/mounter (volume jwt)") || contains(plan.Warnings, "no Deployment") {
		t.Errorf("the plan should name the readers: %q", plan.Warnings)
	}
	if after := f.secret(name); after.ResourceVersion != before.ResourceVersion {
		t.Error("server dry run changed the Secret")
	}

	_, res = f.run(a, action.DryRunNone, p)
	after := f.secret(name)
	if string(after.Data["secret"]) == string(value) || string(after.Data["username"]) != "orchestrator" {
		t.Errorf("want a new value and the other key kept: %v", after.Data)
	}
	if !strings.Contains(res.Summary, "(was "+f.fingerprint(value)+")") || !strings.Contains(res.Summary, f.fingerprint(after.Data["secret"])) {
		t.Errorf("result should name old and new fingerprints: %s", res.Summary)
	}
	f.noLeak(after.Data["secret"], plan, res)

	// once_per_incident: false rotates even for the same incident.
	p = p.With("once_per_incident", false)
	if again := f.plan(a, action.DryRunNone, p); again.Noop {
		t.Errorf("once_per_incident false should rotate again: %+v", again)
	}
}

func TestSecretRotateValidatesItsParams(t *testing.T) {
	v := SecretRotate{}.Spec().Validate
	for _, vals := range []map[string]any{
		{"namespace": "x", "name": "Bad_Name"},
		{"namespace": "x", "name": "ok", "key": "no/slash"},
		{"namespace": "x", "name": "ok", "bytes": int64(8)},
	} {
		if err := v(SecretRotate{}.Spec().MustBind(vals)); err == nil {
			t.Errorf("%v: want an error", vals)
		}
	}
}
