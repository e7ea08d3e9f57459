package sandbox

// How the orchestrator stand-in learns the configuration its pods start
// with: their container's environment, as the kubelet resolves it.

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resolve reads JWT_SECRET and DATABASE_PASSWORD as the kubelet would give
// them to a container of dep's pod template.
func (o *orchestratorAPI) resolve(ctx context.Context, dep *appsv1.Deployment) (orchestratorConfig, error) {
	spec := dep.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return orchestratorConfig{}, errors.New("the orchestrator Deployment's pod template has no containers")
	}
	c := spec.Containers[0]
	for _, cc := range spec.Containers {
		if cc.Name == orchestratorContainer {
			c = cc
		}
	}
	secrets := map[string]*corev1.Secret{}
	secret := func(name string) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := o.cs.CoreV1().Secrets(dep.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		secrets[name] = s
		return s, nil
	}
	env, err := containerEnv(c, secret)
	if err != nil {
		return orchestratorConfig{}, err
	}
	cfg := orchestratorConfig{jwtKey: []byte(env[envJWTSecret]), dbPassword: env[envDBPassword]}
	for name, v := range map[string]string{envJWTSecret: string(cfg.jwtKey), envDBPassword: cfg.dbPassword} {
		if v == "" {
			return orchestratorConfig{}, fmt.Errorf("the orchestrator Deployment's container %s sets no %s", c.Name, name)
		}
	}
	return cfg, nil
}

// containerEnv resolves c's environment (envFrom Secrets, then env, later
// entries winning, as the kubelet does); values from ConfigMaps and the
// downward API are left out, as the stand-in needs none.
func containerEnv(c corev1.Container, secret func(string) (*corev1.Secret, error)) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.SecretRef == nil {
			continue
		}
		s, err := secret(from.SecretRef.Name)
		if err != nil {
			if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
				continue
			}
			return nil, fmt.Errorf("envFrom Secret %s: %w", from.SecretRef.Name, err)
		}
		for k, v := range s.Data {
			env[from.Prefix+k] = string(v)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			s, err := secret(ref.Name)
			if err != nil {
				if optional {
					continue
				}
				return nil, fmt.Errorf("env %s: Secret %s: %w", e.Name, ref.Name, err)
			}
			v, ok := s.Data[ref.Key]
			if !ok && !optional {
				return nil, fmt.Errorf("env %s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
			}
			if ok {
				env[e.Name] = string(v)
			}
		}
	}
	return env, nil
}
