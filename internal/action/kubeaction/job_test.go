package kubeaction

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

const scanImage = "aquasec/trivy@sha256:7e1d39a0b9b4bb9f4fd2b0bda1ed8c1d5b9c6c4f8e0a9c3b2d1e0f9a8b7c6d5e"

func scanManifest(name, extra string) string {
	return `apiVersion: batch/v1
kind: Job
metadata:
  name: ` + name + `
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 0` + extra + `
      containers:
      - name: trivy
        image: ` + scanImage + `
        args: [k8s, --report, summary, cluster]
`
}

// may asks the API server whether the Job's ServiceAccount may do verb on
// resource in ns.
func may(t *testing.T, e *evEnv, sa, verb, group, resource, ns string) bool {
	t.Helper()
	r, err := e.c.Core.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + e.ns + ":" + sa,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + e.ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: ns},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

func TestJobRunsScannerWithReadOnlyAccount(t *testing.T) {
	e := newEvEnv(t)
	a := Job{}
	p := Job{}.Spec().MustBind(map[string]any{"namespace": e.ns, "manifest": scanManifest("trivy-scan", ""), "read": []string{"pods", "deployments.apps"}, "deadline": 2 * time.Minute})

	// --dry-run=server creates nothing.
	env := *e.Env
	env.DryRun = action.DryRunServer
	_, res := run(t, a, &env, p)
	if res.Changed != 4 {
		t.Errorf("dry run: %+v", res)
	}
	if _, err := e.c.Core.BatchV1().Jobs(e.ns).Get(t.Context(), "trivy-scan", metav1.GetOptions{}); err == nil {
		t.Fatal("the server dry run created the Job")
	}
	if _, err := e.c.Core.CoreV1().ServiceAccounts(e.ns).Get(t.Context(), "irctl-trivy-scan", metav1.GetOptions{}); err == nil {
		t.Fatal("the server dry run created the ServiceAccount")
	}

	plan, res := run(t, a, e.Env, p)
	if !strings.Contains(plan.Summary, "may read pods, deployments.apps in "+e.ns) || !strings.Contains(res.Summary, "completed (1 succeeded)") {
		t.Errorf("plan %q, result %q", plan.Summary, res.Summary)
	}
	job, err := e.c.Core.BatchV1().Jobs(e.ns).Get(t.Context(), "trivy-scan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Spec.Template.Spec.ServiceAccountName != "irctl-trivy-scan" || *job.Spec.ActiveDeadlineSeconds != 120 || job.Labels[IncidentLabel] != testIncident {
		t.Errorf("job: sa %q, deadline %d, labels %v", job.Spec.Template.Spec.ServiceAccountName, *job.Spec.ActiveDeadlineSeconds, job.Labels)
	}
	// Only the reads asked for, only in its namespace.
	for _, c := range []struct {
		verb, group, res, ns string
		want                 bool
	}{
		{"list", "", "pods", e.ns, true},
		{"get", "apps", "deployments", e.ns, true},
		{"delete", "", "pods", e.ns, false},
		{"get", "", "secrets", e.ns, false},
		{"list", "", "pods", "kube-system", false},
	} {
		if got := may(t, e, "irctl-trivy-scan", c.verb, c.group, c.res, c.ns); got != c.want {
			t.Errorf("may %s %s.%s in %s: %v, want %v", c.verb, c.res, c.group, c.ns, got, c.want)
		}
	}
	// A second run would reuse the account: refused at plan time.
	if _, err := a.Plan(t.Context(), e.Env, Job{}.Spec().MustBind(map[string]any{"namespace": e.ns, "manifest": scanManifest("trivy-scan", "")})); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("rerun: %v", err)
	}
	if err := e.c.Core.BatchV1().Jobs(e.ns).Delete(t.Context(), "trivy-scan", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := e.c.Core.BatchV1().Jobs(e.ns).Get(t.Context(), "trivy-scan", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Job is not gone: %v", err)
		}
	}
	if _, err := a.Plan(t.Context(), e.Env, Job{}.Spec().MustBind(map[string]any{"namespace": e.ns, "manifest": scanManifest("trivy-scan", "")})); err == nil || !strings.Contains(err.Error(), "ServiceAccount "+e.ns+"/irctl-trivy-scan already exists") {
		t.Errorf("rerun with the Job deleted: %v", err)
	}
	// The status is evidence; the logs are, or the result says why not.
	status, err := os.ReadFile(filepath.Join(e.dir, "evidence", "jobs", e.ns+"-trivy-scan", "job.yaml"))
	if err != nil {
		matches, _ := filepath.Glob(filepath.Join(e.dir, "*", "jobs", "*", "job.yaml"))
		if len(matches) == 0 {
			t.Fatalf("no job.yaml in the evidence: %v", err)
		}
		status, _ = os.ReadFile(matches[0])
	}
	if !strings.Contains(string(status), "type: Complete") {
		t.Errorf("the saved status should show the Job complete:\n%s", status)
	}
	t.Logf("result: %s", res.Summary)
	if !strings.Contains(res.Summary, "container log(s) saved") {
		t.Errorf("result should account for the logs: %s", res.Summary)
	}
}

func TestJobFailsWhenTheJobFails(t *testing.T) {
	e := newEvEnv(t)
	a := Job{}
	// No node matches: the pod never runs and the deadline fails the Job.
	p := Job{}.Spec().MustBind(map[string]any{"namespace": e.ns, "manifest": scanManifest("stuck-scan", "\n      nodeSelector: {irctl.dev/no-such-node: \"true\"}"), "deadline": 3 * time.Second})
	plan := planOf(t, a, e.Env, p)
	_, err := a.Apply(t.Context(), e.Env, p, plan)
	if err == nil || !strings.Contains(err.Error(), "DeadlineExceeded") || !strings.Contains(err.Error(), "saved as evidence") {
		t.Fatalf("want the step to fail with the Job's reason: %v", err)
	}
	job, _ := e.c.Core.BatchV1().Jobs(e.ns).Get(t.Context(), "stuck-scan", metav1.GetOptions{})
	failed := false
	for _, c := range job.Status.Conditions {
		failed = failed || c.Type == batchv1.JobFailed
	}
	if !failed {
		t.Errorf("the Job itself should be failed: %+v", job.Status)
	}
}

func planOf(t *testing.T, a action.Action, env *action.Env, p runbook.Params) *action.Plan {
	t.Helper()
	if err := a.Spec().Validate(p); err != nil {
		t.Fatal(err)
	}
	plan, err := a.Plan(t.Context(), env, p)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestJobRefusesMutableTagsAndBadManifests(t *testing.T) {
	v := Job{}.Spec().Validate
	mutable := strings.Replace(scanManifest("s", ""), scanImage, "aquasec/trivy:latest", 1)
	if err := v(Job{}.Spec().MustBind(map[string]any{"namespace": "x", "manifest": mutable})); err == nil || !strings.Contains(err.Error(), "not pinned by digest") {
		t.Errorf("mutable tag: %v", err)
	}
	if err := v(Job{}.Spec().MustBind(map[string]any{"namespace": "x", "manifest": mutable, "allow_mutable_tag": true})); err != nil {
		t.Errorf("allowed mutable tag: %v", err)
	}
	for name, m := range map[string]string{
		"not a job":       "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"own account":     strings.Replace(scanManifest("s", ""), "restartPolicy: Never", "restartPolicy: Never\n      serviceAccountName: default", 1),
		"other namespace": strings.Replace(scanManifest("s", ""), "name: s\n", "name: s\n  namespace: y\n", 1),
		"unknown field":   scanManifest("s", "\n      bogus: 1"),
	} {
		if err := v(Job{}.Spec().MustBind(map[string]any{"namespace": "x", "manifest": m})); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if err := v(Job{}.Spec().MustBind(map[string]any{"namespace": "x", "manifest": scanManifest("s", ""), "read": []string{"*"}})); err == nil {
		t.Error("wildcard read: want an error")
	}
}
