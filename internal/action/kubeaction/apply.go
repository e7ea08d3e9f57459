package kubeaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Apply is `kubectl apply --server-side --field-manager=irctl`: manifests
// from a file or directory beside the runbook, or embedded in it, applied
// object by object. The plan is a server-side dry run of each apply
// compared with the live object, like `kubectl diff`; undo reverts what
// the apply changed in each object, or deletes the objects it created.
type Apply struct{}

func (Apply) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.apply",
		Description: "Server-side apply (field manager irctl) of manifests from a file or directory relative to the runbook, or embedded in the step; " +
			"any kind the server serves, custom resources included. The plan is a per-object diff from a server-side dry run (like kubectl diff). " +
			"A field owned by another field manager is a conflict unless force_conflicts. Secrets are refused (their values would be in the diff and the journal). " +
			"Undo reverts each changed object's fields and deletes the objects it created (a created Namespace is left, with a note).",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "path", Type: runbook.String, Description: "a manifest file, or a directory whose *.yaml, *.yml and *.json files are applied in name order, relative to the runbook's directory (this or manifests)"},
			{Name: "manifests", Type: runbook.Any, Description: "the objects, as a list or as a multi-document YAML string (this or path)"},
			{Name: "namespace", Type: runbook.String, Description: "namespace of namespaced objects that name none (kubectl apply -n); a Namespace object without a name is this namespace"},
			{Name: "force_conflicts", Type: runbook.Bool, Description: "take over fields another field manager owns (kubectl --force-conflicts) instead of failing"},
		},
		Validate: func(p runbook.Params) error {
			a, err := applyParams(p)
			if err != nil || a.path != "" {
				return err
			}
			_, err = a.load(nil) // inline manifests are checked at load time
			return err
		},
	}
}

type applyArgs struct {
	path, namespace string
	inline          any
	force           bool
}

func applyParams(p runbook.Params) (applyArgs, error) {
	a := applyArgs{path: p.String("path"), namespace: p.String("namespace"), inline: p.Any("manifests"), force: p.Bool("force_conflicts")}
	if (a.path != "") == (a.inline != nil) {
		return a, fmt.Errorf("give exactly one of path or manifests")
	}
	if a.path != "" {
		clean := path.Clean(a.path)
		if path.IsAbs(a.path) || !fs.ValidPath(clean) || clean == "." {
			return a, fmt.Errorf("path %q: want a file or directory inside the runbook's directory, relative to it (no leading / or ..)", a.path)
		}
		a.path = clean
	}
	return a, nil
}

// manifest is one object to apply and where it came from.
type manifest struct {
	source string // file and document, or manifests[i]
	obj    *unstructured.Unstructured
	// labelsOnly: a Namespace without a name, the step's own, which the
	// apply labels and never creates.
	labelsOnly bool
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %s %s", m.source, m.obj.GetKind(), objName(m.obj.GetNamespace(), m.obj.GetName()))
}

func objName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// load reads the manifests (from files, through files) and checks each
// object: kind, name, namespace, no Secrets, no object twice.
func (a applyArgs) load(files fs.FS) ([]manifest, error) {
	var docs []manifest
	var err error
	if a.path != "" {
		docs, err = readManifestPath(files, a.path)
	} else {
		docs, err = inlineManifests(a.inline)
	}
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no objects to apply")
	}
	seen := map[string]string{}
	for i := range docs {
		m := &docs[i]
		o := m.obj
		gv, err := schema.ParseGroupVersion(o.GetAPIVersion())
		if err != nil || o.GetAPIVersion() == "" || o.GetKind() == "" {
			return nil, fmt.Errorf("%s: want apiVersion and kind", m.source)
		}
		if gv.Group == "" && o.GetKind() == "Secret" {
			return nil, fmt.Errorf("%s: Secret %s: k8s.apply refuses Secrets, whose values would be in the plan's diff and the journal's undo record; rotate or set them with k8s.secret-rotate", m.source, o.GetName())
		}
		if gv.Group == "" && o.GetKind() == "Namespace" && o.GetName() == "" {
			if a.namespace == "" {
				return nil, fmt.Errorf("%s: a Namespace without a name is the step's namespace: set namespace", m.source)
			}
			o.SetName(a.namespace)
			m.labelsOnly = true
		}
		if o.GetName() == "" {
			return nil, fmt.Errorf("%s: %s without metadata.name", m.source, o.GetKind())
		}
		if gr, ok := staticKind(gv.WithKind(o.GetKind())); !ok || !clusterScoped[gr.Resource] {
			// Namespaced, or a custom kind taken to be until the
			// server says otherwise (Plan corrects it).
			switch {
			case o.GetNamespace() == "" && a.namespace == "" && ok:
				return nil, fmt.Errorf("%s: %s %s names no namespace: set the step's namespace", m.source, o.GetKind(), o.GetName())
			case o.GetNamespace() == "":
				o.SetNamespace(a.namespace)
			case a.namespace != "" && o.GetNamespace() != a.namespace:
				return nil, fmt.Errorf("%s: %s %s is in namespace %q, not the step's namespace %q", m.source, o.GetKind(), o.GetName(), o.GetNamespace(), a.namespace)
			}
		} else if o.GetNamespace() != "" {
			return nil, fmt.Errorf("%s: %s %s is cluster-scoped but names namespace %q", m.source, o.GetKind(), o.GetName(), o.GetNamespace())
		}
		key := o.GroupVersionKind().GroupKind().String() + " " + objName(o.GetNamespace(), o.GetName())
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s: %s is also in %s", m.source, key, prev)
		}
		seen[key] = m.source
	}
	return docs, nil
}

// PermissionsIn declares, per kind and namespace of the manifests, what
// planning, applying and undoing them needs. The manifests decide the
// kinds, so this reads them (action.FilePermissioned).
func (Apply) PermissionsIn(env *action.Env, p runbook.Params) ([]kube.Permission, error) {
	a, err := applyParams(p)
	if err != nil {
		return nil, err
	}
	docs, err := a.load(env.Files)
	if err != nil {
		return nil, err
	}
	var mapper meta.RESTMapper
	var perms []kube.Permission
	for _, m := range docs {
		gvk := m.obj.GroupVersionKind()
		gr, ok := staticKind(gvk)
		ns := m.obj.GetNamespace()
		if !ok {
			// A custom kind: only the server knows its resource.
			if mapper == nil {
				c, err := env.Kube()
				if err != nil {
					return nil, err
				}
				mapper = newMapper(c)
			}
			r, err := mapKind(mapper, m)
			if err != nil {
				return nil, err
			}
			gr = r.GVR.GroupResource()
			if !r.Namespaced {
				ns = ""
			}
		}
		// get: the live object for the diff and the undo record; patch
		// and create: the apply (create when the object is new); delete:
		// undo of an object the apply created. The step's own Namespace
		// is only labelled, and undo never deletes a Namespace.
		verbs := []string{"get", "patch", "create", "delete"}
		switch {
		case m.labelsOnly:
			verbs = verbs[:2]
		case gr == schema.GroupResource{Resource: "namespaces"}:
			verbs = verbs[:3]
		}
		for _, verb := range verbs {
			perms = append(perms, kube.Permission{Verb: verb, Group: gr.Group, Resource: gr.Resource, Namespace: ns})
		}
	}
	return dedupPerms(perms), nil
}

// staticKind resolves a built-in kind to its resource without a server.
func staticKind(gvk schema.GroupVersionKind) (schema.GroupResource, bool) {
	kind := strings.ToLower(gvk.Kind)
	for _, k := range knownResources {
		if k.group == gvk.Group && len(k.names) > 0 && k.names[0] == kind {
			return schema.GroupResource{Group: k.group, Resource: k.resource}, true
		}
	}
	return schema.GroupResource{}, false
}

// mapKind resolves an object's kind through discovery: an unknown kind is
// a one-line error naming the file and the object.
func mapKind(mapper meta.RESTMapper, m manifest) (resolvedResource, error) {
	gvk := m.obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return resolvedResource{}, fmt.Errorf("%s: the server does not serve kind %s in %s (is its CRD installed?)", m, gvk.Kind, gvk.GroupVersion())
		}
		return resolvedResource{}, fmt.Errorf("%s: %s", m, kube.Short(err))
	}
	return resolvedResource{GVR: mapping.Resource, Kind: gvk.Kind, Namespaced: mapping.Scope.Name() == meta.RESTScopeNameNamespace}, nil
}

// Object states in the plan.
const (
	stateCreated   = "created"
	stateChanged   = "changed"
	stateUnchanged = "unchanged"
)

// applyTarget is one object of the plan.
type applyTarget struct {
	manifest
	res   resolvedResource
	state string
	body  []byte // the object as JSON, the apply's request body
}

func (t applyTarget) label() string {
	return t.res.label() + " " + objName(t.obj.GetNamespace(), t.obj.GetName())
}

func (t applyTarget) client(c *kube.Clients) dynamic.ResourceInterface {
	if t.res.Namespaced {
		return c.Dynamic.Resource(t.res.GVR).Namespace(t.obj.GetNamespace())
	}
	return c.Dynamic.Resource(t.res.GVR)
}

// apply sends the server-side apply.
func (t applyTarget) apply(ctx context.Context, c *kube.Clients, force, dry bool) (*unstructured.Unstructured, error) {
	out, err := t.client(c).Patch(ctx, t.obj.GetName(), types.ApplyPatchType, t.body, metav1.PatchOptions{
		FieldManager: kube.FieldManager, Force: &force, DryRun: kube.DryRunOpt(dry),
	})
	if err != nil {
		return nil, applyError(err, force)
	}
	return out, nil
}

// applyError says who owns a conflicting field, on one line.
func applyError(err error, force bool) error {
	var status apierrors.APIStatus
	if !apierrors.IsConflict(err) || force || !errors.As(err, &status) {
		return err
	}
	var fields []string
	if status.Status().Details != nil {
		for _, cause := range status.Status().Details.Causes {
			if cause.Type == metav1.CauseTypeFieldManagerConflict {
				fields = append(fields, fmt.Sprintf("%s (%s)", cause.Field, cause.Message))
			}
		}
	}
	if len(fields) == 0 {
		return err
	}
	return fmt.Errorf("conflict: %s; set force_conflicts: true to take the field(s) over from that field manager", strings.Join(fields, "; "))
}

func (Apply) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	a, err := applyParams(p)
	if err != nil {
		return nil, err
	}
	docs, err := a.load(env.Files)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	mapper := newMapper(c)
	targets := make([]applyTarget, 0, len(docs))
	for _, m := range docs {
		r, err := mapKind(mapper, m)
		if err != nil {
			return nil, err
		}
		if !r.Namespaced {
			m.obj.SetNamespace("")
		} else if m.obj.GetNamespace() == "" {
			return nil, fmt.Errorf("%s: %s is namespaced and names no namespace: set the step's namespace", m.source, r.label())
		}
		body, err := json.Marshal(m.obj.Object)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m.source, err)
		}
		targets = append(targets, applyTarget{manifest: m, res: r, body: body})
	}

	var lines, diffs []string
	counts := map[string]int{}
	for i := range targets {
		t := &targets[i]
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		live, err := t.client(c).Get(ctx, t.obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			live = nil
		case err != nil:
			return nil, fmt.Errorf("%s: get: %s", t.manifest, kube.Short(err))
		}
		// What the object would be: the server's own dry run of the
		// apply, with its defaults, admission and conflicts.
		would, err := t.apply(ctx, c, a.force, true)
		if err != nil {
			return nil, fmt.Errorf("%s: server dry run: %s", t.manifest, kube.Short(err))
		}
		diff := objectDiff(env, t.label(), live, would)
		switch {
		case live == nil && t.labelsOnly:
			return nil, fmt.Errorf("%s: namespace %s does not exist; a Namespace without a name labels the step's namespace and is never created", t.source, t.obj.GetName())
		case live == nil:
			t.state = stateCreated
		case len(diff) > 0:
			t.state = stateChanged
		default:
			t.state = stateUnchanged
		}
		counts[t.state]++
		lines = append(lines, t.state+": "+t.label())
		diffs = append(diffs, diff...)
	}
	n := counts[stateCreated] + counts[stateChanged]
	what := "the manifests"
	if a.path != "" {
		what = a.path
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("server-side apply of %d object(s) from %s: %d to create, %d to change, %d unchanged",
			len(targets), what, counts[stateCreated], counts[stateChanged], counts[stateUnchanged]),
		Targets: action.Abbreviate(lines, 50),
		Count:   n,
		Noop:    n == 0,
		Diff:    limitDiff(diffs, maxDiffLines),
		State:   targets,
	}
	if a.force {
		plan.Warnings = append(plan.Warnings, "force_conflicts: fields owned by other field managers are taken over by irctl")
	}
	return plan, nil
}

func (Apply) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	force := p.Bool("force_conflicts")
	dry := env.DryRun == action.DryRunServer
	targets := plan.State.([]applyTarget)
	var todo []applyTarget
	for _, t := range targets {
		if t.state != stateUnchanged {
			todo = append(todo, t)
		}
	}
	env.Progress.Start(int64(len(todo)), "objects applied")
	var u applyUndo
	var failed []action.Failure
	created, changed := 0, 0
	for _, t := range todo {
		if ctx.Err() != nil {
			break
		}
		rec, err := applyOne(ctx, c, t, force, dry)
		if err != nil {
			failed = append(failed, action.Failure{Target: t.label(), Error: kube.Short(err)})
			continue
		}
		env.Progress.Add(1)
		if rec.Created {
			created++
		} else {
			changed++
		}
		if !dry {
			u.Objects = append(u.Objects, *rec)
		}
	}
	unchanged := len(targets) - len(todo)
	summary := fmt.Sprintf("applied %d object(s): %d created, %d changed; %d unchanged", created+changed, created, changed, unchanged)
	if dry {
		summary = fmt.Sprintf("server dry run: the API server accepted applying %d object(s) (%d new, %d changed); nothing was changed", created+changed, created, changed)
	}
	res := &action.Result{Summary: summary, Changed: created + changed, Failed: failed}
	if len(u.Objects) > 0 {
		if res.Undo, err = json.Marshal(u); err != nil {
			return nil, err
		}
	}
	return res, ctx.Err()
}

// applyOne reads the object as it is now (for the undo record), applies,
// and records how to revert what the apply changed. A server-side apply
// is idempotent, so after an uncertain failure it is sent again.
func applyOne(ctx context.Context, c *kube.Clients, t applyTarget, force, dry bool) (*appliedObject, error) {
	client := t.client(c)
	prev, err := client.Get(ctx, t.obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		prev = nil
	case err != nil:
		return nil, fmt.Errorf("get: %w", err)
	}
	var out *unstructured.Unstructured
	if err := kube.Write(ctx, func() error {
		var err error
		out, err = t.apply(ctx, c, force, dry)
		return err
	}, nil); err != nil {
		return nil, err
	}
	rec := &appliedObject{
		Group: t.res.GVR.Group, Version: t.res.GVR.Version, Resource: t.res.GVR.Resource, Kind: t.res.Kind,
		Namespaced: t.res.Namespaced, Namespace: out.GetNamespace(), Name: out.GetName(), UID: string(out.GetUID()),
		Created: prev == nil,
	}
	if prev != nil && !dry {
		if rec.Previous, rec.Revert, err = revertPatch(prev, out); err != nil {
			return nil, err
		}
	}
	return rec, nil
}
