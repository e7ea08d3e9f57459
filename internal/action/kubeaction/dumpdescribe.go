package kubeaction

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DescribePods renders pods as text in the manner of `kubectl describe
// pods`, each followed by the events about it.
func DescribePods(pods []corev1.Pod, events []corev1.Event) []byte {
	byUID := map[string][]corev1.Event{}
	for _, e := range events {
		byUID[string(e.InvolvedObject.UID)] = append(byUID[string(e.InvolvedObject.UID)], e)
	}
	var b bytes.Buffer
	for i := range pods {
		if i > 0 {
			b.WriteString("\n\n")
		}
		describePod(&b, &pods[i], byUID[string(pods[i].UID)])
	}
	return b.Bytes()
}

func describePod(out io.Writer, p *corev1.Pod, events []corev1.Event) {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	defer w.Flush()
	field := func(indent, k, v string) { fmt.Fprintf(w, "%s%s:\t%s\n", indent, k, v) }
	field("", "Name", p.Name)
	field("", "Namespace", p.Namespace)
	field("", "UID", string(p.UID))
	field("", "Resource Version", p.ResourceVersion)
	field("", "Service Account", orNone(p.Spec.ServiceAccountName))
	field("", "Node", orNone(p.Spec.NodeName)+"/"+orNone(p.Status.HostIP))
	field("", "Created", p.CreationTimestamp.UTC().Format(time.RFC3339))
	if p.Status.StartTime != nil {
		field("", "Start Time", p.Status.StartTime.UTC().Format(time.RFC3339))
	}
	field("", "Labels", mapText(p.Labels))
	field("", "Annotations", mapText(p.Annotations))
	field("", "Status", string(p.Status.Phase))
	field("", "IP", orNone(p.Status.PodIP))
	for _, o := range p.OwnerReferences {
		field("", "Controlled By", o.Kind+"/"+o.Name)
	}
	if sc := p.Spec.SecurityContext; sc != nil && (sc.RunAsUser != nil || sc.RunAsNonRoot != nil) {
		field("", "Security Context", fmt.Sprintf("runAsUser=%s runAsNonRoot=%s", ptrText(sc.RunAsUser), ptrText(sc.RunAsNonRoot)))
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		field("", "Host Namespaces", fmt.Sprintf("network=%v pid=%v ipc=%v", p.Spec.HostNetwork, p.Spec.HostPID, p.Spec.HostIPC))
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		statuses[s.Name] = s
	}
	section := func(title string, cs []corev1.Container) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, c := range cs {
			s := statuses[c.Name]
			fmt.Fprintf(w, "  %s:\n", c.Name)
			field("    ", "Image", c.Image)
			field("    ", "Image ID", orNone(s.ImageID))
			field("    ", "Container ID", orNone(s.ContainerID))
			if len(c.Command) > 0 {
				field("    ", "Command", strings.Join(c.Command, " "))
			}
			if len(c.Args) > 0 {
				field("    ", "Args", strings.Join(c.Args, " "))
			}
			field("    ", "State", stateText(s.State))
			if s.LastTerminationState.Terminated != nil {
				field("    ", "Last State", stateText(s.LastTerminationState))
			}
			field("    ", "Ready", fmt.Sprint(s.Ready))
			field("    ", "Restart Count", fmt.Sprint(s.RestartCount))
			if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
				field("    ", "Privileged", "true")
			}
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil {
					v = valueFromText(e.ValueFrom)
				}
				field("    ", "Env "+e.Name, v)
			}
			for _, m := range c.VolumeMounts {
				field("    ", "Mount "+m.MountPath, fmt.Sprintf("from %s (ro=%v)", m.Name, m.ReadOnly))
			}
		}
	}
	section("Init Containers", p.Spec.InitContainers)
	section("Containers", p.Spec.Containers)
	if len(p.Status.Conditions) > 0 {
		fmt.Fprintln(w, "Conditions:")
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(w, "  %s\t%s\n", c.Type, c.Status)
		}
	}
	if len(p.Spec.Volumes) > 0 {
		fmt.Fprintln(w, "Volumes:")
		for _, v := range p.Spec.Volumes {
			field("  ", v.Name, volumeText(v))
		}
	}
	if len(events) == 0 {
		fmt.Fprintln(w, "Events:\t<none>")
		return
	}
	fmt.Fprintln(w, "Events:")
	fmt.Fprintln(w, "  TIME\tTYPE\tREASON\tFROM\tCOUNT\tMESSAGE")
	for _, e := range events {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%d\t%s\n", eventTime(&e).UTC().Format(time.RFC3339), e.Type, e.Reason, e.Source.Component, e.Count, strings.Join(strings.Fields(e.Message), " "))
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func ptrText[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

func mapText(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strings.Join(strings.Fields(m[k]), " ")
	}
	return strings.Join(parts, ", ")
}

func stateText(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Waiting != nil:
		return "Waiting: " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("Terminated: %s (exit %d) at %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.FinishedAt.UTC().Format(time.RFC3339))
	}
	return "<unknown>"
}

// valueFromText names where an env var comes from, never its value.
func valueFromText(v *corev1.EnvVarSource) string {
	switch {
	case v.SecretKeyRef != nil:
		return fmt.Sprintf("<secret %s key %s>", v.SecretKeyRef.Name, v.SecretKeyRef.Key)
	case v.ConfigMapKeyRef != nil:
		return fmt.Sprintf("<configmap %s key %s>", v.ConfigMapKeyRef.Name, v.ConfigMapKeyRef.Key)
	case v.FieldRef != nil:
		return "<field " + v.FieldRef.FieldPath + ">"
	case v.ResourceFieldRef != nil:
		return "<resource " + v.ResourceFieldRef.Resource + ">"
	}
	return "<from elsewhere>"
}

func volumeText(v corev1.Volume) string {
	switch {
	case v.PersistentVolumeClaim != nil:
		return "PersistentVolumeClaim " + v.PersistentVolumeClaim.ClaimName
	case v.Secret != nil:
		return "Secret " + v.Secret.SecretName
	case v.ConfigMap != nil:
		return "ConfigMap " + v.ConfigMap.Name
	case v.HostPath != nil:
		return "HostPath " + v.HostPath.Path
	case v.EmptyDir != nil:
		return "EmptyDir"
	case v.Projected != nil:
		return "Projected"
	}
	return "other"
}
