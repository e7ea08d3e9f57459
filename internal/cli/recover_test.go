package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/incident"
)

// The workload actions through irctl, as a responder holding only the
// shipped role: a server dry run changes nothing, the phase sets the image
// and the replica count and waits for the rollouts, `undo recover` puts
// both back, and validate's k8s.find fails while an indicator is there.
func TestRecoverPhaseAsTheResponderAndItsUndo(t *testing.T) {
	h := newHarness(t, 0)
	ctx := t.Context()
	replicas, grace := int32(1), int64(0)
	labels := map[string]string{"app": "api"}
	if _, err := h.cs.AppsV1().Deployments(h.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{Name: "api", Image: "example.com/api:compromised"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dep := func() *appsv1.Deployment {
		d, err := h.cs.AppsV1().Deployments(h.ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	settled := func(image string, n int32) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			d := dep()
			s := d.Status
			if d.Spec.Template.Spec.Containers[0].Image == image && *d.Spec.Replicas == n && s.ObservedGeneration >= d.Generation &&
				s.UpdatedReplicas == n && s.ReadyReplicas == n && s.AvailableReplicas == n && s.Replicas == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployment not settled on %s x%d: %+v", image, n, s)
			}
		}
	}
	settled("example.com/api:compromised", 1)

	rb := filepath.Join(t.TempDir(), "recover.yaml")
	if err := os.WriteFile(rb, fmt.Appendf(nil, `apiVersion: irctl/v1
kind: Runbook
name: recover-test
params:
  namespace: {default: x}
phases:
  recover:
    - name: clean-image
      action: k8s.set-image
      with: {namespace: "{{ .namespace }}", deployment: api, images: {api: "example.com/api:clean"}}
    - name: scale-up
      action: k8s.scale
      with: {namespace: "{{ .namespace }}", deployment: api, replicas: 2}
    - name: restart
      action: k8s.rollout-restart
      with: {namespace: "{{ .namespace }}", deployment: api}
  validate:
    - name: no-compromised-image
      action: k8s.find
      with: {namespace: "{{ .namespace }}", indicators: [compromised], expect_none: true}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	resp := h.newResponder()

	rv := dep().ResourceVersion
	r := resp.run("-f", rb, "recover", "--dry-run=server")
	if r.code != 0 {
		t.Fatalf("recover --dry-run=server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if dep().ResourceVersion != rv {
		t.Fatalf("a server dry run changed the Deployment:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "tag but no digest") {
		t.Errorf("the plan should warn about the tag:\n%s", r.stdout)
	}

	// Validate fails while the compromised image runs.
	r = resp.run("-f", rb, "validate")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "expected no match") {
		t.Errorf("validate with the compromised image: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = resp.run("-f", rb, "recover", "--yes")
	if r.code != 0 {
		t.Fatalf("recover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	settled("example.com/api:clean", 2)
	if dep().Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Error("the restart left no restartedAt annotation")
	}
	var restartIrreversible bool
	for _, rec := range h.journal() {
		if rec.Step == "restart" && rec.Kind == incident.KindOutcome {
			restartIrreversible = rec.Irreversible != "" && len(rec.Undo) == 0
		}
	}
	if !restartIrreversible {
		t.Error("the restart's outcome should be recorded as irreversible, with no undo")
	}

	// The Deployment's old ReplicaSet still holds the compromised image, as
	// revision history: validate says so rather than passing.
	r = resp.run("-f", rb, "validate")
	if r.code != 1 || !strings.Contains(r.stdout, "(image example.com/api:compromised (in an old revision with 0 replicas") || strings.Contains(r.stdout, "pod "+h.ns) {
		t.Errorf("validate after recover should name only the old ReplicaSet: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = resp.run("undo", "recover", "--yes")
	if r.code != 0 {
		t.Fatalf("undo recover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("undo:\n%s", r.stdout)
	settled("example.com/api:compromised", 1)
}
