package kubeaction

import (
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Server-free checks of the pure parts: rollout arithmetic, image
// references, resource names.

func TestRolloutStatusArithmetic(t *testing.T) {
	sts := func(mutate func(*appsv1.StatefulSet)) *workload {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3, CurrentRevision: "r2", UpdateRevision: "r2"}}
		mutate(s)
		return wrapWorkload(workloadRef{Kind: kindStatefulSet}, s)
	}
	dep := func(mutate func(*appsv1.Deployment)) *workload {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 5}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 5, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}}
		mutate(d)
		return wrapWorkload(workloadRef{Kind: kindDeployment}, d)
	}
	for _, c := range []struct {
		name    string
		w       *workload
		done    bool
		waiting string
		failed  bool
	}{
		{"deployment complete", dep(func(*appsv1.Deployment) {}), true, "", false},
		{"generation not observed", dep(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 4 }), false, "generation 5", false},
		{"old replica left", dep(func(d *appsv1.Deployment) { d.Status.Replicas = 3 }), false, "1 old or surplus", false},
		{"not available", dep(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }), false, "1 of 2 available", false},
		{"deadline exceeded", dep(func(d *appsv1.Deployment) {
			d.Status.UpdatedReplicas = 1
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "too slow"}}
		}), false, "", true},
		{"statefulset complete", sts(func(*appsv1.StatefulSet) {}), true, "", false},
		{"statefulset revision not current", sts(func(s *appsv1.StatefulSet) { s.Status.CurrentRevision = "r1" }), false, "old or surplus", false},
		{"statefulset partition", sts(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](2)}}
			s.Status.UpdatedReplicas, s.Status.CurrentRevision = 1, "r1"
		}), true, "", false},
		{"statefulset on delete", sts(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
			s.Status.UpdatedReplicas, s.Status.CurrentRevision = 0, "r1"
		}), true, "", false},
		{"statefulset not ready", sts(func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 2 }), false, "2 of 3 ready", false},
	} {
		done, waiting, err := rolloutStatus(c.w)
		if done != c.done || (err != nil) != c.failed || !strings.Contains(waiting, c.waiting) {
			t.Errorf("%s: done %v waiting %q err %v", c.name, done, waiting, err)
		}
	}
}

func TestImageReferences(t *testing.T) {
	for img, want := range map[string]string{
		"busybox:1.36":                    "docker.io/library/busybox:1.36",
		"xmrig/xmrig:6.21.0":              "docker.io/xmrig/xmrig:6.21.0",
		"203.0.113.66:5000/proxy:v0.3.1":  "203.0.113.66:5000/proxy:v0.3.1",
		"ghcr.io/llm-orchestrator/api:v2": "ghcr.io/llm-orchestrator/api:v2",
		"localhost/x":                     "localhost/x",
	} {
		if got := normalizeImage(img); got != want {
			t.Errorf("normalizeImage(%s) = %s, want %s", img, got, want)
		}
	}
	a := findArgs{registries: []string{"203.0.113.66:5000"}, allowed: []string{"ghcr.io/llm-orchestrator", "library"}}
	for img, want := range map[string]string{
		"203.0.113.66:5000/proxy:v0.3.1":       "from registry 203.0.113.66:5000",
		"ghcr.io/llm-orchestrator/api:v2":      "",
		"ghcr.io/llm-orchestrator-evil/api:v2": "not allowed (ghcr.io)",
		"busybox:1.36":                         "",
		"xmrig/xmrig:6.21.0":                   "not allowed (docker.io)",
	} {
		if got := a.matchRegistry(img); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("matchRegistry(%s) = %q, want %q", img, got, want)
		}
	}
	for img, want := range map[string]string{
		"example.com/a":                                   "latest",
		"example.com/a:latest":                            "latest",
		"example.com:5000/a:v1":                           "no digest",
		"example.com/a@sha256:" + strings.Repeat("0", 64): "",
	} {
		if got := mutableImage(img); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("mutableImage(%s) = %q, want %q", img, got, want)
		}
	}
}

func TestStaticResourceNames(t *testing.T) {
	for name, want := range map[string]string{
		"cronjob": "cronjobs.batch", "CJ": "cronjobs.batch", "jobs.batch": "jobs.batch", "po": "pods",
		"clusterrolebinding": "clusterrolebindings.rbac.authorization.k8s.io", "widgets.example.com": "widgets.example.com",
	} {
		gr, ok := staticResource(name)
		if !ok || gr.String() != want {
			t.Errorf("staticResource(%s) = %s %v, want %s", name, gr, ok, want)
		}
	}
	for _, bad := range []string{"placeholder", "widgets.local", ""} {
		if _, ok := staticResource(bad); ok {
			t.Errorf("staticResource(%q) should not resolve", bad)
		}
	}
}

func TestMatchObjectFields(t *testing.T) {
	a := findArgs{indicators: []string{"kube-cleanup"}, patterns: []*regexp.Regexp{regexp.MustCompile(`^miner-`)}}
	obj := map[string]any{
		"kind":     "ClusterRoleBinding",
		"metadata": map[string]any{"name": "miner-admin", "labels": map[string]any{"by": "kube-cleanup"}},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "namespace": "kube-system", "name": "kube-cleanup"}},
		"roleRef":  map[string]any{"kind": "ClusterRole", "name": "cluster-admin"},
	}
	got := strings.Join(matchObject(obj, a), "; ")
	for _, w := range []string{"name miner-admin", "label by=kube-cleanup", "subject ServiceAccount kube-system/kube-cleanup"} {
		if !strings.Contains(got, w) {
			t.Errorf("matches %q lack %q", got, w)
		}
	}
	if strings.Contains(got, "cluster-admin") {
		t.Errorf("cluster-admin is no indicator here: %q", got)
	}
	// Images in status are the spec's, resolved: not counted twice.
	pod := map[string]any{"kind": "Pod", "metadata": map[string]any{"name": "p"},
		"spec":   map[string]any{"containers": []any{map[string]any{"name": "c", "image": "x/kube-cleanup:1"}}},
		"status": map[string]any{"containerStatuses": []any{map[string]any{"image": "x/kube-cleanup@sha256:1"}}}}
	if got := matchObject(pod, a); len(got) != 1 || got[0] != "image x/kube-cleanup:1" {
		t.Errorf("pod matches %q", got)
	}
}

// The progress line of a rollout counts replicas both updated and
// available, of those wanted.
func TestRolledOutCountsUpdatedAndAvailable(t *testing.T) {
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)},
		Status: appsv1.DeploymentStatus{UpdatedReplicas: 2, AvailableReplicas: 3}}
	if done, want := rolledOut(&workload{obj: d}); done != 2 || want != 3 {
		t.Errorf("deployment: %d of %d, want 2 of 3", done, want)
	}
	ds := &appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 4, UpdatedNumberScheduled: 4, NumberAvailable: 1}}
	if done, want := rolledOut(&workload{obj: ds}); done != 1 || want != 4 {
		t.Errorf("daemonset: %d of %d, want 1 of 4", done, want)
	}
}
