package kubeaction

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// SetImage sets container images of a workload, like `kubectl set image`,
// and waits for the rollout.
type SetImage struct{}

// setImageArgs are a set-image step's params, defaults applied.
type setImageArgs struct {
	ref     workloadRef
	images  map[string]string // container -> image
	timeout time.Duration
}

func setImageParams(p runbook.Params) (setImageArgs, error) {
	ref, err := workloadOf(p, allWorkloadKinds...)
	if err != nil {
		return setImageArgs{}, err
	}
	a := setImageArgs{ref: ref, images: p.Map("images"), timeout: rolloutTimeout(p)}
	if len(a.images) == 0 {
		return a, fmt.Errorf("images: give at least one container: image")
	}
	for ct, img := range a.images {
		if errs := validation.IsDNS1123Label(ct); len(errs) > 0 {
			return a, fmt.Errorf("images: container name %q: %s", ct, errs[0])
		}
		if img == "" || strings.ContainsAny(img, " \t\n") {
			return a, fmt.Errorf("images: container %s: invalid image %q", ct, img)
		}
	}
	return a, nil
}

func (SetImage) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.set-image",
		Description: "Set container images of a Deployment, StatefulSet or DaemonSet (like kubectl set image) and wait for the rollout; " +
			"warns on a mutable tag; undo sets the previous images back and waits again.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(workloadParams(allWorkloadKinds...),
			runbook.ParamDef{Name: "images", Type: runbook.Map, Required: true, Description: "container name to image, e.g. {orchestrator: ghcr.io/llm-orchestrator/api@sha256:...}"},
			timeoutParam,
		),
		Validate: func(p runbook.Params) error {
			_, err := setImageParams(p)
			return err
		},
	}
}

func (SetImage) Permissions(p runbook.Params) []kube.Permission {
	return workloadPermissions(p, allWorkloadKinds, "", "patch")
}

// imageUndo records what a set-image changed.
type imageUndo struct {
	Workload workloadRef       `json:"workload"`
	Previous map[string]string `json:"previous"` // container -> image before
	Set      map[string]string `json:"set"`      // container -> image irctl set
	Timeout  time.Duration     `json:"timeout"`
}

func (SetImage) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := setImageParams(p)
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
	cur, err := containerImages(w.template, keys(a.images))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.ref, err)
	}
	plan := &action.Plan{}
	var changes []string
	for _, ct := range keys(a.images) {
		if cur[ct] != a.images[ct] {
			changes = append(changes, fmt.Sprintf("container %s: %s -> %s", ct, cur[ct], a.images[ct]))
		}
		if warn := mutableImage(a.images[ct]); warn != "" {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("container %s: %s", ct, warn))
		}
	}
	if len(changes) == 0 {
		plan.Summary = fmt.Sprintf("%s already runs %s", a.ref, formatImages(a.images))
		plan.Noop = true
		return plan, nil
	}
	plan.Summary = fmt.Sprintf("set %d image(s) of %s and wait up to %s for the rollout", len(changes), a.ref, a.timeout)
	plan.Targets = changes
	plan.Count = 1
	return plan, nil
}

// mutableImage warns when an image reference can point at different
// content tomorrow: a tag rather than a digest, worst of all latest.
func mutableImage(img string) string {
	if strings.Contains(img, "@sha256:") {
		return ""
	}
	name := img
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	tag := ""
	if i := strings.LastIndex(name, ":"); i >= 0 {
		tag = name[i+1:]
	}
	switch tag {
	case "", "latest":
		return fmt.Sprintf("image %s uses the mutable tag latest: pin a digest (@sha256:...) so the image cannot change under you", img)
	}
	return fmt.Sprintf("image %s has a tag but no digest: a tag can be moved, pin a digest (@sha256:...) for a known image", img)
}

func formatImages(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range keys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func (SetImage) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	a, err := setImageParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	prev, err := setImages(ctx, c, a.ref, a.images, dry)
	if err != nil {
		return nil, fmt.Errorf("set images of %s: %s", a.ref, kube.Short(err))
	}
	if dry {
		return &action.Result{Summary: fmt.Sprintf("server dry run: the API server accepted %d image change(s) on %s; nothing was changed", len(prev), a.ref), Changed: len(prev)}, nil
	}
	set := map[string]string{}
	for ct := range prev {
		set[ct] = a.images[ct]
	}
	undo, _ := json.Marshal(imageUndo{Workload: a.ref, Previous: prev, Set: set, Timeout: a.timeout})
	res := &action.Result{Changed: len(prev), Undo: undo}
	if len(prev) > 0 {
		if err := waitRollout(ctx, env, c, a.ref, a.timeout); err != nil {
			// The images are set: the journal must record it for undo even
			// though the step failed, so fail the target, not the step.
			res.Summary = fmt.Sprintf("set %s on %s, but the rollout did not complete", formatImages(set), a.ref)
			res.Failed = []action.Failure{{Target: a.ref.String(), Error: err.Error()}}
			return res, ctx.Err()
		}
	}
	res.Summary = fmt.Sprintf("set %s on %s (was %s); rollout complete", formatImages(set), a.ref, formatImages(prev))
	return res, nil
}

// Undo sets the previous images back, on containers still running the
// image irctl set (a later change is somebody's decision and is kept),
// and waits for the rollout.
func (SetImage) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[imageUndo](env, raw)
	if err != nil {
		return nil, err
	}
	w, err := getWorkload(ctx, c, u.Workload)
	if err != nil {
		return nil, err
	}
	cur, err := containerImages(w.template, keys(u.Previous))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Workload, err)
	}
	back := map[string]string{}
	var failed []action.Failure
	for ct, img := range u.Previous {
		if cur[ct] != u.Set[ct] {
			failed = append(failed, action.Failure{Target: u.Workload.String() + " container " + ct, Error: fmt.Sprintf("now runs %s, not %s as irctl set it: left as it is", cur[ct], u.Set[ct])})
			continue
		}
		back[ct] = img
	}
	if len(back) == 0 {
		return &action.Result{Summary: "no image to set back on " + u.Workload.String(), Failed: failed}, nil
	}
	dry := env.DryRun == action.DryRunServer
	changed, err := setImages(ctx, c, u.Workload, back, dry)
	if err != nil {
		return nil, fmt.Errorf("set images of %s back: %s", u.Workload, kube.Short(err))
	}
	if !dry && len(changed) > 0 {
		timeout := u.Timeout
		if timeout <= 0 {
			timeout = DefaultRolloutTimeout
		}
		if err := waitRollout(ctx, env, c, u.Workload, timeout); err != nil {
			failed = append(failed, action.Failure{Target: u.Workload.String(), Error: err.Error()})
		}
	}
	return &action.Result{Summary: fmt.Sprintf("set %s back on %s", formatImages(back), u.Workload), Changed: len(changed), Failed: failed}, ctx.Err()
}
