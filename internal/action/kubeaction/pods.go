package kubeaction

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// podParams are the params podsOf reads: which pods a step acts on.
func podParams() []runbook.ParamDef {
	return []runbook.ParamDef{
		{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the pods"},
		{Name: "names", Type: runbook.Strings, Description: "pod names (this or selector)"},
		{Name: "selector", Type: runbook.String, Description: "label selector, e.g. app=orchestrator (this or names)"},
	}
}

// podsOf resolves the pods a step's namespace, names or selector choose.
func podsOf(ctx context.Context, env *action.Env, p runbook.Params) (*kube.Clients, string, []corev1.Pod, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, "", nil, err
	}
	ns := p.String("namespace")
	pods, err := SelectPods(ctx, c, ns, p.Strings("names"), p.String("selector"))
	return c, ns, pods, err
}

// SelectPods resolves names or a selector to pods; no match is an error,
// because quarantining nothing must never look like success.
func SelectPods(ctx context.Context, c *kube.Clients, ns string, names []string, selector string) ([]corev1.Pod, error) {
	if err := validatePodChoice(names, selector); err != nil {
		return nil, err
	}
	if selector != "" {
		list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("selector %q matches no pods in namespace %s", selector, ns)
		}
		return list.Items, nil
	}
	pods := make([]corev1.Pod, 0, len(names))
	for _, n := range names {
		p, err := c.Core.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("pod %s not found in namespace %s", n, ns)
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %s", ns, n, kube.Short(err))
		}
		pods = append(pods, *p)
	}
	return pods, nil
}
