package kubeaction

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Snapshot takes a CSI VolumeSnapshot of PersistentVolumeClaims and waits
// until the snapshot controller reports it readyToUse.
//
// A VolumeSnapshotClass with deletionPolicy Delete (the common default)
// deletes the storage snapshot when the VolumeSnapshot object is deleted,
// so evidence would vanish with a careless `kubectl delete`. irctl never
// deletes snapshots (undo leaves them), and with retain (the default) it
// switches the bound VolumeSnapshotContent to deletionPolicy Retain once
// the snapshot is ready, so the snapshot outlives its VolumeSnapshot.
type Snapshot struct{}

// DefaultSnapshotClass is the class used when the step names none.
const DefaultSnapshotClass = "csi-snapclass"

// Labels irctl puts on what it creates.
const (
	LabelIncident = "irctl.dev/incident"
	AnnoIncident  = "irctl.dev/incident-id"
)

func (Snapshot) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "k8s.snapshot",
		Description: "Take a VolumeSnapshot of PersistentVolumeClaims and wait until it is readyToUse; its bound content is switched to deletionPolicy Retain " +
			"so deleting the VolumeSnapshot object cannot destroy the evidence. The objects are saved as evidence; undo never deletes snapshots.",
		Uses: []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the claims"},
			{Name: "pvcs", Type: runbook.Strings, Required: true, Description: "PersistentVolumeClaim names, e.g. [postgres-pvc]"},
			{Name: "class", Type: runbook.String, Default: DefaultSnapshotClass, Description: "VolumeSnapshotClass"},
			{Name: "timeout", Type: runbook.Duration, Default: 5 * time.Minute, Description: "how long to wait for readyToUse"},
			{Name: "retain", Type: runbook.Bool, Default: true, Description: "switch the bound VolumeSnapshotContent to deletionPolicy Retain"},
		},
		Validate: func(p runbook.Params) error {
			if len(p.Strings("pvcs")) == 0 {
				return errors.New("pvcs: give at least one claim")
			}
			if p.String("class") == "" {
				return errors.New("class is empty: name a VolumeSnapshotClass")
			}
			if p.Duration("timeout") <= 0 {
				return errors.New("timeout must be more than 0")
			}
			return nil
		},
	}
}

func (Snapshot) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	perms := []kube.Permission{
		{Verb: "get", Resource: "persistentvolumeclaims", Namespace: ns},
		{Verb: "get", Group: snapv1.GroupName, Resource: "volumesnapshotclasses"},
		{Verb: "get", Group: snapv1.GroupName, Resource: "volumesnapshots", Namespace: ns},
		{Verb: "create", Group: snapv1.GroupName, Resource: "volumesnapshots", Namespace: ns},
	}
	if retainContent(p) {
		perms = append(perms,
			kube.Permission{Verb: "get", Group: snapv1.GroupName, Resource: "volumesnapshotcontents"},
			kube.Permission{Verb: "patch", Group: snapv1.GroupName, Resource: "volumesnapshotcontents"})
	}
	return perms
}

func retainContent(p runbook.Params) bool { return p.Bool("retain") }

func snapshotClass(p runbook.Params) string { return p.String("class") }

// snapTarget is one claim to snapshot.
type snapTarget struct {
	PVC      *corev1.PersistentVolumeClaim
	Name     string // the VolumeSnapshot's name
	Existing bool   // this incident's snapshot already exists: only wait
}

// snapshotAPI checks that the VolumeSnapshot API is served, so a cluster
// without the CRDs gets a clear error instead of a 404.
func snapshotAPI(c *kube.Clients) error {
	return requireAPI(c, snapv1.SchemeGroupVersion.String(), "volumesnapshots",
		"install the external-snapshotter CRDs and snapshot controller, or take the volume snapshot with the storage provider's tools")
}

// requireAPI checks with discovery that the API server serves resource in
// groupVersion; what to do about it completes the error.
func requireAPI(c *kube.Clients, groupVersion, resource, todo string) error {
	list, err := c.Core.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) || (err == nil && !hasResource(list, resource)) {
		return fmt.Errorf("the %s API (%s) is not installed in this cluster: %s", resource, groupVersion, todo)
	}
	if err != nil {
		return fmt.Errorf("discovering %s: %s", groupVersion, kube.Short(err))
	}
	return nil
}

func hasResource(l *metav1.APIResourceList, name string) bool {
	for _, r := range l.APIResources {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (s Snapshot) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	if err := snapshotAPI(c); err != nil {
		return nil, err
	}
	sc, err := snapclient.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	className := snapshotClass(p)
	class, err := sc.SnapshotV1().VolumeSnapshotClasses().Get(ctx, className, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("VolumeSnapshotClass %q not found (kubectl get volumesnapshotclass lists those there are; set class)", className)
	}
	if err != nil {
		return nil, fmt.Errorf("get VolumeSnapshotClass %s: %s", className, kube.Short(err))
	}
	ns := p.String("namespace")
	suffix := IncidentSuffix(env.Incident)
	var warnings []string
	if class.DeletionPolicy == snapv1.VolumeSnapshotContentDelete {
		w := fmt.Sprintf("class %s has deletionPolicy Delete: deleting a VolumeSnapshot would delete the snapshot itself", className)
		if retainContent(p) {
			w += "; irctl switches each bound VolumeSnapshotContent to Retain once the snapshot is ready"
		} else {
			w += " (retain is false: nothing protects it)"
		}
		warnings = append(warnings, w)
	}
	var targets []snapTarget
	var names []string
	create := 0
	for _, claim := range p.Strings("pvcs") {
		pvc, err := c.Core.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("PersistentVolumeClaim %s not found in namespace %s", claim, ns)
		}
		if err != nil {
			return nil, fmt.Errorf("get PersistentVolumeClaim %s/%s: %s", ns, claim, kube.Short(err))
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			return nil, fmt.Errorf("PersistentVolumeClaim %s/%s is %s, not Bound: there is no volume to snapshot", ns, claim, pvc.Status.Phase)
		}
		if w := driverMismatch(ctx, c, pvc, class); w != "" {
			warnings = append(warnings, w)
		}
		t := snapTarget{PVC: pvc, Name: snapshotName(claim, suffix)}
		existing, err := sc.SnapshotV1().VolumeSnapshots(ns).Get(ctx, t.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			src := existing.Spec.Source.PersistentVolumeClaimName
			if existing.Labels[LabelIncident] != suffix || src == nil || *src != claim {
				return nil, fmt.Errorf("a VolumeSnapshot %s/%s exists that is not this incident's snapshot of %s; refusing to touch it", ns, t.Name, claim)
			}
			t.Existing = true
			names = append(names, fmt.Sprintf("%s/%s (exists; wait for it)", ns, t.Name))
		case apierrors.IsNotFound(err):
			create++
			names = append(names, fmt.Sprintf("%s/%s of claim %s", ns, t.Name, claim))
		default:
			return nil, fmt.Errorf("get VolumeSnapshot %s/%s: %s", ns, t.Name, kube.Short(err))
		}
		targets = append(targets, t)
	}
	return &action.Plan{
		Summary: fmt.Sprintf("snapshot %d claim(s) in %s with class %s (%d to create), wait up to %s for readyToUse, save the objects as evidence",
			len(targets), ns, className, create, durationText(snapshotTimeout(p))),
		Targets:  names,
		Count:    create,
		Warnings: warnings,
		State:    targets,
	}, nil
}

func snapshotTimeout(p runbook.Params) time.Duration { return p.Duration("timeout") }

// snapshotName is <claim>-<incident suffix>, cut to a valid name.
func snapshotName(claim, suffix string) string {
	name := claim + "-" + suffix
	if len(name) > 253 {
		name = strings.TrimRight(claim[:253-len(suffix)-1], "-.") + "-" + suffix
	}
	return name
}

// driverMismatch warns when the claim's volume is not a CSI volume of the
// class's driver, which the snapshot controller would reject.
func driverMismatch(ctx context.Context, c *kube.Clients, pvc *corev1.PersistentVolumeClaim, class *snapv1.VolumeSnapshotClass) string {
	if pvc.Spec.VolumeName == "" {
		return ""
	}
	pv, err := c.Core.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "" // reading PVs is not required to snapshot; say nothing
	}
	if pv.Spec.CSI == nil {
		return fmt.Sprintf("claim %s is bound to %s, which is not a CSI volume: a VolumeSnapshot of it will not become ready", pvc.Name, pv.Name)
	}
	if pv.Spec.CSI.Driver != class.Driver {
		return fmt.Sprintf("claim %s's volume is driven by %s but class %s is for %s: the snapshot will not become ready", pvc.Name, pv.Spec.CSI.Driver, class.Name, class.Driver)
	}
	return ""
}

func (s Snapshot) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	sc, err := snapclient.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	targets := plan.State.([]snapTarget)
	ns := p.String("namespace")
	className := snapshotClass(p)
	dry := env.DryRun == action.DryRunServer
	var store *evidence.Store
	if !dry {
		if store, err = env.Evidence(); err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
	}
	var mu sync.Mutex
	var failed []action.Failure
	var done []string
	created := 0
	env.Progress.Start(int64(len(targets)), "snapshots ready")
	action.ForEach(ctx, Workers, len(targets), func(i int) {
		t := targets[i]
		what, made, err := s.one(ctx, env, c, sc, store, p, t, className, dry)
		env.Progress.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if made {
			created++
		}
		if err != nil {
			failed = append(failed, action.Failure{Target: ns + "/" + t.Name, Error: err.Error()})
			return
		}
		done = append(done, what)
	})
	sort.Strings(done)
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	res := &action.Result{
		Changed:      created,
		Failed:       failed,
		Irreversible: "VolumeSnapshots are evidence: irctl undo never deletes them",
	}
	if dry {
		res.Summary = fmt.Sprintf("server dry run: the API server accepted %d VolumeSnapshot(s) in %s; nothing was created, so there is nothing to wait for and no evidence", created, ns)
	} else {
		res.Summary = fmt.Sprintf("%d of %d snapshot(s) ready: %s", len(done), len(targets), strings.Join(done, "; "))
	}
	return res, ctx.Err()
}

// one creates (or finds) one snapshot, waits for it, protects its content
// and records it as evidence. made reports whether it created an object.
func (Snapshot) one(ctx context.Context, env *action.Env, c *kube.Clients, sc snapclient.Interface, store *evidence.Store, p runbook.Params, t snapTarget, className string, dry bool) (string, bool, error) {
	ns := t.PVC.Namespace
	api := sc.SnapshotV1().VolumeSnapshots(ns)
	made := false
	if !t.Existing {
		claim, class := t.PVC.Name, className
		vs := &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{
				Name:        t.Name,
				Labels:      map[string]string{LabelIncident: IncidentSuffix(env.Incident)},
				Annotations: map[string]string{AnnoIncident: env.Incident, "irctl.dev/source-pvc-uid": string(t.PVC.UID)},
			},
			Spec: snapv1.VolumeSnapshotSpec{
				Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &claim},
				VolumeSnapshotClassName: &class,
			},
		}
		_, err := api.Create(ctx, vs, metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return "", false, fmt.Errorf("create: %s", kube.Short(err))
		}
		made = err == nil
	}
	if dry {
		return t.Name, made, nil
	}
	start := time.Now()
	var vs *snapv1.VolumeSnapshot
	err := wait.PollUntilContextTimeout(ctx, time.Second, snapshotTimeout(p), true, func(ctx context.Context) (bool, error) {
		got, err := api.Get(ctx, t.Name, metav1.GetOptions{})
		switch {
		case ctx.Err() != nil:
			return false, ctx.Err()
		case apierrors.IsNotFound(err):
			return false, fmt.Errorf("the VolumeSnapshot was deleted while irctl waited for it")
		case err != nil:
			return false, nil // transient: keep waiting until the timeout
		}
		vs = got
		if st := got.Status; st != nil {
			if st.Error != nil && st.Error.Message != nil {
				return false, fmt.Errorf("the snapshot controller reports: %s", *st.Error.Message)
			}
			if st.ReadyToUse != nil && *st.ReadyToUse {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			why := "no snapshot controller has reported on it (is one running?)"
			if vs != nil && vs.Status != nil {
				why = "the snapshot controller has not marked it readyToUse"
			}
			return "", made, fmt.Errorf("not ready after %s: %s; the VolumeSnapshot is left in place", snapshotTimeout(p), why)
		}
		return "", made, err
	}
	objects := []evidence.Object{
		{APIVersion: snapv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshot", Namespace: ns, Name: vs.Name, UID: string(vs.UID), ResourceVersion: vs.ResourceVersion},
		{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: ns, Name: t.PVC.Name, UID: string(t.PVC.UID), ResourceVersion: t.PVC.ResourceVersion},
	}
	docs := []any{vs}
	vs.APIVersion, vs.Kind = snapv1.SchemeGroupVersion.String(), "VolumeSnapshot"
	note := fmt.Sprintf("ready after %s", time.Since(start).Round(time.Second))
	if content := vs.Status.BoundVolumeSnapshotContentName; content != nil && *content != "" {
		vsc, protected, err := protectContent(ctx, sc, *content, retainContent(p))
		if err != nil {
			return "", made, err
		}
		if vsc != nil {
			vsc.APIVersion, vsc.Kind = snapv1.SchemeGroupVersion.String(), "VolumeSnapshotContent"
			docs = append(docs, vsc)
			objects = append(objects, evidence.Object{APIVersion: vsc.APIVersion, Kind: "VolumeSnapshotContent", Name: vsc.Name, UID: string(vsc.UID), ResourceVersion: vsc.ResourceVersion})
		}
		if protected {
			note += "; content switched to deletionPolicy Retain"
		}
	} else {
		note += "; no bound VolumeSnapshotContent reported, so its deletionPolicy could not be checked"
	}
	var body []byte
	for i, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			return "", made, err
		}
		if i > 0 {
			body = append(body, "---\n"...)
		}
		body = append(body, y...)
	}
	e, err := store.WriteFile(fmt.Sprintf("snapshots/%s/%s.yaml", ns, t.Name), evidence.Source{Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: objects, Note: note}, body, evidence.Extra{})
	if err != nil {
		return "", made, err
	}
	return fmt.Sprintf("%s/%s (%s; evidence %s)", ns, t.Name, note, e.Name), made, nil
}

// protectContent switches a VolumeSnapshotContent from deletionPolicy
// Delete to Retain when asked; it returns the content as last read.
func protectContent(ctx context.Context, sc snapclient.Interface, name string, doRetain bool) (*snapv1.VolumeSnapshotContent, bool, error) {
	api := sc.SnapshotV1().VolumeSnapshotContents()
	vsc, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("get VolumeSnapshotContent %s: %s", name, kube.Short(err))
	}
	if !doRetain || vsc.Spec.DeletionPolicy == snapv1.VolumeSnapshotContentRetain {
		return vsc, false, nil
	}
	patch := []byte(`{"spec":{"deletionPolicy":"Retain"}}`)
	vsc, err = api.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager})
	if err != nil {
		return nil, false, fmt.Errorf("set VolumeSnapshotContent %s to Retain: %s", name, kube.Short(err))
	}
	return vsc, true, nil
}
