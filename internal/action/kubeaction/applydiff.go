package kubeaction

// k8s.apply's manifests (files, inline, multi-document YAML), its
// kubectl-diff-like plan and its undo.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
)

// readManifestPath reads a file, or a directory's manifest files in name
// order (not its subdirectories, as kubectl apply -f without -R).
func readManifestPath(files fs.FS, p string) ([]manifest, error) {
	if files == nil {
		return nil, fmt.Errorf("path %s: the runbook's directory is not known, so a relative path cannot be resolved", p)
	}
	st, err := fs.Stat(files, p)
	if err != nil {
		return nil, fmt.Errorf("path %s (relative to the runbook's directory): %v", p, unwrapFSErr(err))
	}
	names := []string{p}
	if st.IsDir() {
		entries, err := fs.ReadDir(files, p)
		if err != nil {
			return nil, fmt.Errorf("path %s: %v", p, unwrapFSErr(err))
		}
		names = names[:0]
		for _, e := range entries {
			ext := path.Ext(e.Name())
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				names = append(names, path.Join(p, e.Name()))
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, fmt.Errorf("path %s: no .yaml, .yml or .json files in the directory", p)
		}
	}
	var out []manifest
	for _, n := range names {
		data, err := fs.ReadFile(files, n)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", n, unwrapFSErr(err))
		}
		docs, err := splitManifests(n, string(data))
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	return out, nil
}

func unwrapFSErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// inlineManifests reads the manifests param: a list of objects, or a
// multi-document YAML string.
func inlineManifests(v any) ([]manifest, error) {
	switch x := v.(type) {
	case string:
		return splitManifests("manifests", x)
	case []any:
		var out []manifest
		for i, item := range x {
			src := fmt.Sprintf("manifests[%d]", i)
			m, ok := item.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: want an object (a mapping), got %T", src, item)
			}
			o, err := toUnstructured(src, m)
			if err != nil {
				return nil, err
			}
			out = append(out, manifest{source: src, obj: o})
		}
		return out, nil
	}
	return nil, fmt.Errorf("manifests: want a list of objects or a YAML string, got %T", v)
}

// splitManifests parses a multi-document YAML (or JSON) text; documents
// that hold only comments are skipped.
func splitManifests(source, text string) ([]manifest, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	var out []manifest
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", source, i, err)
		}
		src := source
		if i > 1 || bytes.Contains([]byte(text), []byte("\n---")) {
			src = fmt.Sprintf("%s (document %d)", source, i)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%s: %v", src, err)
		}
		if m == nil {
			continue
		}
		o, err := toUnstructured(src, m)
		if err != nil {
			return nil, err
		}
		out = append(out, manifest{source: src, obj: o})
	}
}

// toUnstructured copies m (through JSON, which also checks that it is an
// object the API can take) into an object.
func toUnstructured(source string, m map[string]any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	o := &unstructured.Unstructured{}
	if err := o.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	return o, nil
}

// maxDiffLines bounds the diff in a plan; the objects are in the runbook.
const maxDiffLines = 400

func limitDiff(lines []string, max int) []string {
	if len(lines) <= max {
		return lines
	}
	return append(lines[:max:max], fmt.Sprintf("... %d more line(s) of diff not shown", len(lines)-max))
}

// comparable strips what changes on every write and says nothing about
// the object (kubectl diff's view): managedFields, resourceVersion,
// generation, uid and timestamps. withStatus keeps status (a plan shows it;
// an undo never writes it).
func comparable(o *unstructured.Unstructured, withStatus bool) map[string]any {
	if o == nil {
		return nil
	}
	c := o.DeepCopy()
	for _, f := range []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "deletionTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	if !withStatus {
		unstructured.RemoveNestedField(c.Object, "status")
	}
	return c.Object
}

// objectDiff is a unified diff of the live object and the dry run's
// result; empty when they are the same. A new object is all additions.
func objectDiff(env *action.Env, label string, live, would *unstructured.Unstructured) []string {
	text := func(o *unstructured.Unstructured) string {
		if o == nil {
			return ""
		}
		b, err := yaml.Marshal(comparable(o, true))
		if err != nil {
			return fmt.Sprintf("(cannot show: %v)\n", err)
		}
		s := string(b)
		for _, secret := range env.Secrets {
			if secret != "" {
				s = strings.ReplaceAll(s, secret, "[redacted]")
			}
		}
		return s
	}
	a, b := text(live), text(would)
	if a == b {
		return nil
	}
	from := label + " (live)"
	if live == nil {
		from = label + " (new object)"
	}
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b), FromFile: from, ToFile: label + " (applied)", Context: 3,
	})
	if err != nil {
		return []string{fmt.Sprintf("(cannot diff: %v)", err)}
	}
	return strings.Split(strings.TrimRight(d, "\n"), "\n")
}

// applyUndo is k8s.apply's undo record: each object it created or
// changed, in the order applied.
type applyUndo struct {
	Objects []appliedObject `json:"objects"`
}

// appliedObject is one object the apply wrote.
type appliedObject struct {
	Group      string `json:"group,omitempty"`
	Version    string `json:"version"`
	Resource   string `json:"resource"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	// Created: the apply made it; undo deletes it.
	Created bool `json:"created,omitempty"`
	// Previous is the whole object before the apply (without status and
	// managedFields), for the record.
	Previous map[string]any `json:"previous,omitempty"`
	// Revert is the JSON merge patch from the applied object back to the
	// previous one: undo sends it, so only what the apply changed goes
	// back, and later changes by others to other fields stay.
	Revert json.RawMessage `json:"revert,omitempty"`
}

func (o appliedObject) label() string {
	r := resolvedResource{GVR: schema.GroupVersionResource{Group: o.Group}, Kind: o.Kind}
	return r.label() + " " + objName(o.Namespace, o.Name)
}

func (o appliedObject) client(c *kube.Clients) interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*unstructured.Unstructured, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions, sub ...string) error
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error)
} {
	r := c.Dynamic.Resource(schema.GroupVersionResource{Group: o.Group, Version: o.Version, Resource: o.Resource})
	if o.Namespaced {
		return r.Namespace(o.Namespace)
	}
	return r
}

// revertPatch returns the previous object and the merge patch that takes
// the applied object back to it. The patch carries the UID, so that it
// fails on an object replaced since (the API server checks it).
func revertPatch(prev, applied *unstructured.Unstructured) (map[string]any, json.RawMessage, error) {
	before, err := json.Marshal(comparable(prev, false))
	if err != nil {
		return nil, nil, err
	}
	after, err := json.Marshal(comparable(applied, false))
	if err != nil {
		return nil, nil, err
	}
	patch, err := jsonpatch.CreateMergePatch(after, before)
	if err != nil {
		return nil, nil, fmt.Errorf("revert patch: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, nil, err
	}
	if len(m) == 0 {
		return comparable(prev, false), nil, nil
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["uid"] = string(applied.GetUID())
	patch, err = json.Marshal(m)
	return comparable(prev, false), patch, err
}

// errReplacedObject is an object whose UID is not the one irctl applied.
var errReplacedObject = errors.New("not the object irctl applied (its UID changed): left alone")

// Undo reverts the objects in reverse order: a changed object gets its
// previous fields back, a created one is deleted (UID precondition). A
// Namespace the apply created is left: deleting it would delete
// everything put in it since.
func (Apply) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[applyUndo](env, raw)
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	env.Progress.Start(int64(len(u.Objects)), "objects reverted")
	var failed []action.Failure
	var kept []string
	restored, deleted, gone := 0, 0, 0
	for i := len(u.Objects) - 1; i >= 0 && ctx.Err() == nil; i-- {
		o := u.Objects[i]
		var err error
		switch {
		case o.Created && o.Group == "" && o.Resource == "namespaces":
			kept = append(kept, o.label())
		case o.Created:
			err = undoCreate(ctx, c, o, dry)
			if err == nil {
				deleted++
			}
		case len(o.Revert) > 0:
			err = undoChange(ctx, c, o, dry)
			if err == nil {
				restored++
			}
		}
		switch {
		case apierrors.IsNotFound(err):
			gone++
		case err != nil:
			failed = append(failed, action.Failure{Target: o.label(), Error: kube.Short(err)})
		}
		env.Progress.Add(1)
	}
	summary := fmt.Sprintf("restored %d changed object(s), deleted %d created object(s)", restored, deleted)
	if dry {
		summary = "server dry run: the API server accepted this: " + summary + "; nothing was changed"
	}
	if gone > 0 {
		summary += fmt.Sprintf("; %d already gone", gone)
	}
	res := &action.Result{Summary: summary, Changed: restored + deleted, Failed: failed}
	if len(kept) > 0 {
		res.Irreversible = "left the Namespace(s) the apply created, which may hold objects made since (delete by hand if empty): " + strings.Join(kept, ", ")
	}
	return res, ctx.Err()
}

func undoCreate(ctx context.Context, c *kube.Clients, o appliedObject, dry bool) error {
	client := o.client(c)
	uid := types.UID(o.UID)
	err := kube.Write(ctx, func() error {
		return client.Delete(ctx, o.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, DryRun: kube.DryRunOpt(dry)})
	}, func() (bool, error) {
		cur, err := client.Get(ctx, o.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && !dry:
			return true, nil
		case err == nil && cur.GetUID() != uid:
			return false, errReplacedObject
		}
		return false, err
	})
	if apierrors.IsConflict(err) {
		return errReplacedObject // the UID precondition failed
	}
	return err
}

// undoChange sends the revert patch; it is idempotent, so an uncertain
// failure is simply sent again.
func undoChange(ctx context.Context, c *kube.Clients, o appliedObject, dry bool) error {
	client := o.client(c)
	err := kube.Write(ctx, func() error {
		_, err := client.Patch(ctx, o.Name, types.MergePatchType, o.Revert, metav1.PatchOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)})
		return err
	}, nil)
	if apierrors.IsConflict(err) || (apierrors.IsInvalid(err) && strings.Contains(err.Error(), "metadata.uid")) {
		return errReplacedObject // the UID in the patch did not match: the patch was refused whole
	}
	return err
}
