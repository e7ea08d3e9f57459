package kubeaction

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Which ways of reading a Secret count, and which need a restart.
func TestReadsSecret(t *testing.T) {
	ref := func(name, key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
	}
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "jwt"}}}}}},
		Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
			{Name: "JWT_SECRET", ValueFrom: ref("jwt", "secret")},
			{Name: "OTHER_KEY", ValueFrom: ref("jwt", "other")},
			{Name: "OTHER_SECRET", ValueFrom: ref("db", "secret")},
		}}},
		Volumes: []corev1.Volume{
			{Name: "whole", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "jwt"}}},
			{Name: "some-other-key", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "jwt", Items: []corev1.KeyToPath{{Key: "other", Path: "o"}}}}},
			{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "jwt"}, Items: []corev1.KeyToPath{{Key: "secret", Path: "s"}}}}}}}},
		},
	}
	got := readsSecret(spec, "jwt", "secret")
	want := []string{"envFrom", "env JWT_SECRET", "volume whole", "volume projected"}
	if !slices.Equal(got.How, want) || !got.Env {
		t.Errorf("readsSecret = %+v, want %v with Env", got, want)
	}
	vol := readsSecret(&corev1.PodSpec{Volumes: spec.Volumes}, "jwt", "secret")
	if vol.Env || len(vol.How) != 2 {
		t.Errorf("volumes only: %+v", vol)
	}
	if none := readsSecret(spec, "unused", "secret"); len(none.How) != 0 {
		t.Errorf("a Secret nothing reads: %+v", none)
	}
	if w := consumerWarnings("ns/unused", nil); len(w) != 1 || !contains(w, "no Deployment, StatefulSet, DaemonSet or CronJob") {
		t.Errorf("warnings for no reader: %q", w)
	}
}
