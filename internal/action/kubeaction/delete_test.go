package kubeaction

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
)

// withEvidence gives the fixture's env an evidence store in a fresh
// incident directory; under a server dry run opening it fails the test.
func (f *fixture) withEvidence() (dir string, env func(action.DryRun) *action.Env) {
	f.t.Helper()
	dir = f.t.TempDir()
	store, err := evidence.Open(dir, evidence.Meta{Operator: "test@host", KubeIdentity: "admin", DBUser: "unknown: not used", ToolVersion: "test", RunbookHash: "none"})
	if err != nil {
		f.t.Fatal(err)
	}
	return dir, func(dry action.DryRun) *action.Env {
		e := f.env(dry)
		e.Evidence = func() (*evidence.Store, error) {
			if dry != action.DryRunNone {
				f.t.Error("evidence opened under a dry run")
			}
			return store, nil
		}
		return e
	}
}

// attackLeftovers creates a CronJob and a Job labelled label=value in ns,
// as the attack of the cluster compromise runbook leaves them.
func (f *fixture) attackLeftovers(ns, label, value string) {
	f.t.Helper()
	ctx := f.t.Context()
	l := map[string]string{label: value}
	grace := int64(0)
	pod := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "miner", Image: "docker.io/xmrig/xmrig:6.21.0"}},
	}}
	if _, err := f.cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "cleanup", Labels: l},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: pod}}}}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "miner", Labels: l},
		Spec: batchv1.JobSpec{Template: pod}}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) leftoverVersions(namespaces ...string) map[string]string {
	f.t.Helper()
	out := map[string]string{}
	for _, ns := range namespaces {
		if cj, err := f.cs.BatchV1().CronJobs(ns).Get(f.t.Context(), "cleanup", metav1.GetOptions{}); err == nil {
			out[ns+"/cronjob"] = cj.ResourceVersion
		}
		if j, err := f.cs.BatchV1().Jobs(ns).Get(f.t.Context(), "miner", metav1.GetOptions{}); err == nil {
			out[ns+"/job"] = j.ResourceVersion
		}
	}
	return out
}

func TestDeleteSavesManifestsThenDeletesAcrossNamespaces(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t).ns
	// A label of the test's own: all_namespaces must not reach the
	// sandbox's seeded leftovers, which other tests look for.
	label := "malicious-" + randHex(3)
	f.attackLeftovers(f.ns, label, "true")
	f.attackLeftovers(other, label, "true")
	dir, env := f.withEvidence()
	a := Delete{}
	p := Delete{}.Spec().MustBind(map[string]any{"kinds": []string{"cronjob", "jobs"}, "selector": label + "=true", "all_namespaces": true})
	f.validate(a, p)

	// The Jobs run to completion first: their pods exist, so that their
	// going with the Job shows, and the Job controller has stopped writing
	// their status, so that resourceVersions show any write of irctl's.
	for _, ns := range []string{f.ns, other} {
		deadline := time.Now().Add(time.Minute)
		for {
			j, err := f.cs.BatchV1().Jobs(ns).Get(t.Context(), "miner", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if j.Status.CompletionTime != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Job %s/miner did not complete: %+v", ns, j.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if pods, _ := f.cs.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=miner"}); len(pods.Items) == 0 {
		t.Fatal("the Job has no pod")
	}

	before := f.leftoverVersions(f.ns, other)
	plan, err := a.Plan(t.Context(), env(action.DryRunServer), p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cronjob.batch " + f.ns + "/cleanup", "job.batch " + f.ns + "/miner", "cronjob.batch " + other + "/cleanup", "job.batch " + other + "/miner"} {
		if !contains(plan.Targets, want) {
			t.Errorf("plan targets %v lack %s", plan.Targets, want)
		}
	}
	if plan.Count != 4 {
		t.Errorf("plan count %d, want 4", plan.Count)
	}
	res, err := a.Apply(t.Context(), env(action.DryRunServer), p, plan)
	if err != nil || res.Changed != 4 || len(res.Failed) > 0 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if after := f.leftoverVersions(f.ns, other); len(after) != 4 || after[f.ns+"/cronjob"] != before[f.ns+"/cronjob"] || after[other+"/job"] != before[other+"/job"] {
		t.Fatalf("server dry run changed or deleted objects: before %v, after %v", before, after)
	}

	plan, err = a.Plan(t.Context(), env(action.DryRunNone), p)
	if err != nil {
		t.Fatal(err)
	}
	res, err = a.Apply(t.Context(), env(action.DryRunNone), p, plan)
	if err != nil || res.Changed != 4 || len(res.Failed) > 0 || !strings.Contains(res.Irreversible, "evidence") {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if left := f.leftoverVersions(f.ns, other); len(left) != 0 {
		t.Errorf("still there: %v", left)
	}
	// Each manifest was saved, and is the object as it was.
	r, err := evidence.Verify(dir, nil)
	if err != nil || !r.OK() {
		t.Fatalf("evidence does not verify: %v %v", err, r)
	}
	entries, _ := evidence.ReadManifest(dir)
	if len(entries) != 4 {
		t.Fatalf("want 4 evidence items, got %+v", entries)
	}
	body, err := os.ReadFile(filepath.Join(evidence.Dir(dir), "deleted", f.ns, "cronjob.batch", "cleanup.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: CronJob", label + `: "true"`, "xmrig", "uid: ", "schedule: '*/10 * * * *'"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("manifest lacks %q:\n%s", want, body)
		}
	}
	// Background propagation: the Job's pods go with it.
	deadline := time.Now().Add(time.Minute)
	for {
		pods, _ := f.cs.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "job-name=miner"})
		if len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted Job's pods are still there: %d", len(pods.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Rerun: nothing left, nothing to do.
	if again := f.plan(a, action.DryRunNone, p); !again.Noop {
		t.Errorf("rerun should be a no-op: %+v", again)
	}
	// Named objects already gone count as done.
	named := Delete{}.Spec().MustBind(map[string]any{"kinds": []string{"cronjobs.batch"}, "names": []string{"cleanup"}, "namespace": f.ns})
	if plan := f.plan(a, action.DryRunNone, named); !plan.Noop {
		t.Errorf("a deleted named object should plan as nothing to do: %+v", plan)
	}
	if _, ok := any(a).(action.Undoer); ok {
		t.Error("a deletion cannot be undone and must not offer to")
	}
}

func TestDeleteKeepsSecretValuesOutOfTheEvidence(t *testing.T) {
	f := newFixture(t)
	value := "s3cr3t-" + randHex(8)
	if _, err := f.cs.CoreV1().Secrets(f.ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "planted"},
		Data: map[string][]byte{"token": []byte(value)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir, env := f.withEvidence()
	a := Delete{}
	p := Delete{}.Spec().MustBind(map[string]any{"kinds": []string{"secret"}, "names": []string{"planted", "never-existed"}, "namespace": f.ns})
	f.validate(a, p)
	plan, err := a.Plan(t.Context(), env(action.DryRunNone), p)
	if err != nil || plan.Count != 1 || !strings.Contains(plan.Summary, "1 named object(s) already gone") {
		t.Fatalf("plan: %+v %v", plan, err)
	}
	if _, err := a.Apply(t.Context(), env(action.DryRunNone), p, plan); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().Secrets(f.ns).Get(t.Context(), "planted", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret not deleted: %v", err)
	}
	body, err := os.ReadFile(filepath.Join(evidence.Dir(dir), "deleted", f.ns, "secret", "planted.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), value) || !strings.Contains(string(body), f.fingerprint([]byte(value))) {
		t.Errorf("the evidence must hold the fingerprint, not the value:\n%s", body)
	}
}

func TestDeleteValidatesItsParams(t *testing.T) {
	v := Delete{}.Spec().Validate
	for _, p := range []map[string]any{
		{"kinds": []string{"jobs"}},
		{"kinds": []string{"jobs"}, "selector": "a=b", "names": []string{"x"}},
		{"kinds": []string{"no-such-kind"}, "selector": "a=b"},
		{"kinds": []string{"jobs"}, "selector": ""},
		{"kinds": []string{"jobs"}, "selector": "a=b", "namespace": "x", "all_namespaces": true},
	} {
		if err := v(Delete{}.Spec().MustBind(p)); err == nil {
			t.Errorf("%v: want an error", p)
		}
	}
}

// A runbook param naming nothing by default (names: []) skips the step
// rather than failing the runbook, like cordon's empty node list; it never
// means "everything".
func TestDeleteWithAnEmptyNameListIsANoop(t *testing.T) {
	p := Delete{}.Spec().MustBind(map[string]any{"kinds": []string{"deployments"}, "names": []string{}})
	if err := (Delete{}).Spec().Validate(p); err != nil {
		t.Fatal(err)
	}
	plan, err := (Delete{}).Plan(context.Background(), &action.Env{}, p)
	if err != nil || !plan.Noop || plan.Count != 0 {
		t.Fatalf("plan %+v, err %v", plan, err)
	}
}
