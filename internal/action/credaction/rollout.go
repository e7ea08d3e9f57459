package credaction

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/kube"
)

// restartedAtAnnotation is the pod-template annotation kubectl rollout
// restart sets; changing it makes the Deployment roll out new pods.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// restartDeployment does what kubectl rollout restart does.
func restartDeployment(ctx context.Context, cs kubernetes.Interface, ns, name string, now time.Time, dry bool) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{restartedAtAnnotation: now.UTC().Format(time.RFC3339)}}}}})
	_, err := cs.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)})
	return err
}

// waitRollout waits until the Deployment's current generation is rolled
// out: observed by the controller, every replica updated and available,
// no old replica left. It is the one place to swap for a shared wait.
func waitRollout(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			done, why := rolledOut(d)
			if done {
				return nil
			}
			last = why
		} else {
			last = kube.Short(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deployment %s/%s did not finish rolling out within %s: %s", ns, name, timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func rolledOut(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "progress deadline exceeded: " + c.Message
		}
	}
	if st.ObservedGeneration < d.Generation {
		return false, "the controller has not seen the change yet"
	}
	if st.UpdatedReplicas < want || st.Replicas > st.UpdatedReplicas || st.AvailableReplicas < want {
		return false, fmt.Sprintf("%d of %d replicas updated, %d available, %d old still running", st.UpdatedReplicas, want, st.AvailableReplicas, st.Replicas-st.UpdatedReplicas)
	}
	return true, ""
}
