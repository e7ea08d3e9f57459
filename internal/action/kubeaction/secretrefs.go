package kubeaction

// Which workloads read a Secret: a rotation nothing reads invalidates
// nothing, and one read through environment variables takes effect only
// when the pods restart.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/kube"
)

// SecretConsumer is a workload whose pod template reads a Secret.
type SecretConsumer struct {
	Workload string // deployment/orchestrator
	// How lists the ways: "env JWT_SECRET", "envFrom", "volume jwt".
	How []string
	// Env is true when a way is an environment variable, read only when
	// the container starts.
	Env bool
}

// SecretConsumers lists the Deployments, StatefulSets, DaemonSets and
// CronJobs of ns whose pod templates read key of Secret name: an env var's
// secretKeyRef to the key, envFrom, or a volume (secret or projected)
// holding the whole Secret or that key.
func SecretConsumers(ctx context.Context, c *kube.Clients, ns, name, key string) ([]SecretConsumer, error) {
	type tmpl struct {
		kind, name string
		spec       *corev1.PodSpec
	}
	var all []tmpl
	apps, batch := c.Core.AppsV1(), c.Core.BatchV1()
	deps, err := apps.Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Deployments in %s: %s", ns, kube.Short(err))
	}
	for i := range deps.Items {
		all = append(all, tmpl{"deployment", deps.Items[i].Name, &deps.Items[i].Spec.Template.Spec})
	}
	sts, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list StatefulSets in %s: %s", ns, kube.Short(err))
	}
	for i := range sts.Items {
		all = append(all, tmpl{"statefulset", sts.Items[i].Name, &sts.Items[i].Spec.Template.Spec})
	}
	dss, err := apps.DaemonSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list DaemonSets in %s: %s", ns, kube.Short(err))
	}
	for i := range dss.Items {
		all = append(all, tmpl{"daemonset", dss.Items[i].Name, &dss.Items[i].Spec.Template.Spec})
	}
	cjs, err := batch.CronJobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list CronJobs in %s: %s", ns, kube.Short(err))
	}
	for i := range cjs.Items {
		all = append(all, tmpl{"cronjob", cjs.Items[i].Name, &cjs.Items[i].Spec.JobTemplate.Spec.Template.Spec})
	}
	var out []SecretConsumer
	for _, t := range all {
		if sc := readsSecret(t.spec, name, key); len(sc.How) > 0 {
			sc.Workload = t.kind + "/" + t.name
			out = append(out, sc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out, nil
}

// readsSecret says how a pod spec reads key of Secret name.
func readsSecret(spec *corev1.PodSpec, name, key string) SecretConsumer {
	var sc SecretConsumer
	seen := map[string]bool{}
	add := func(how string, env bool) {
		if !seen[how] {
			seen[how] = true
			sc.How = append(sc.How, how)
		}
		sc.Env = sc.Env || env
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, ctr := range list {
			for _, e := range ctr.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name == name && r.SecretKeyRef.Key == key {
					add("env "+e.Name, true)
				}
			}
			for _, ef := range ctr.EnvFrom {
				if ef.SecretRef != nil && ef.SecretRef.Name == name {
					add("envFrom", true)
				}
			}
		}
	}
	holds := func(items []corev1.KeyToPath) bool {
		if len(items) == 0 {
			return true
		}
		for _, it := range items {
			if it.Key == key {
				return true
			}
		}
		return false
	}
	for _, v := range spec.Volumes {
		if s := v.Secret; s != nil && s.SecretName == name && holds(s.Items) {
			add("volume "+v.Name, false)
		}
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if s := src.Secret; s != nil && s.Name == name && holds(s.Items) {
					add("volume "+v.Name, false)
				}
			}
		}
	}
	return sc
}

// consumerWarnings is what the plan says about who reads the Secret.
func consumerWarnings(where string, consumers []SecretConsumer) []string {
	if len(consumers) == 0 {
		return []string{fmt.Sprintf("no Deployment, StatefulSet, DaemonSet or CronJob in the namespace reads Secret %s (env, envFrom or volume): "+
			"the new value invalidates nothing unless something outside those reads it - check that this is the Secret the service uses", where)}
	}
	var env, vol []string
	for _, c := range consumers {
		item := c.Workload + " (" + strings.Join(c.How, ", ") + ")"
		if c.Env {
			env = append(env, item)
		} else {
			vol = append(vol, item)
		}
	}
	var w []string
	if len(env) > 0 {
		w = append(w, "read as environment variables by "+strings.Join(env, ", ")+
			": their pods keep the old value until they restart (k8s.rollout-restart)")
	}
	if len(vol) > 0 {
		w = append(w, "mounted by "+strings.Join(vol, ", ")+
			": the kubelet updates the files within about a minute; the program must read them again")
	}
	return w
}
