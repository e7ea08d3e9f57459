package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// scaleKinds are the workloads with a replica count.
var scaleKinds = []string{kindDeployment, kindStatefulSet}

// maxReplicas guards against a typo scaling a workload to thousands.
const maxReplicas = 1000

// Scale sets a Deployment's or StatefulSet's replica count through the
// scale subresource and waits until that many replicas are ready.
type Scale struct{}

type scaleArgs struct {
	ref      workloadRef
	replicas int32
	timeout  time.Duration
}

func scaleParams(p runbook.Params) (scaleArgs, error) {
	ref, err := workloadOf(p, scaleKinds...)
	if err != nil {
		return scaleArgs{}, err
	}
	n := p.Int("replicas")
	if n < 0 || n > maxReplicas {
		return scaleArgs{}, fmt.Errorf("replicas is %d: want 0 to %d", n, maxReplicas)
	}
	return scaleArgs{ref: ref, replicas: int32(n), timeout: rolloutTimeout(p)}, nil
}

func (Scale) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "k8s.scale",
		Description: "Scale a Deployment or StatefulSet to a replica count (scale subresource) and wait until that many replicas are ready; undo scales back to the previous count.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(workloadParams(scaleKinds...),
			runbook.ParamDef{Name: "replicas", Type: runbook.Int, Required: true, Description: fmt.Sprintf("the replica count (0 to %d)", maxReplicas)},
			timeoutParam,
		),
		Validate: func(p runbook.Params) error {
			_, err := scaleParams(p)
			return err
		},
	}
}

func (Scale) Permissions(p runbook.Params) []kube.Permission {
	return workloadPermissions(p, scaleKinds, "scale", "get", "update")
}

type scaleUndo struct {
	Workload workloadRef   `json:"workload"`
	Previous int32         `json:"previous"`
	Set      int32         `json:"set"`
	Timeout  time.Duration `json:"timeout"`
}

func getScale(ctx context.Context, c *kube.Clients, ref workloadRef) (*autoscalingv1.Scale, error) {
	if ref.Kind == kindStatefulSet {
		return c.Core.AppsV1().StatefulSets(ref.Namespace).GetScale(ctx, ref.Name, metav1.GetOptions{})
	}
	return c.Core.AppsV1().Deployments(ref.Namespace).GetScale(ctx, ref.Name, metav1.GetOptions{})
}

// setScale writes the replica count with the resourceVersion read, so the
// previous count it returns is the one replaced.
func setScale(ctx context.Context, c *kube.Clients, ref workloadRef, n int32, dry bool) (prev int32, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := getScale(ctx, c, ref)
		if err != nil {
			return err
		}
		prev = s.Spec.Replicas
		if prev == n {
			return nil
		}
		s.Spec.Replicas = n
		opts := metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}
		if ref.Kind == kindStatefulSet {
			_, err = c.Core.AppsV1().StatefulSets(ref.Namespace).UpdateScale(ctx, ref.Name, s, opts)
		} else {
			_, err = c.Core.AppsV1().Deployments(ref.Namespace).UpdateScale(ctx, ref.Name, s, opts)
		}
		return err
	})
	return prev, err
}

func (Scale) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := scaleParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	if _, err := getWorkload(ctx, c, a.ref); err != nil {
		return nil, err
	}
	s, err := getScale(ctx, c, a.ref)
	if err != nil {
		return nil, fmt.Errorf("get the scale of %s: %s", a.ref, kube.Short(err))
	}
	if s.Spec.Replicas == a.replicas {
		return &action.Plan{Summary: fmt.Sprintf("%s already has %d replica(s)", a.ref, a.replicas), Noop: true}, nil
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("scale %s from %d to %d replica(s) and wait up to %s for them", a.ref, s.Spec.Replicas, a.replicas, a.timeout),
		Targets: []string{a.ref.String()},
		Count:   1,
	}
	if a.replicas == 0 {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("%s will run no pods: its service is down until it is scaled up again", a.ref))
	}
	return plan, nil
}

func (Scale) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	a, err := scaleParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	prev, err := setScale(ctx, c, a.ref, a.replicas, dry)
	if err != nil {
		return nil, fmt.Errorf("scale %s: %s", a.ref, kube.Short(err))
	}
	changed := 0
	if prev != a.replicas {
		changed = 1
	}
	if dry {
		return &action.Result{Summary: fmt.Sprintf("server dry run: the API server accepted scaling %s from %d to %d; nothing was changed", a.ref, prev, a.replicas), Changed: changed}, nil
	}
	undo, _ := json.Marshal(scaleUndo{Workload: a.ref, Previous: prev, Set: a.replicas, Timeout: a.timeout})
	res := &action.Result{Changed: changed, Undo: undo}
	if err := waitRollout(ctx, env, c, a.ref, a.timeout); err != nil {
		res.Summary = fmt.Sprintf("scaled %s from %d to %d, but the replicas are not all ready", a.ref, prev, a.replicas)
		res.Failed = []action.Failure{{Target: a.ref.String(), Error: err.Error()}}
		return res, ctx.Err()
	}
	res.Summary = fmt.Sprintf("scaled %s from %d to %d replica(s); all ready", a.ref, prev, a.replicas)
	return res, nil
}

// Undo scales back to the previous count, unless somebody has scaled the
// workload since (their count is kept), and waits.
func (Scale) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[scaleUndo](env, raw)
	if err != nil {
		return nil, err
	}
	s, err := getScale(ctx, c, u.Workload)
	if err != nil {
		return nil, fmt.Errorf("get the scale of %s: %s", u.Workload, kube.Short(err))
	}
	if s.Spec.Replicas != u.Set {
		return &action.Result{Summary: "left " + u.Workload.String() + " as it is", Failed: []action.Failure{{Target: u.Workload.String(),
			Error: fmt.Sprintf("now has %d replica(s), not %d as irctl set: scaled by somebody since, left as it is", s.Spec.Replicas, u.Set)}}}, nil
	}
	dry := env.DryRun == action.DryRunServer
	if _, err := setScale(ctx, c, u.Workload, u.Previous, dry); err != nil {
		return nil, fmt.Errorf("scale %s back: %s", u.Workload, kube.Short(err))
	}
	res := &action.Result{Summary: fmt.Sprintf("scaled %s back from %d to %d replica(s)", u.Workload, u.Set, u.Previous), Changed: 1}
	if !dry {
		timeout := u.Timeout
		if timeout <= 0 {
			timeout = DefaultRolloutTimeout
		}
		if err := waitRollout(ctx, env, c, u.Workload, timeout); err != nil {
			res.Failed = []action.Failure{{Target: u.Workload.String(), Error: err.Error()}}
		}
	}
	return res, ctx.Err()
}
