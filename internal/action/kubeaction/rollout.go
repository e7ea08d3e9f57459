package kubeaction

// Waiting for a rollout, as `kubectl rollout status` does: the controller
// has seen the latest spec, and every desired replica is updated, ready and
// available. set-image, rollout-restart and scale (and their undo) wait
// with it; a rollout that does not finish fails the step and names what
// is stuck.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// DefaultRolloutTimeout bounds the wait when the step does not say.
const DefaultRolloutTimeout = 5 * time.Minute

// rolloutPoll is how often the workload is read while waiting.
var rolloutPoll = 500 * time.Millisecond

// timeoutParam is the param bounding the wait for a rollout.
var timeoutParam = runbook.ParamDef{Name: "timeout", Type: runbook.Duration, Default: DefaultRolloutTimeout,
	Description: "how long to wait for the rollout to finish (the step's own deadline applies too)"}

// rolloutTimeout reads the timeout param.
func rolloutTimeout(p runbook.Params) time.Duration {
	return p.Duration("timeout")
}

// errRolloutFailed marks a rollout the controller itself gave up on.
var errRolloutFailed = errors.New("rollout failed")

// rolloutStatus says whether the workload's rollout is complete and, if
// not, what it waits for.
func rolloutStatus(w *workload) (done bool, waiting string, err error) {
	switch o := w.obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		s := o.Status
		if o.Generation > s.ObservedGeneration {
			return false, fmt.Sprintf("waiting for the controller to see generation %d", o.Generation), nil
		}
		for _, c := range s.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
				return false, "", fmt.Errorf("%w: %s", errRolloutFailed, c.Message)
			}
		}
		return counts(want, map[string]int32{"updated": s.UpdatedReplicas, "ready": s.ReadyReplicas, "available": s.AvailableReplicas}, s.Replicas-s.UpdatedReplicas)
	case *appsv1.StatefulSet:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		s := o.Status
		if o.Generation > s.ObservedGeneration {
			return false, fmt.Sprintf("waiting for the controller to see generation %d", o.Generation), nil
		}
		// Pods below a partition keep the old revision, and OnDelete
		// replaces pods only when they are deleted: neither is waited for.
		updated, partitioned := s.UpdatedReplicas, false
		switch st := o.Spec.UpdateStrategy; {
		case st.Type == appsv1.OnDeleteStatefulSetStrategyType:
			updated, partitioned = want, true
		case st.RollingUpdate != nil && st.RollingUpdate.Partition != nil && *st.RollingUpdate.Partition > 0:
			updated, partitioned = min(want, updated+*st.RollingUpdate.Partition), true
		}
		old := s.Replicas - want
		if !partitioned && updated >= want && s.UpdateRevision != s.CurrentRevision {
			old = max(old, 1) // the controller has not yet made the new revision current
		}
		return counts(want, map[string]int32{"updated": updated, "ready": s.ReadyReplicas, "available": s.AvailableReplicas}, old)
	case *appsv1.DaemonSet:
		s := o.Status
		if o.Generation > s.ObservedGeneration {
			return false, fmt.Sprintf("waiting for the controller to see generation %d", o.Generation), nil
		}
		return counts(s.DesiredNumberScheduled, map[string]int32{"updated": s.UpdatedNumberScheduled, "ready": s.NumberReady, "available": s.NumberAvailable}, s.CurrentNumberScheduled-s.DesiredNumberScheduled)
	}
	return false, "", fmt.Errorf("unknown workload %T", w.obj)
}

// counts compares the replica counts with the desired number; extra counts
// replicas that should be gone (old ones, or above the desired count).
func counts(want int32, have map[string]int32, extra int32) (bool, string, error) {
	var short []string
	for _, k := range []string{"updated", "ready", "available"} {
		if have[k] < want {
			short = append(short, fmt.Sprintf("%d of %d %s", have[k], want, k))
		}
	}
	if extra > 0 {
		short = append(short, fmt.Sprintf("%d old or surplus replica(s) still running", extra))
	}
	if len(short) > 0 {
		return false, "replicas: " + strings.Join(short, ", "), nil
	}
	return true, fmt.Sprintf("%d replica(s) updated, ready and available", want), nil
}

// logProgress logs how a rollout is going (the step's log; the engine
// draws env.Progress, which waitRollout feeds, on a terminal).
func logProgress(env *action.Env, format string, args ...any) {
	env.Log.Info().Msgf(format, args...)
}

// rolledOut counts the workload's replicas that are updated and available,
// of those it wants, for the progress line.
func rolledOut(w *workload) (done, want int64) {
	switch o := w.obj.(type) {
	case *appsv1.Deployment:
		want = 1
		if o.Spec.Replicas != nil {
			want = int64(*o.Spec.Replicas)
		}
		return int64(min(o.Status.UpdatedReplicas, o.Status.AvailableReplicas)), want
	case *appsv1.StatefulSet:
		want = 1
		if o.Spec.Replicas != nil {
			want = int64(*o.Spec.Replicas)
		}
		return int64(min(o.Status.UpdatedReplicas, o.Status.AvailableReplicas)), want
	case *appsv1.DaemonSet:
		return int64(min(o.Status.UpdatedNumberScheduled, o.Status.NumberAvailable)), int64(o.Status.DesiredNumberScheduled)
	}
	return 0, 0
}

// waitRollout polls the workload until its rollout is complete, the
// timeout passes (a failed step naming what is stuck) or ctx ends.
func waitRollout(ctx context.Context, env *action.Env, c *kube.Clients, ref workloadRef, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	var w *workload
	started := false
	for {
		// A read cut off by the deadline keeps the last workload read,
		// so the failure can still name its stuck pods.
		got, err := getWorkload(wctx, c, ref)
		if err != nil && wctx.Err() == nil {
			return err
		}
		if err == nil {
			w = got
			if n, want := rolledOut(w); want > 0 {
				if !started {
					env.Progress.Start(want, "replicas rolled out")
					started = true
				}
				env.Progress.Set(min(n, want), want)
			}
			done, waiting, err := rolloutStatus(w)
			if err != nil {
				return fmt.Errorf("rollout of %s: %w; %s", ref, err, stuckPods(ctx, c, w))
			}
			if done {
				return nil
			}
			if waiting != last {
				logProgress(env, "rollout of %s: %s", ref, waiting)
				last = waiting
			}
		}
		select {
		case <-time.After(rolloutPoll):
			continue
		case <-wctx.Done():
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("rollout of %s did not finish within %s: %s; %s", ref, timeout, last, stuckPods(ctx, c, w))
	}
}

// stuckPods describes the workload's pods that are not Ready, and why.
func stuckPods(ctx context.Context, c *kube.Clients, w *workload) string {
	if w == nil || w.selector == nil {
		return "its pods could not be read"
	}
	// The step's own deadline has passed: the diagnosis gets a moment of
	// its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil {
		return "invalid selector: " + err.Error()
	}
	pods, err := c.Core.CoreV1().Pods(w.ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "its pods could not be listed: " + kube.Short(err)
	}
	var stuck []string
	for i := range pods.Items {
		if why := notReady(&pods.Items[i]); why != "" {
			stuck = append(stuck, pods.Items[i].Name+" ("+why+")")
		}
	}
	if len(stuck) == 0 {
		return fmt.Sprintf("all %d of its pods are Ready (the controller has not caught up)", len(pods.Items))
	}
	sort.Strings(stuck)
	return fmt.Sprintf("pods not Ready: %s", strings.Join(action.Abbreviate(stuck, 5), ", "))
}

// notReady says why a pod is not Ready, or "" when it is.
func notReady(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			return strings.TrimSpace("not scheduled: " + c.Reason + " " + c.Message)
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st := cs.State.Waiting; st != nil {
			return strings.TrimSpace(fmt.Sprintf("container %s waiting: %s %s", cs.Name, st.Reason, st.Message))
		}
		if st := cs.State.Terminated; st != nil && st.ExitCode != 0 {
			return fmt.Sprintf("container %s terminated: %s, exit code %d", cs.Name, st.Reason, st.ExitCode)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status == corev1.ConditionTrue {
				return ""
			}
			return strings.TrimSpace(fmt.Sprintf("%s: not Ready %s %s", p.Status.Phase, c.Reason, c.Message))
		}
	}
	return string(p.Status.Phase) + ": no Ready condition yet"
}
