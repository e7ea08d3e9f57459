package sandbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// seedTimeout bounds how long Start waits for the seeded workloads.
const seedTimeout = 90 * time.Second

// waitSeeded waits until the seeded workloads have rolled out and their
// pods are Ready, so that Start returns a platform in its steady state.
// It fails early, quoting the log, if a cluster component exits.
func (s *Sandbox) waitSeeded(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		pending, err := seededPending(ctx, cs)
		if err == nil && len(pending) == 0 {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			last = err
		} else if err == nil {
			last = fmt.Errorf("not ready: %s", strings.Join(pending, "; "))
		}
		if err := s.cluster.running(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the seeded workloads: %w", last)
		case <-tick.C:
		}
	}
}

// seededPending lists the seeded workloads not yet Ready.
func seededPending(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	var pending []string
	deployments := []struct{ ns, name string }{
		{DemoNamespace, "orchestrator"},
		{metav1.NamespaceSystem, AttackDeployment},
	}
	for _, d := range deployments {
		dep, err := cs.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		want := *dep.Spec.Replicas
		if st := dep.Status; st.ObservedGeneration < dep.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want {
			pending = append(pending, fmt.Sprintf("deployment %s/%s: %d of %d available", d.ns, d.name, st.AvailableReplicas, want))
		}
	}
	sts, err := cs.AppsV1().StatefulSets(DemoNamespace).Get(ctx, "postgres", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if sts.Status.ReadyReplicas != *sts.Spec.Replicas {
		pending = append(pending, fmt.Sprintf("statefulset postgres: %d of %d ready", sts.Status.ReadyReplicas, *sts.Spec.Replicas))
	}
	ds, err := cs.AppsV1().DaemonSets(MonitoringNamespace).Get(ctx, "node-exporter", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if st := ds.Status; st.DesiredNumberScheduled != int32(len(NodeNames)) || st.NumberReady != st.DesiredNumberScheduled {
		pending = append(pending, fmt.Sprintf("daemonset node-exporter: %d of %d ready", st.NumberReady, len(NodeNames)))
	}
	pod, err := cs.CoreV1().Pods(DemoNamespace).Get(ctx, "forensics", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if !podReady(pod) {
		pending = append(pending, "pod forensics: not ready")
	}
	return pending, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
