package kubeaction

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
)

// applyRun plans k8s.apply with files as the runbook's directory and
// applies the plan.
func (f *fixture) applyRun(files fs.FS, dry action.DryRun, params map[string]any) (*action.Plan, *action.Result) {
	f.t.Helper()
	a := Apply{}
	p := a.Spec().MustBind(params)
	f.validate(a, p)
	env := f.env(dry)
	env.Files = files
	plan, err := a.Plan(f.t.Context(), env, p)
	if err != nil {
		f.t.Fatalf("k8s.apply plan: %v", err)
	}
	if plan.Noop {
		return plan, nil
	}
	res, err := a.Apply(f.t.Context(), env, p, plan)
	if err != nil {
		f.t.Fatalf("k8s.apply: %v", err)
	}
	if len(res.Failed) > 0 {
		f.t.Fatalf("k8s.apply failed for %v", res.Failed)
	}
	return plan, res
}

func (f *fixture) configMap(name string) *corev1.ConfigMap {
	f.t.Helper()
	cm, err := f.cs.CoreV1().ConfigMaps(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return cm
}

const applyTestManifests = `# a comment-only document first, as files often start
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    hardened: "true"
data:
  mode: strict
  audit: "on"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-ingress
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// TestApplyCreatesAndRerunIsNoop applies a directory of manifests: the plan
// shows both objects as new, a server dry run creates nothing, the apply
// creates them with irctl as field manager, and planning again is a no-op.
func TestApplyCreatesAndRerunIsNoop(t *testing.T) {
	f := newFixture(t)
	files := fstest.MapFS{
		"manifests/hardening/10-objects.yaml": {Data: []byte(applyTestManifests)},
		"manifests/hardening/README.md":       {Data: []byte("not a manifest")},
	}
	params := map[string]any{"path": "manifests/hardening", "namespace": f.ns}

	plan, res := f.applyRun(files, action.DryRunServer, params)
	if plan.Count != 2 || !contains(plan.Targets, "created: configmap "+f.ns+"/settings") || !contains(plan.Targets, "created: networkpolicy.networking.k8s.io "+f.ns+"/deny-ingress") {
		t.Fatalf("plan %+v: want both objects created", plan)
	}
	if !contains(plan.Diff, "(new object)") || !contains(plan.Diff, "+  mode: strict") {
		t.Errorf("plan diff does not show the new objects:\n%s", strings.Join(plan.Diff, "\n"))
	}
	if res.Changed != 2 || len(res.Undo) != 0 || !strings.Contains(res.Summary, "server dry run") {
		t.Errorf("server dry run result %+v", res)
	}
	if f.configMap("settings") != nil || f.policy("deny-ingress") != nil {
		t.Fatal("the server dry run created objects")
	}

	_, res = f.applyRun(files, action.DryRunNone, params)
	if res.Changed != 2 || !strings.Contains(res.Summary, "2 created") {
		t.Fatalf("apply: %+v", res)
	}
	cm := f.configMap("settings")
	if cm == nil || cm.Data["mode"] != "strict" || cm.Labels["hardened"] != "true" || f.policy("deny-ingress") == nil {
		t.Fatalf("objects not applied: %+v", cm)
	}
	managers := map[string]metav1.ManagedFieldsOperationType{}
	for _, m := range cm.ManagedFields {
		managers[m.Manager] = m.Operation
	}
	if managers["irctl"] != metav1.ManagedFieldsOperationApply {
		t.Errorf("field managers %v, want irctl applying", managers)
	}
	before := f.versions()
	before["configmap/settings"] = cm.ResourceVersion

	plan, _ = f.applyRun(files, action.DryRunNone, params)
	if !plan.Noop || plan.Count != 0 || !contains(plan.Targets, "unchanged: configmap "+f.ns+"/settings") || len(plan.Diff) != 0 {
		t.Errorf("second plan %+v: want a no-op with both unchanged", plan)
	}
	after := f.configMap("settings").ResourceVersion
	f.sameVersions(map[string]string{"networkpolicy/deny-ingress": before["networkpolicy/deny-ingress"]}, "planning again")
	if after != before["configmap/settings"] {
		t.Errorf("planning again wrote the ConfigMap (resourceVersion %s -> %s)", before["configmap/settings"], after)
	}
}

// TestApplyOverExistingThenUndo applies over an object another manager
// made and a new one: the plan's diff shows the change, a server dry run
// writes nothing, and undo gives the first its fields back and deletes
// the second.
func TestApplyOverExistingThenUndo(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	_, err := f.cs.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Labels: map[string]string{"team": "platform"}},
		Data:       map[string]string{"mode": "lax", "owner": "platform"},
	}, metav1.CreateOptions{FieldManager: "platform-deploy"})
	if err != nil {
		t.Fatal(err)
	}
	// mode is the other manager's: changing it needs force_conflicts.
	manifests := []any{
		map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "settings", "labels": map[string]any{"hardened": "true"}},
			"data": map[string]any{"mode": "strict", "audit": "on"}},
		map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": map[string]any{"name": "deny-ingress"},
			"spec": map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress"}}},
	}
	params := map[string]any{"manifests": manifests, "namespace": f.ns}

	a := Apply{}
	env := f.env(action.DryRunNone)
	_, err = a.Plan(ctx, env, a.Spec().MustBind(params))
	if err == nil || !strings.Contains(err.Error(), `"platform-deploy"`) || !strings.Contains(err.Error(), ".data.mode") || !strings.Contains(err.Error(), "force_conflicts") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a field owned by another manager: got %v, want a one-line conflict naming platform-deploy and .data.mode", err)
	}

	params["force_conflicts"] = true
	cmVersion := f.configMap("settings").ResourceVersion
	plan, res := f.applyRun(nil, action.DryRunServer, params)
	if plan.Count != 2 || !contains(plan.Targets, "changed: configmap "+f.ns+"/settings") || !contains(plan.Targets, "created: networkpolicy") {
		t.Fatalf("plan %+v", plan)
	}
	for _, want := range []string{"-  mode: lax", "+  mode: strict", "+  audit: \"on\"", "+    hardened: \"true\""} {
		if !contains(plan.Diff, want) {
			t.Errorf("plan diff lacks %q:\n%s", want, strings.Join(plan.Diff, "\n"))
		}
	}
	if contains(plan.Diff, "resourceVersion") || contains(plan.Diff, "managedFields") {
		t.Errorf("plan diff shows write noise:\n%s", strings.Join(plan.Diff, "\n"))
	}
	if res.Changed != 2 || f.configMap("settings").ResourceVersion != cmVersion || f.policy("deny-ingress") != nil {
		t.Fatalf("server dry run changed something: %+v", res)
	}

	_, res = f.applyRun(nil, action.DryRunNone, params)
	if res.Changed != 2 || !strings.Contains(res.Summary, "1 created, 1 changed") {
		t.Fatalf("apply: %+v", res)
	}
	cm := f.configMap("settings")
	if cm.Data["mode"] != "strict" || cm.Data["audit"] != "on" || cm.Data["owner"] != "platform" || cm.Labels["hardened"] != "true" {
		t.Fatalf("applied ConfigMap %+v", cm)
	}
	np := f.policy("deny-ingress")
	if np == nil {
		t.Fatal("NetworkPolicy not created")
	}

	out := f.undo(a, res)
	if out.Changed != 2 || len(out.Failed) > 0 {
		t.Fatalf("undo: %+v", out)
	}
	cm = f.configMap("settings")
	if cm.Data["mode"] != "lax" || cm.Data["owner"] != "platform" || len(cm.Data) != 2 || cm.Labels["team"] != "platform" || cm.Labels["hardened"] != "" {
		t.Errorf("undo did not restore the ConfigMap: data %v labels %v", cm.Data, cm.Labels)
	}
	if f.policy("deny-ingress") != nil {
		t.Error("undo left the NetworkPolicy the apply created")
	}
	// Undo again: the revert patch is sent again (same result), the
	// deleted policy is already gone.
	again := f.undo(a, res)
	if len(again.Failed) > 0 || !strings.Contains(again.Summary, "1 already gone") {
		t.Errorf("second undo: %+v", again)
	}
	if cm2 := f.configMap("settings"); cm2.Data["mode"] != "lax" {
		t.Errorf("second undo changed the ConfigMap: %v", cm2.Data)
	}
}

// TestApplyUndoLeavesReplacedObjects: an object deleted and made again
// after the apply is someone else's; undo reports it and leaves it, be it
// one the apply created or one it changed.
func TestApplyUndoLeavesReplacedObjects(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cms := f.cs.CoreV1().ConfigMaps(f.ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\ndata:\n  a: b\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  b: \"2\"\n", "namespace": f.ns}
	_, res := f.applyRun(nil, action.DryRunNone, params)
	for _, name := range []string{"made", "kept"} {
		if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"b": "theirs"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := f.undo(Apply{}, res)
	if len(out.Failed) != 2 || !strings.Contains(out.Failed[0].Error, "UID changed") || !strings.Contains(out.Failed[1].Error, "UID changed") {
		t.Errorf("undo of replaced objects: %+v", out)
	}
	for _, name := range []string{"made", "kept"} {
		if cm := f.configMap(name); cm == nil || cm.Data["b"] != "theirs" {
			t.Errorf("undo touched the replaced ConfigMap %s: %+v", name, cm)
		}
	}
}

// TestApplyCustomResourceAndUnknownKind: a custom kind the server serves
// (the sandbox's VolumeSnapshotClass CRD, cluster-scoped) is applied and
// undone like any other; a kind it does not serve is a one-line error
// naming the file and the object.
func TestApplyCustomResourceAndUnknownKind(t *testing.T) {
	f := newFixture(t)
	name := "irctl-test-" + randHex(3)
	files := fstest.MapFS{
		"crs/class.yaml":  {Data: []byte("apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata:\n  name: " + name + "\ndriver: hostpath.csi.k8s.io\ndeletionPolicy: Retain\n")},
		"crs/widget.yaml": {Data: []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gadget\nspec: {}\n")},
	}
	a := Apply{}
	env := f.env(action.DryRunNone)
	env.Files = files
	_, err := a.Plan(t.Context(), env, a.Spec().MustBind(map[string]any{"path": "crs", "namespace": f.ns}))
	if err == nil || !strings.Contains(err.Error(), "crs/widget.yaml") || !strings.Contains(err.Error(), "Widget") || !strings.Contains(err.Error(), "gadget") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unknown kind: got %v, want a one-line error naming crs/widget.yaml and Widget gadget", err)
	}
	// The step's Namespace is labelled, never created.
	_, err = a.Plan(t.Context(), env, a.Spec().MustBind(map[string]any{"manifests": "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n", "namespace": "absent-" + randHex(3)}))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("labelling a namespace that does not exist: got %v", err)
	}
	perms, err := a.PermissionsIn(env, a.Spec().MustBind(map[string]any{"path": "crs/class.yaml"}))
	if err != nil || !containsPerm(perms, "patch", "snapshot.storage.k8s.io", "volumesnapshotclasses", "") {
		t.Errorf("permissions of a custom kind: %v %v", perms, err)
	}

	plan, res := f.applyRun(files, action.DryRunNone, map[string]any{"path": "crs/class.yaml"})
	if !contains(plan.Targets, "created: volumesnapshotclass.snapshot.storage.k8s.io "+name) {
		t.Fatalf("plan %+v", plan)
	}
	gvr := schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}
	if _, err := f.clients.Dynamic.Resource(gvr).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("custom resource not created: %v", err)
	}
	f.undo(a, res)
	if _, err := f.clients.Dynamic.Resource(gvr).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("undo left the custom resource: %v", err)
	}
}

// TestShippedManifestsApply applies every shipped manifest directory to
// the sandbox: a server dry run of each (the plan), and for the
// security-incident ones a real apply into a namespace of the test's, after
// which Pod Security Admission refuses a privileged pod there.
func TestShippedManifestsApply(t *testing.T) {
	f := newFixture(t)
	dirs := shippedManifestDirs(t)
	// Real creates: admission is what is tested, and a privileged pod
	// wrongly admitted stays in the test's namespace only.
	pod := func(name string, privileged bool, dry ...string) error {
		_, err := f.cs.CoreV1().Pods(f.ns).Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(privileged)}}}},
		}, metav1.CreateOptions{DryRun: dry})
		return err
	}
	if err := pod("privileged-before", true, metav1.DryRunAll); err != nil {
		t.Fatalf("before the apply a privileged pod is admitted, so that the refusal below is the labels': %v", err)
	}
	// The monitoring ConfigMap names its namespace; the others are for the
	// runbook's namespace.
	real := map[string]bool{"manifests/security-incident/network-policies": true, "manifests/security-incident/pod-security": true}
	for _, d := range dirs {
		params := map[string]any{"path": d, "namespace": f.ns}
		if d == "manifests/k8s-cluster-compromise/monitoring" {
			delete(params, "namespace")
		}
		dry := action.DryRunServer
		if real[d] {
			dry = action.DryRunNone
		}
		plan, res := f.applyRun(irctl.RunbookDir(), dry, params)
		if plan.Noop || res == nil || res.Changed != plan.Count {
			t.Errorf("%s: plan %+v, result %+v", d, plan, res)
		}
		t.Logf("%s: %s", d, plan.Summary)
	}
	for _, want := range []string{"default-deny-ingress", "orchestrator-allow-http-ingress", "orchestrator-restrict-egress", "postgres-allow-orchestrator"} {
		if f.policy(want) == nil {
			t.Errorf("NetworkPolicy %s not applied", want)
		}
	}
	ns, err := f.cs.CoreV1().Namespaces().Get(t.Context(), f.ns, metav1.GetOptions{})
	if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "baseline" || ns.Labels["pod-security.kubernetes.io/warn"] != "restricted" {
		t.Fatalf("namespace labels %v %v", ns.Labels, err)
	}

	if err := pod("privileged", true); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity \"baseline") {
		t.Errorf("a privileged pod after the apply: got %v, want refused by PodSecurity baseline", err)
	}
	if err := pod("plain", false); err != nil {
		t.Errorf("a baseline pod after the apply: %v", err)
	}
}

// shippedManifestDirs lists every directory of runbooks/manifests that
// holds manifest files, as paths relative to the runbooks' directory.
func shippedManifestDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := fs.WalkDir(irctl.RunbookDir(), "manifests", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".json")) {
			dir := filepath.ToSlash(filepath.Dir(p))
			if len(dirs) == 0 || dirs[len(dirs)-1] != dir {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil || len(dirs) < 4 {
		t.Fatalf("shipped manifest directories %v: %v", dirs, err)
	}
	// The embedded files are the files on disk.
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join("..", "..", "..", "runbooks", d)); err != nil {
			t.Errorf("%s is embedded but not on disk: %v", d, err)
		}
	}
	return dirs
}

// TestApplyParams checks what is refused before any server is asked.
func TestApplyParams(t *testing.T) {
	spec := Apply{}.Spec()
	files := fstest.MapFS{
		"m/secret.yaml": {Data: []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n")},
		"m/ns.yaml":     {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  labels:\n    a: b\n")},
		"m/bad.yaml":    {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: [\n")},
		"empty/x.txt":   {Data: []byte("x")},
	}
	for _, tc := range []struct {
		params map[string]any
		want   string // in the Validate or load error
	}{
		{map[string]any{}, "exactly one of path or manifests"},
		{map[string]any{"path": "m", "manifests": "x"}, "exactly one of path or manifests"},
		{map[string]any{"path": "../etc"}, "inside the runbook's directory"},
		{map[string]any{"path": "/etc/passwd"}, "inside the runbook's directory"},
		{map[string]any{"manifests": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"}, "refuses Secrets"},
		{map[string]any{"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: other\n", "namespace": "mine"}, `in namespace "other", not the step's namespace "mine"`},
		{map[string]any{"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"}, "names no namespace"},
		{map[string]any{"manifests": "kind: ConfigMap\nmetadata:\n  name: c\n"}, "want apiVersion and kind"},
		{map[string]any{"manifests": []any{"not an object"}}, "manifests[0]: want an object"},
		{map[string]any{"manifests": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  namespace: x\n"}, "cluster-scoped but names namespace"},
		{map[string]any{"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n", "namespace": "n"}, "is also in manifests (document 1)"},
		{map[string]any{"path": "m/secret.yaml"}, "m/secret.yaml: Secret s: k8s.apply refuses Secrets"},
		{map[string]any{"path": "m/ns.yaml"}, "a Namespace without a name is the step's namespace"},
		{map[string]any{"path": "m/bad.yaml"}, "m/bad.yaml"},
		{map[string]any{"path": "empty"}, "no .yaml, .yml or .json files"},
		{map[string]any{"path": "missing"}, "path missing (relative to the runbook's directory)"},
	} {
		p := spec.MustBind(tc.params)
		err := spec.Validate(p)
		if err == nil {
			_, err = Apply{}.PermissionsIn(&action.Env{Files: files}, p)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: got %v, want one line with %q", tc.params, err, tc.want)
		}
	}

	// A nameless Namespace is the step's namespace; its permissions are
	// cluster-scoped, a ConfigMap's are in its namespace.
	perms, err := Apply{}.PermissionsIn(&action.Env{Files: files}, spec.MustBind(map[string]any{"path": "m/ns.yaml", "namespace": "prod"}))
	if err != nil || len(perms) != 2 || !containsPerm(perms, "get", "", "namespaces", "") || !containsPerm(perms, "patch", "", "namespaces", "") {
		t.Errorf("permissions to label the step's namespace %v %v: want get and patch only", perms, err)
	}
	perms, err = Apply{}.PermissionsIn(&action.Env{}, spec.MustBind(map[string]any{"manifests": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: new-ns\n"}))
	if err != nil || len(perms) != 3 || !containsPerm(perms, "create", "", "namespaces", "") || containsPerm(perms, "delete", "", "namespaces", "") {
		t.Errorf("permissions to apply a named Namespace %v %v: want get, patch, create (undo never deletes a Namespace)", perms, err)
	}
	p := spec.MustBind(map[string]any{"manifests": []any{map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "c"}}}, "namespace": "prod"})
	perms, err = Apply{}.PermissionsIn(&action.Env{}, p)
	if err != nil || len(perms) != 4 || !containsPerm(perms, "get", "", "configmaps", "prod") {
		t.Errorf("configmap permissions %v %v", perms, err)
	}
}

func containsPerm(perms []kube.Permission, verb, group, resource, ns string) bool {
	for _, p := range perms {
		if p.Verb == verb && p.Group == group && p.Resource == resource && p.Namespace == ns {
			return true
		}
	}
	return false
}

// The alert rules ConfigMap holds a Prometheus rules file: strict YAML of
// groups of rules, each alert with an expression, a severity and a
// summary, durations Prometheus parses. (No Prometheus runs here to load
// it; its expressions' syntax is not checked beyond balanced brackets.)
func TestShippedAlertRulesAreARulesFile(t *testing.T) {
	data, err := fs.ReadFile(irctl.RunbookDir(), "manifests/k8s-cluster-compromise/monitoring/enhanced-security-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Namespace != "monitoring" || len(cm.Data) != 1 {
		t.Fatalf("want one rules file in a ConfigMap of namespace monitoring: %+v", cm.ObjectMeta)
	}
	type rule struct {
		Alert       string            `json:"alert"`
		Expr        string            `json:"expr"`
		For         string            `json:"for,omitempty"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	var file struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	for name, text := range cm.Data {
		if err := yaml.UnmarshalStrict([]byte(text), &file); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("group %s: rule %+v lacks alert, expr, severity or summary", g.Name, r)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %v", r.Alert, err)
				}
			}
			for _, pair := range []string{"()", "{}", "[]"} {
				if strings.Count(r.Expr, pair[:1]) != strings.Count(r.Expr, pair[1:]) {
					t.Errorf("%s: unbalanced %s in %q", r.Alert, pair, r.Expr)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("%d alert rules", n)
	}
}
