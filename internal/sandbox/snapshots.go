package sandbox

// This file stands in for the CSI snapshot controller and the snapshotter
// sidecar of the sandbox's CSI driver (CSIDriver), because the sandbox runs
// neither: without them a VolumeSnapshot would never become readyToUse and
// irctl's k8s.snapshot would wait out its timeout. The VolumeSnapshot API
// itself is the real one (external-snapshotter v8's CRDs served by the real
// kube-apiserver); this loop only does, through that API, what the two
// controllers would: create the bound VolumeSnapshotContent and report the
// snapshot ready, or report in status.error what keeps it from being taken,
// with the real controller's messages.
//
// Left out: pre-provisioned snapshots (spec.source.volumeSnapshotContentName),
// finalizers, and deleting contents when their VolumeSnapshot is deleted
// (deletion does not cascade in the sandbox, as elsewhere). Snapshots whose
// class names another driver are left alone, as no sidecar for that driver
// runs here.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// snapshotPoll is how often the snapshot controller looks at every
// VolumeSnapshot.
const snapshotPoll = 250 * time.Millisecond

// defaultClassAnnotation marks a VolumeSnapshotClass as its driver's default.
const defaultClassAnnotation = "snapshot.storage.kubernetes.io/is-default-class"

type snapshotController struct {
	sc     snapclient.Interface
	cs     kubernetes.Interface
	cancel context.CancelFunc
	done   chan struct{}
}

// startSnapshotController runs the controller until stop.
func startSnapshotController(cfg *rest.Config) (*snapshotController, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "irctl-sandbox-snapshot-controller"
	sc, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &snapshotController{sc: sc, cs: cs, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(snapshotPoll)
		defer tick.Stop()
		for {
			c.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c, nil
}

// stop ends the loop and waits for it.
func (c *snapshotController) stop() {
	c.cancel()
	<-c.done
}

// sync takes every VolumeSnapshot that is not ready yet one step further;
// failures are retried on the next poll, as the real controller retries.
func (c *snapshotController) sync(ctx context.Context) {
	list, err := c.sc.SnapshotV1().VolumeSnapshots(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range list.Items {
		vs := &list.Items[i]
		if ctx.Err() != nil {
			return
		}
		if vs.DeletionTimestamp != nil || vs.Spec.Source.PersistentVolumeClaimName == nil ||
			(vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false)) {
			continue
		}
		_ = c.syncSnapshot(ctx, vs)
	}
}

// syncSnapshot creates the content of a dynamically provisioned snapshot
// and reports it ready, or reports why it cannot.
func (c *snapshotController) syncSnapshot(ctx context.Context, vs *snapv1.VolumeSnapshot) error {
	pvcName := *vs.Spec.Source.PersistentVolumeClaimName
	var class *snapv1.VolumeSnapshotClass
	var classErr error
	if vs.Spec.VolumeSnapshotClassName == nil {
		var err error
		if class, err = c.defaultClass(ctx, vs); err != nil {
			return err
		}
		if class == nil {
			return c.fail(ctx, vs, "Failed to set default snapshot class with error cannot find default snapshot class")
		}
	} else {
		class, classErr = c.sc.SnapshotV1().VolumeSnapshotClasses().Get(ctx, *vs.Spec.VolumeSnapshotClassName, metav1.GetOptions{})
		if classErr != nil && !apierrors.IsNotFound(classErr) {
			return classErr
		}
		if classErr == nil && class.Driver != CSIDriver {
			return nil // another driver's snapshot: no sidecar here for it
		}
	}

	// The real controller first protects the claim, so a missing claim is
	// reported before a missing class.
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(vs.Namespace).Get(ctx, pvcName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.fail(ctx, vs, contentFailed+fmt.Sprintf("snapshot controller failed to update %s on API server: cannot get claim from snapshot", vs.Name))
	}
	if err != nil {
		return err
	}
	inputErr := func(cause string) error {
		return c.fail(ctx, vs, contentFailed+fmt.Sprintf("failed to get input parameters to create snapshot %s: %q", vs.Name, cause))
	}
	if classErr != nil {
		// The real controller reads classes from its lister, whose
		// NotFound names the resource in the singular.
		return inputErr(apierrors.NewNotFound(snapv1.Resource("volumesnapshotclass"), *vs.Spec.VolumeSnapshotClassName).Error())
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		return inputErr(fmt.Sprintf("the PVC %s is not yet bound to a PV, will not attempt to take a snapshot", pvc.Name))
	}
	// A claim reported Bound by hand, without a volume (as tests make
	// them), gets a volume handle of its own; a real volume must be a CSI
	// volume of the class's driver.
	handle := "pvc-" + string(pvc.UID)
	if pvc.Spec.VolumeName != "" {
		pv, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return inputErr(fmt.Sprintf("failed to retrieve PV %s from the API server: %q", pvc.Spec.VolumeName, err.Error()))
		}
		if pv.Spec.CSI == nil {
			return c.fail(ctx, vs, contentFailed+fmt.Sprintf("cannot find CSI PersistentVolumeSource for volume %s", pv.Name))
		}
		if pv.Spec.CSI.Driver != class.Driver {
			return nil // the class's driver cannot snapshot it: never ready
		}
		handle = pv.Spec.CSI.VolumeHandle
	}

	content, err := c.ensureContent(ctx, vs, class, handle, restoreSize(pvc))
	if err != nil {
		return err
	}
	// Re-read, so that a status the poll's list did not see is kept.
	vs, err = c.sc.SnapshotV1().VolumeSnapshots(vs.Namespace).Get(ctx, vs.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	created := metav1.NewTime(time.Unix(0, *content.Status.CreationTime))
	vs.Status = &snapv1.VolumeSnapshotStatus{
		BoundVolumeSnapshotContentName: &content.Name,
		CreationTime:                   &created,
		ReadyToUse:                     ptr.To(true),
		RestoreSize:                    resource.NewQuantity(*content.Status.RestoreSize, resource.BinarySI),
	}
	_, err = c.sc.SnapshotV1().VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, updateOpts)
	return err
}

// ensureContent creates the VolumeSnapshotContent the real controller
// would (named snapcontent-<snapshot UID>, the class's driver and deletion
// policy) and reports it ready, as the driver's sidecar would once the
// driver has cut the snapshot.
func (c *snapshotController) ensureContent(ctx context.Context, vs *snapv1.VolumeSnapshot, class *snapv1.VolumeSnapshotClass, handle string, size int64) (*snapv1.VolumeSnapshotContent, error) {
	api := c.sc.SnapshotV1().VolumeSnapshotContents()
	name := "snapcontent-" + string(vs.UID)
	content, err := api.Create(ctx, &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: snapv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{
				Kind: "VolumeSnapshot", APIVersion: snapv1.SchemeGroupVersion.String(),
				Namespace: vs.Namespace, Name: vs.Name, UID: vs.UID, ResourceVersion: vs.ResourceVersion,
			},
			Source:                  snapv1.VolumeSnapshotContentSource{VolumeHandle: &handle},
			VolumeSnapshotClassName: &class.Name,
			DeletionPolicy:          class.DeletionPolicy,
			Driver:                  class.Driver,
		},
	}, createOpts)
	if apierrors.IsAlreadyExists(err) {
		content, err = api.Get(ctx, name, metav1.GetOptions{})
		if err == nil && content.Spec.VolumeSnapshotRef.UID != vs.UID {
			return nil, fmt.Errorf("VolumeSnapshotContent [%s] is bound to a different snapshot", name)
		}
	}
	if err != nil {
		return nil, err
	}
	if st := content.Status; st != nil && ptr.Deref(st.ReadyToUse, false) && st.CreationTime != nil && st.RestoreSize != nil {
		return content, nil
	}
	content.Status = &snapv1.VolumeSnapshotContentStatus{
		SnapshotHandle: ptr.To(snapshotHandle(vs.UID)),
		CreationTime:   ptr.To(time.Now().UnixNano()),
		RestoreSize:    &size,
		ReadyToUse:     ptr.To(true),
	}
	return api.UpdateStatus(ctx, content, updateOpts)
}

// defaultClass is the one default class of the claim's driver (the
// sandbox's, for a claim without a CSI volume), which the real controller
// writes into the snapshot's spec; nil if there is none or more than one.
func (c *snapshotController) defaultClass(ctx context.Context, vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotClass, error) {
	driver := CSIDriver
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(vs.Namespace).Get(ctx, *vs.Spec.Source.PersistentVolumeClaimName, metav1.GetOptions{})
	if err == nil && pvc.Spec.VolumeName != "" {
		if pv, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{}); err == nil && pv.Spec.CSI != nil {
			driver = pv.Spec.CSI.Driver
		}
	}
	classes, err := c.sc.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var found []snapv1.VolumeSnapshotClass
	for _, cl := range classes.Items {
		if cl.Annotations[defaultClassAnnotation] == "true" && cl.Driver == driver {
			found = append(found, cl)
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	patch := fmt.Appendf(nil, `{"spec":{"volumeSnapshotClassName":%s}}`, strconv.Quote(found[0].Name))
	if _, err := c.sc.SnapshotV1().VolumeSnapshots(vs.Namespace).Patch(ctx, vs.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return nil, err
	}
	return &found[0], nil
}

// contentFailed begins the real controller's message when it could not
// create a snapshot's content.
const contentFailed = "Failed to create snapshot content with error "

// fail reports why the snapshot cannot be taken, as the real controller
// does: status.error, readyToUse false. An unchanged error is not written
// again.
func (c *snapshotController) fail(ctx context.Context, vs *snapv1.VolumeSnapshot, msg string) error {
	if vs.Status != nil && vs.Status.Error != nil && ptr.Deref(vs.Status.Error.Message, "") == msg {
		return nil
	}
	vs = vs.DeepCopy()
	if vs.Status == nil {
		vs.Status = &snapv1.VolumeSnapshotStatus{}
	}
	vs.Status.Error = &snapv1.VolumeSnapshotError{Time: ptr.To(metav1.Now()), Message: &msg}
	vs.Status.ReadyToUse = ptr.To(false)
	_, err := c.sc.SnapshotV1().VolumeSnapshots(vs.Namespace).UpdateStatus(ctx, vs, updateOpts)
	return err
}

// restoreSize is the size of a volume restored from the snapshot: the
// claim's capacity, else its request.
func restoreSize(pvc *corev1.PersistentVolumeClaim) int64 {
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		return q.Value()
	}
	q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	return q.Value()
}

// snapshotHandle is the driver's id of the snapshot, in the form the
// hostpath driver uses (a UUID), derived from the snapshot's UID.
func snapshotHandle(uid types.UID) string { return string(uid) }
