package sandbox_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// The sandbox is a working cluster: the controller manager, scheduler and
// kwok act on what is written, as in a real one. These tests use their own
// namespaces in the shared sandbox.

func TestDeploymentImageChangeRollsOut(t *testing.T) {
	cs, ns := clusterTestNamespace(t, "rollout-test")
	ctx := t.Context()
	dep := createDeployment(t, cs, ns, "web", 3, "example.com/web:1")
	waitRolledOut(t, cs, ns, dep.Name, "example.com/web:1")

	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"example.com/web:2"}]}}}}`
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, dep.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, cs, ns, dep.Name, "example.com/web:2")
	rsets, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rsets.Items) != 2 {
		t.Errorf("%d ReplicaSets, want the old one (scaled to 0) and the new one", len(rsets.Items))
	}
}

func TestDrainedNodePodsComeBackElsewhere(t *testing.T) {
	cs, ns := clusterTestNamespace(t, "drain-test")
	ctx := t.Context()
	dep := createDeployment(t, cs, ns, "web", 3, "example.com/web:1")
	waitRolledOut(t, cs, ns, dep.Name, "example.com/web:1")
	pods := podsOf(t, cs, ns, "app=web")
	node := pods[0].Spec.NodeName
	var onNode []string
	for _, p := range pods {
		if p.Spec.NodeName == node {
			onNode = append(onNode, p.Name)
		}
	}

	// A drain, as kubectl does it: cordon, then evict the node's pods (of
	// this test's namespace only: the shared sandbox's platform stays).
	cordon := func(on bool) error {
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
		_, err := cs.CoreV1().Nodes().Patch(context.Background(), node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	if err := cordon(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cordon(false); err != nil {
			t.Errorf("uncordoning %s: %v", node, err)
		}
	})
	for _, name := range onNode {
		err := cs.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
		if err != nil {
			t.Fatalf("evicting %s: %v", name, err)
		}
	}
	eventually(t, time.Minute, func() (bool, string) {
		pods := podsOf(t, cs, ns, "app=web")
		ready := 0
		for _, p := range pods {
			for _, old := range onNode {
				if p.Name == old {
					return false, "evicted pod " + old + " still there"
				}
			}
			if p.Spec.NodeName == node {
				return false, fmt.Sprintf("pod %s scheduled on the cordoned node %s", p.Name, node)
			}
			if isReady(&p) {
				ready++
			}
		}
		return ready == 3, fmt.Sprintf("%d of 3 pods Ready on other nodes", ready)
	})
}

func TestJobCompletes(t *testing.T) {
	cs, ns := clusterTestNamespace(t, "job-test")
	ctx := t.Context()
	job, err := cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "scan"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "scanner", Image: "aquasec/trivy:0.58.1", Args: []string{"k8s", "--report", "summary"}}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() (bool, string) {
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return j.Status.Succeeded == 1, fmt.Sprintf("complete with %d succeeded", j.Status.Succeeded)
			}
		}
		return false, fmt.Sprintf("conditions %+v, active %d", j.Status.Conditions, j.Status.Active)
	})
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=scan"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodSucceeded {
		t.Errorf("the Job's pods: %v, %+v", err, pods)
	}
}

// TestSeededAttackLeftovers checks the objects the seeded attack left for
// eradication to remove, and that its Job ran to completion.
func TestSeededAttackLeftovers(t *testing.T) {
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sys := metav1.NamespaceSystem
	jobs, err := cs.BatchV1().Jobs(sys).List(ctx, metav1.ListOptions{LabelSelector: "malicious=true"})
	if err != nil {
		t.Fatal(err)
	}
	var miner *batchv1.Job
	for i := range jobs.Items {
		if jobs.Items[i].Name == sandbox.AttackJob {
			miner = &jobs.Items[i]
		}
	}
	if miner == nil || miner.Spec.Template.Spec.Containers[0].Image != sandbox.MinerImage {
		t.Fatalf("no Job %s running %s among the malicious=true Jobs %+v", sandbox.AttackJob, sandbox.MinerImage, jobs.Items)
	}
	eventually(t, time.Minute, func() (bool, string) {
		j, err := cs.BatchV1().Jobs(sys).Get(ctx, sandbox.AttackJob, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return j.Status.Succeeded == 1, fmt.Sprintf("%d succeeded", j.Status.Succeeded)
	})
	dep, err := cs.AppsV1().Deployments(sys).Get(ctx, sandbox.AttackDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != sandbox.RogueRegistryImage || dep.Status.AvailableReplicas != 1 {
		t.Errorf("deployment %s: image %s, %d available", dep.Name, img, dep.Status.AvailableReplicas)
	}
	crb, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, sandbox.AttackBinding, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if crb.RoleRef.Name != "cluster-admin" || len(crb.Subjects) != 1 || crb.Subjects[0].Name != sandbox.AttackServiceAccount || time.Since(crb.CreationTimestamp.Time) > time.Hour {
		t.Errorf("binding %s: %+v, created %s", crb.Name, crb, crb.CreationTimestamp)
	}
	if _, err := cs.CoreV1().ServiceAccounts(sys).Get(ctx, sandbox.AttackServiceAccount, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	// The orchestrator's pods take their secrets from the Secrets, so a
	// rotation reaches them only through a restart.
	orch, err := cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, "orchestrator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for _, e := range orch.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name
		}
	}
	if refs["JWT_SECRET"] != "orchestrator-jwt-secret" || refs["DATABASE_PASSWORD"] != "orchestrator-db" || refs["LLM_API_KEY"] != sandbox.LLMKeysSecret {
		t.Errorf("orchestrator env from secrets: %v", refs)
	}
}

// TestOrchestratorDatabaseRole checks that the application's role is not
// the superuser and that its password is the one in Secret orchestrator-db,
// so that a rotation of one without the other shows.
func TestOrchestratorDatabaseRole(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(ctx, "orchestrator-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("orchestrator", string(sec.Data["password"]))
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connecting as orchestrator with the Secret's password: %v", err)
	}
	defer conn.Close(ctx)
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || super {
		t.Errorf("role orchestrator: superuser %t, %v; want an ordinary role", super, err)
	}
	u.User = url.UserPassword("orchestrator", "not-"+string(sec.Data["password"]))
	if c, err := pgx.Connect(ctx, u.String()); err == nil {
		c.Close(ctx)
		t.Error("role orchestrator accepted a password other than the Secret's")
	}
}

// clusterTestNamespace returns a client of the shared sandbox and a new
// namespace, deleted after the test.
func clusterTestNamespace(t *testing.T, prefix string) (kubernetes.Interface, string) {
	t.Helper()
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	return cs, ns.Name
}

func createDeployment(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32, image string) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	dep, err := cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep
}

// waitRolledOut waits until the Deployment's rollout is complete, as
// `kubectl rollout status` sees it, and every pod it has runs image and is
// Ready.
func waitRolledOut(t *testing.T, cs kubernetes.Interface, ns, name, image string) {
	t.Helper()
	eventually(t, time.Minute, func() (bool, string) {
		d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		want, st := *d.Spec.Replicas, d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
			return false, fmt.Sprintf("generation %d observed %d, %d updated, %d total, %d available of %d",
				d.Generation, st.ObservedGeneration, st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, want)
		}
		pods := podsOf(t, cs, ns, "app="+name)
		for _, p := range pods {
			if p.Spec.Containers[0].Image != image || !isReady(&p) {
				return false, fmt.Sprintf("pod %s: image %s, ready %t", p.Name, p.Spec.Containers[0].Image, isReady(&p))
			}
		}
		return int32(len(pods)) == want, fmt.Sprintf("%d pods", len(pods))
	})
}

// podsOf lists the pods of selector that are not being deleted.
func podsOf(t *testing.T, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// eventually polls cond until it holds, failing after timeout with its
// last message.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
