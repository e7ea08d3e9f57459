package sandbox

// Pods created Running directly, without a controller, for benchmarks and
// tests that need many of them quickly: 2 requests a pod, without waiting
// for the scheduler or kwok.

import (
	"context"
	"fmt"
	"net/netip"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// createRunningPod creates pod and then reports it Running and Ready through
// the status subresource, as its kubelet would: a create ignores status.
// kwok, which would do the same a moment later, may write the status
// first; the update then retries on the pod as kwok left it.
func createRunningPod(ctx context.Context, cs kubernetes.Interface, ns string, pod *corev1.Pod, ip string) error {
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, createOpts)
	if err != nil {
		return err
	}
	now := metav1.Now()
	hostIP := nodeIP(0)
	for i, n := range NodeNames {
		if n == created.Spec.NodeName {
			hostIP = nodeIP(i)
		}
	}
	var statuses []corev1.ContainerStatus
	for _, c := range created.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: "containerd://" + randomHex(32),
			Ready:       true,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	condition := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// Keep what the API server defaulted at create (qosClass), which
		// it does not let a status update change.
		created.Status.Phase = corev1.PodRunning
		created.Status.Conditions = []corev1.PodCondition{
			condition(corev1.PodInitialized), condition(corev1.PodReady),
			condition(corev1.ContainersReady), condition(corev1.PodScheduled),
		}
		created.Status.HostIP, created.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
		created.Status.PodIP, created.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		created.Status.StartTime = &now
		created.Status.ContainerStatuses = statuses
		_, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, updateOpts)
		if apierrors.IsConflict(err) {
			if fresh, getErr := cs.CoreV1().Pods(ns).Get(ctx, created.Name, metav1.GetOptions{}); getErr == nil {
				created = fresh
			}
		}
		return err
	})
}

// SeedPods creates n Running pods in namespace (creating it if needed) with
// the given labels, spread over NodeNames, for benchmarks that need a
// realistic number of pods. It issues 2n requests from 32 workers: give it
// a client with raised rate limits (Sandbox.RESTConfig allows 1000 QPS),
// as client-go's default of 5 QPS would take minutes for 2,000 pods.
func SeedPods(ctx context.Context, cs kubernetes.Interface, namespace string, n int, labels map[string]string) error {
	if err := ensureNamespace(ctx, cs, namespace); err != nil {
		return err
	}
	base := labels["app"]
	if base == "" {
		base = "pod"
	}
	// A fresh batch token keeps the names of repeated calls apart.
	batch := randomHex(3)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		g.Go(func() error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%d", base, batch, i), Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:                      NodeNames[i%len(NodeNames)],
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers:                    []corev1.Container{{Name: "app", Image: OrchestratorImage}},
				},
			}
			return createRunningPod(ctx, cs, namespace, pod, benchPodIP(i))
		})
	}
	return g.Wait()
}

// benchPodIP numbers SeedPods' pods through 10.245.0.0/16, apart from the
// demo pods.
func benchPodIP(i int) string {
	return netip.AddrFrom4([4]byte{10, 245, byte(i / 250), byte(1 + i%250)}).String()
}
