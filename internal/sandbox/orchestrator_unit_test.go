package sandbox

import (
	"errors"
	"net/http/httptest"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestRolloutComplete(t *testing.T) {
	dep := func(gen, observed int64, replicas, total, updated, available int32) *appsv1.Deployment {
		d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas)}}
		d.Generation = gen
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: total, UpdatedReplicas: updated, AvailableReplicas: available}
		return d
	}
	for name, tc := range map[string]struct {
		d    *appsv1.Deployment
		want bool
	}{
		"complete":                    {dep(2, 2, 3, 3, 3, 3), true},
		"generation not yet observed": {dep(3, 2, 3, 3, 3, 3), false},
		"new pods not all created":    {dep(2, 2, 3, 3, 2, 3), false},
		"old pods still running":      {dep(2, 2, 3, 4, 3, 3), false},
		"new pods not yet available":  {dep(2, 2, 3, 3, 3, 2), false},
		"scaled to zero":              {dep(4, 4, 0, 0, 0, 0), true},
	} {
		if got := rolloutComplete(tc.d); got != tc.want {
			t.Errorf("%s: rolloutComplete = %v, want %v", name, got, tc.want)
		}
	}
}

func TestContainerEnv(t *testing.T) {
	secrets := map[string]*corev1.Secret{
		"jwt": {Data: map[string][]byte{"secret": []byte("k1")}},
		"all": {Data: map[string][]byte{"JWT_SECRET": []byte("from-envfrom"), "OTHER": []byte("o")}},
	}
	get := func(name string) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		return nil, errors.New("not found")
	}
	ref := func(secret, key string, optional bool) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key, Optional: ptr.To(optional)}}
	}
	c := corev1.Container{
		EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "all"}}, Prefix: "X_"}},
		Env: []corev1.EnvVar{
			{Name: "PLAIN", Value: "v"},
			{Name: "JWT_SECRET", ValueFrom: ref("jwt", "secret", false)},
			{Name: "MAYBE", ValueFrom: ref("missing", "k", true)},
		},
	}
	env, err := containerEnv(c, get)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PLAIN": "v", "JWT_SECRET": "k1", "X_JWT_SECRET": "from-envfrom", "X_OTHER": "o"}
	if len(env) != len(want) {
		t.Errorf("env = %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, env[k], v)
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "DB", ValueFrom: ref("jwt", "password", false)})
	if _, err := containerEnv(c, get); err == nil {
		t.Error("a missing key of a required secretKeyRef resolved without error")
	}
}

func TestCallerAddr(t *testing.T) {
	for _, tc := range []struct{ xff, remote, want string }{
		{"203.0.113.77", "127.0.0.1:5000", "203.0.113.77"},
		{"2001:db8:bad:1::21, 10.0.0.1", "127.0.0.1:5000", "2001:db8:bad:1::21"},
		{"not-an-address", "127.0.0.1:5000", "127.0.0.1"},
		{"", "[::1]:5000", "::1"},
	} {
		r := httptest.NewRequest("GET", "/v1/me", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := callerAddr(r).String(); got != tc.want {
			t.Errorf("X-Forwarded-For %q from %s: caller %s, want %s", tc.xff, tc.remote, got, tc.want)
		}
	}
}
