package kubeaction

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

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
	if s.Annotations[RotatedForIncident] != f.incident {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if !strings.Contains(res.Summary, Fingerprint(value)) || res.Irreversible == "" || len(res.Undo) != 0 {
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
	before := f.secret(name)
	plan, res = f.run(a, action.DryRunServer, p)
	if !strings.Contains(plan.Summary, "replace key \"secret\"") || !strings.Contains(plan.Summary, Fingerprint(value)) || !contains(plan.Warnings, "username") {
		t.Errorf("replace plan: %+v", plan)
	}
	if after := f.secret(name); after.ResourceVersion != before.ResourceVersion {
		t.Error("server dry run changed the Secret")
	}

	_, res = f.run(a, action.DryRunNone, p)
	after := f.secret(name)
	if string(after.Data["secret"]) == string(value) || string(after.Data["username"]) != "orchestrator" {
		t.Errorf("want a new value and the other key kept: %v", after.Data)
	}
	if !strings.Contains(res.Summary, "(was "+Fingerprint(value)+")") || !strings.Contains(res.Summary, Fingerprint(after.Data["secret"])) {
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
