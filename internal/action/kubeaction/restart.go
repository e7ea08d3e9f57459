package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// RestartedAtAnnotation is the pod template annotation `kubectl rollout
// restart` sets; changing it makes the controller replace every pod.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// RolloutRestart replaces a workload's pods, like `kubectl rollout
// restart`, and waits for the rollout: how pods pick up a rotated Secret
// they read at start.
type RolloutRestart struct{}

type restartArgs struct {
	ref     workloadRef
	timeout time.Duration
}

func restartParams(p runbook.Params) (restartArgs, error) {
	ref, err := workloadOf(p, allWorkloadKinds...)
	return restartArgs{ref: ref, timeout: rolloutTimeout(p)}, err
}

func (RolloutRestart) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.rollout-restart",
		Description: "Restart a Deployment, StatefulSet or DaemonSet (like kubectl rollout restart: the pod template's " +
			RestartedAtAnnotation + " annotation) and wait until every replica is replaced and Ready. Cannot be undone.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(workloadParams(allWorkloadKinds...), timeoutParam,
			runbook.ParamDef{Name: "after_rotation_of", Type: runbook.String, Description: "a Secret in the namespace rotated by k8s.secret-rotate: skip the restart when the workload was already restarted after the Secret's " + RotatedAt + ", so rerunning the phase does not restart it again"}),
		Validate: func(p runbook.Params) error {
			_, err := restartParams(p)
			return err
		},
	}
}

func (RolloutRestart) Permissions(p runbook.Params) []kube.Permission {
	perms := workloadPermissions(p, allWorkloadKinds, "", "patch")
	if s := p.String("after_rotation_of"); s != "" {
		perms = append(perms, kube.Permission{Verb: "get", Resource: "secrets", Namespace: p.String("namespace")})
	}
	return perms
}

func (RolloutRestart) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := restartParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	w, err := getWorkload(ctx, c, a.ref)
	if err != nil {
		return nil, err
	}
	if name := p.String("after_rotation_of"); name != "" {
		done, why, err := restartedSinceRotation(ctx, c, a.ref.Namespace, name, w.template.Annotations[RestartedAtAnnotation])
		if err != nil {
			return nil, err
		}
		if done {
			return &action.Plan{Summary: fmt.Sprintf("%s was restarted after Secret %s/%s was rotated (%s)", a.ref, a.ref.Namespace, name, why), Noop: true}, nil
		}
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("restart %s (replace its pods) and wait up to %s for the rollout", a.ref, a.timeout),
		Targets: []string{a.ref.String()},
		Count:   1,
	}
	if at := w.template.Annotations[RestartedAtAnnotation]; at != "" {
		plan.Targets[0] += " (last restarted " + at + ")"
	}
	return plan, nil
}

func (RolloutRestart) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	a, err := restartParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	now := time.Now
	if env.Now != nil {
		now = env.Now
	}
	at := now().UTC().Format(time.RFC3339)
	dry := env.DryRun == action.DryRunServer
	if err := restart(ctx, c, a.ref, at, dry); err != nil {
		return nil, fmt.Errorf("restart %s: %s", a.ref, kube.Short(err))
	}
	if dry {
		return &action.Result{Summary: fmt.Sprintf("server dry run: the API server accepted the restart of %s; nothing was changed", a.ref), Changed: 1}, nil
	}
	res := &action.Result{Changed: 1, Irreversible: "a restart cannot be undone; pods were replaced"}
	if err := waitRollout(ctx, env, c, a.ref, a.timeout); err != nil {
		res.Summary = fmt.Sprintf("restarted %s at %s, but the rollout did not complete", a.ref, at)
		res.Failed = []action.Failure{{Target: a.ref.String(), Error: err.Error()}}
		return res, ctx.Err()
	}
	res.Summary = fmt.Sprintf("restarted %s at %s; rollout complete", a.ref, at)
	return res, nil
}

// restartedSinceRotation reports whether restartedAt (the pod template's
// annotation) is no earlier than the Secret's rotated-at annotation.
func restartedSinceRotation(ctx context.Context, c *kube.Clients, ns, name, restartedAt string) (bool, string, error) {
	s, err := c.Core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("get Secret %s/%s: %s", ns, name, kube.Short(err))
	}
	rotated, rerr := time.Parse(time.RFC3339, s.Annotations[RotatedAt])
	restarted, serr := time.Parse(time.RFC3339, restartedAt)
	// restartedAt has whole seconds (as kubectl writes it): a restart in
	// the second of the rotation counts as after it, since the runbook
	// restarts after rotating.
	if rerr != nil || serr != nil || restarted.Before(rotated.Truncate(time.Second)) {
		return false, "", nil
	}
	return true, fmt.Sprintf("restarted %s, rotated %s", restartedAt, s.Annotations[RotatedAt]), nil
}

// restart does what kubectl rollout restart does: a new restartedAt
// annotation in the pod template rolls out new pods.
func restart(ctx context.Context, c *kube.Clients, ref workloadRef, at string, dry bool) error {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{RestartedAtAnnotation: at}},
	}}})
	_, err := patchWorkload(ctx, c, ref, patch, dry)
	return err
}

// RestartDeployment restarts a Deployment like kubectl rollout restart,
// for actions whose change only takes effect in new pods (a rotated
// Secret read as env vars).
func RestartDeployment(ctx context.Context, c *kube.Clients, ns, name string, at time.Time, dry bool) error {
	return restart(ctx, c, workloadRef{Kind: "deployment", Namespace: ns, Name: name}, at.UTC().Format(time.RFC3339), dry)
}

// WaitDeploymentRollout waits for a Deployment's rollout as the workload
// actions do, failing with what is stuck when timeout passes.
func WaitDeploymentRollout(ctx context.Context, env *action.Env, c *kube.Clients, ns, name string, timeout time.Duration) error {
	return waitRollout(ctx, env, c, workloadRef{Kind: "deployment", Namespace: ns, Name: name}, timeout)
}
