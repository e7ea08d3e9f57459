package sandbox

// The demo platform's workloads, created as its team runs them: the
// controllers make their ReplicaSets and pods, the scheduler places the
// pods and kwok runs them.

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// noGracePeriod is the seeded pods' terminationGracePeriodSeconds: no
// container has anything to shut down, so deleted pods go at once.
var noGracePeriod = ptr.To[int64](0)

func orchestratorPodSpec() corev1.PodSpec {
	secretEnv := func(env, secret, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
		}}}
	}
	return corev1.PodSpec{
		ServiceAccountName:            "orchestrator",
		TerminationGracePeriodSeconds: noGracePeriod,
		// One replica per node where it can be, as a team would spread an
		// API it needs up; a preference, so that a drained node's
		// replica still finds a place.
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orchestrator"}},
					TopologyKey:   corev1.LabelHostname,
				},
			}},
		}},
		Containers: []corev1.Container{{
			Name:  "orchestrator",
			Image: OrchestratorImage,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "DATABASE_HOST", Value: "postgres." + DemoNamespace + ".svc"},
				{Name: "DATABASE_USER", Value: dbRole},
				secretEnv("DATABASE_PASSWORD", "orchestrator-db", "password"),
				secretEnv("JWT_SECRET", "orchestrator-jwt-secret", "secret"),
				secretEnv("LLM_API_KEY", LLMKeysSecret, "api-key"),
			},
		}},
	}
}

// seedOrchestrator creates the orchestrator's Deployment (3 replicas, its
// secrets in env vars), Service and ingress NetworkPolicy.
func seedOrchestrator(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "orchestrator"}
	_, err := cs.AppsV1().Deployments(DemoNamespace).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orchestrator", Labels: labels},
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
// StatefulSet whose pod postgres-0 mounts the claim postgres-pvc, bound to
// a CSI volume that the VolumeSnapshotClass's driver could snapshot. No
// volume binder or provisioner runs, so the seed binds the claim itself.
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
		ObjectMeta: metav1.ObjectMeta{Name: pvcName, Labels: map[string]string{"app": "postgres"},
			// What the binder writes: the scheduler takes a claim without
			// it for one still being bound.
			Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
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
		TerminationGracePeriodSeconds: noGracePeriod,
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
	_, err = cs.AppsV1().StatefulSets(DemoNamespace).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres", Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: "postgres",
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template:    corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, createOpts)
	return err
}

// seedForensics creates the responders' forensics pod, a bare pod.
func seedForensics(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Pods(DemoNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "forensics", Labels: map[string]string{"app": "forensics"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "forensics",
			TerminationGracePeriodSeconds: noGracePeriod,
			Containers: []corev1.Container{{
				Name:    "toolkit",
				Image:   "ghcr.io/llm-orchestrator/forensics-toolkit:v1.4.0",
				Command: []string{"sleep", "infinity"},
			}},
		},
	}, createOpts)
	return err
}

// seedNodeExporter creates the monitoring DaemonSet: one pod per Linux
// node (the upstream manifests' selector; it also keeps the DaemonSet off
// the bare Nodes tests create).
func seedNodeExporter(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "node-exporter"}
	spec := corev1.PodSpec{
		NodeSelector:                  map[string]string{corev1.LabelOSStable: "linux"},
		TerminationGracePeriodSeconds: noGracePeriod,
		Containers: []corev1.Container{{
			Name:  "node-exporter",
			Image: "quay.io/prometheus/node-exporter:v1.8.2",
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}},
		}},
	}
	_, err := cs.AppsV1().DaemonSets(MonitoringNamespace).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-exporter", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}, createOpts)
	return err
}
