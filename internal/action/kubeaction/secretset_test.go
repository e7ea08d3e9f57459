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

// A value a person obtained goes into the Secret's key, the other keys
// kept, the Secret annotated with the incident; only fingerprints are
// shown; a server dry run changes nothing; the same value again is a
// no-op; a missing Secret is refused unless create is set.
func TestSecretSetWritesTheGivenValueShowingOnlyFingerprints(t *testing.T) {
	f := newFixture(t)
	a := SecretSet{}
	const name = "llm-provider-keys"
	value := "sk-provider-" + randHex(12)
	p := a.Spec().MustBind(map[string]any{"namespace": f.ns, "name": name, "key": "openai", "value": value})

	if _, err := a.Plan(t.Context(), f.env(action.DryRunNone), p); err == nil || !strings.Contains(err.Error(), "does not exist (create: true on the step creates it)") {
		t.Fatalf("a missing Secret without create: %v", err)
	}
	old := "sk-leaked-" + randHex(12)
	if _, err := f.cs.CoreV1().Secrets(f.ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
		Data: map[string][]byte{"openai": []byte(old), "anthropic": []byte("kept")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.deployment("orchestrator", 0, "example.com/app:v1", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "OPENAI_API_KEY", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "openai"}}}}
	})

	before := f.secret(name)
	plan, res := f.run(a, action.DryRunServer, p)
	if after := f.secret(name); after.ResourceVersion != before.ResourceVersion {
		t.Error("server dry run changed the Secret")
	}
	want := `set key "openai" of Secret ` + f.ns + "/" + name + " (now " + f.fingerprint([]byte(old)) + ") to the given value (" + f.fingerprint([]byte(value)) + ")"
	if !strings.HasPrefix(plan.Summary, want) || res.Changed != 1 {
		t.Errorf("plan %q, want it to begin %q; result %+v", plan.Summary, want, res)
	}
	if !contains(plan.Warnings, "environment variables by deployment/orchestrator (env OPENAI_API_KEY)") {
		t.Errorf("the plan should name the reader: %q", plan.Warnings)
	}

	plan, res = f.run(a, action.DryRunNone, p)
	s := f.secret(name)
	if string(s.Data["openai"]) != value || string(s.Data["anthropic"]) != "kept" {
		t.Errorf("data after: %v", s.Data)
	}
	if at, err := time.Parse(time.RFC3339, s.Annotations[RotatedAt]); s.Annotations[RotatedForIncident] != f.incident || err != nil || time.Since(at) > time.Minute {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if !strings.Contains(res.Summary, f.fingerprint([]byte(value))) || !strings.Contains(res.Summary, "(was "+f.fingerprint([]byte(old))+")") ||
		!strings.Contains(res.Irreversible, "previous value is not kept") || len(res.Undo) != 0 {
		t.Errorf("result: %+v", res)
	}
	if _, ok := any(a).(action.Undoer); ok {
		t.Error("the previous value is not kept, so there must be no undo")
	}
	f.noLeak([]byte(value), plan, res)
	f.noLeak([]byte(old), plan, res)

	if again := f.plan(a, action.DryRunNone, p); !again.Noop || !strings.Contains(again.Summary, "already holds the given value") {
		t.Errorf("the same value again: %+v", again)
	}

	// create: true makes a Secret that did not exist; nothing reads it.
	p2 := a.Spec().MustBind(map[string]any{"namespace": f.ns, "name": "new-keys", "key": "k", "value": value, "create": true})
	plan, _ = f.run(a, action.DryRunNone, p2)
	if got := f.secret("new-keys"); got == nil || string(got.Data["k"]) != value || got.Labels["app.kubernetes.io/managed-by"] != "irctl" {
		t.Errorf("created: %+v", got)
	}
	if !contains(plan.Warnings, "no Deployment, StatefulSet, DaemonSet or CronJob in the namespace reads Secret "+f.ns+"/new-keys") {
		t.Errorf("warnings: %q", plan.Warnings)
	}
	if perms := a.Permissions(p2); len(perms) != 7 || a.Permissions(p)[1].Verb != "update" || len(a.Permissions(p)) != 6 {
		t.Errorf("create is asked for only with create: true: %+v", perms)
	}
}

func TestSecretSetValidatesItsParams(t *testing.T) {
	spec := SecretSet{}.Spec()
	for _, vals := range []map[string]any{
		{"namespace": "x", "name": "Bad_Name", "key": "k", "value": "v"},
		{"namespace": "x", "name": "ok", "key": "no/slash", "value": "v"},
		{"namespace": "x", "name": "ok", "key": "k", "value": ""},
	} {
		if err := spec.Validate(spec.MustBind(vals)); err == nil {
			t.Errorf("%v: want an error", vals)
		}
	}
	for _, d := range spec.Params {
		if d.Name == "value" && !d.Secret {
			t.Error("value must be a secret param: redacted in the journal and output")
		}
	}
}
