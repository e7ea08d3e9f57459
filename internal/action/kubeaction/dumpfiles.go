package kubeaction

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/evidence"
)

// SortByCreation orders objects by creationTimestamp, oldest first, then
// by namespace/name.
func SortByCreation[T any](items []T, meta func(*T) *metav1.ObjectMeta) {
	sort.SliceStable(items, func(i, j int) bool {
		a, b := meta(&items[i]), meta(&items[j])
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return objKey(a) < objKey(b)
	})
}

// yamlList renders items as a kubectl-style v1 List document, setting
// each item's apiVersion and kind (typed lists leave them empty), and
// records each object's identity.
func yamlList[T any](items []T, rv string, meta func(*T) *metav1.ObjectMeta, apiVersion, kind string) (*dumpFile, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: %q\n", rv)
	if len(items) == 0 {
		b.WriteString("items: []\n")
	} else {
		b.WriteString("items:\n")
	}
	f := &dumpFile{listRV: rv}
	for i := range items {
		m := meta(&items[i])
		y, err := yaml.Marshal(&items[i])
		if err != nil {
			return nil, err
		}
		y = setTypeMeta(y, apiVersion, kind)
		writeListItem(&b, y)
		f.objects = append(f.objects, evidence.Object{APIVersion: apiVersion, Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), ResourceVersion: m.ResourceVersion})
	}
	f.body = b.Bytes()
	return f, nil
}

var typeMetaLine = regexp.MustCompile(`(?m)^(apiVersion|kind): .*\n`)

// setTypeMeta puts apiVersion and kind first in an object's YAML, replacing
// any present.
func setTypeMeta(y []byte, apiVersion, kind string) []byte {
	y = typeMetaLine.ReplaceAll(y, nil)
	return append([]byte(fmt.Sprintf("apiVersion: %s\nkind: %s\n", apiVersion, kind)), y...)
}

// writeListItem indents one YAML document as an item of a list.
func writeListItem(b *bytes.Buffer, y []byte) {
	lines := strings.Split(strings.TrimRight(string(y), "\n"), "\n")
	for i, l := range lines {
		if i == 0 {
			b.WriteString("- ")
		} else if l != "" {
			b.WriteString("  ")
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
}

var rbacKinds = map[string]bool{"Role": true, "RoleBinding": true, "ClusterRole": true, "ClusterRoleBinding": true}
var rbacWords = regexp.MustCompile(`(?i)rbac|role|binding`)

// RBACEvents keeps the events about RBAC objects, or whose reason or
// message mentions rbac, role or binding (the cluster-compromise runbook: `get events -A | grep
// -E "rbac|role|binding"`).
func RBACEvents(events []corev1.Event) []corev1.Event {
	var out []corev1.Event
	for _, e := range events {
		if rbacKinds[e.InvolvedObject.Kind] || rbacWords.MatchString(e.Reason) || rbacWords.MatchString(e.Message) {
			out = append(out, e)
		}
	}
	return out
}

// ContainerImage is one container and its image.
type ContainerImage struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Init      bool   `json:"init,omitempty"`
	Image     string `json:"image"`
	ImageID   string `json:"imageID,omitempty"` // the digest the kubelet ran, when reported
}

func imagesFile(pods []corev1.Pod, rv string) (*dumpFile, error) {
	var list []ContainerImage
	f := &dumpFile{listRV: rv, note: "every container's image and, where the kubelet reported it, the image ID (digest) it ran"}
	for i := range pods {
		p := &pods[i]
		ids := map[string]string{}
		for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			ids[s.Name] = s.ImageID
		}
		for _, c := range p.Spec.InitContainers {
			list = append(list, ContainerImage{Namespace: p.Namespace, Pod: p.Name, Container: c.Name, Init: true, Image: c.Image, ImageID: ids[c.Name]})
		}
		for _, c := range p.Spec.Containers {
			list = append(list, ContainerImage{Namespace: p.Namespace, Pod: p.Name, Container: c.Name, Image: c.Image, ImageID: ids[c.Name]})
		}
		f.objects = append(f.objects, podObject(p))
	}
	body, err := yaml.Marshal(map[string]any{"images": list})
	if err != nil {
		return nil, err
	}
	f.body = body
	return f, nil
}

// AccountInUse is a service account and the pods running as it.
type AccountInUse struct {
	Namespace      string                 `json:"namespace"`
	ServiceAccount string                 `json:"serviceAccount"`
	Pods           []string               `json:"pods"`
	Object         *corev1.ServiceAccount `json:"object,omitempty"` // absent: the account does not exist
}

func serviceAccountsFile(pods []corev1.Pod, sas []corev1.ServiceAccount, rv string) (*dumpFile, error) {
	byKey := map[string]*corev1.ServiceAccount{}
	for i := range sas {
		sas[i].APIVersion, sas[i].Kind = "v1", "ServiceAccount"
		byKey[objKey(&sas[i].ObjectMeta)] = &sas[i]
	}
	use := map[string]*AccountInUse{}
	for _, p := range pods {
		name := p.Spec.ServiceAccountName
		if name == "" {
			name = "default"
		}
		k := p.Namespace + "/" + name
		if use[k] == nil {
			use[k] = &AccountInUse{Namespace: p.Namespace, ServiceAccount: name, Object: byKey[k]}
		}
		use[k].Pods = append(use[k].Pods, p.Name)
	}
	keys := make([]string, 0, len(use))
	for k := range use {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := &dumpFile{listRV: rv, note: "service accounts that pods run as, with the pods; a missing object means the account does not exist"}
	list := make([]AccountInUse, 0, len(keys))
	for _, k := range keys {
		a := use[k]
		list = append(list, *a)
		if a.Object != nil {
			f.objects = append(f.objects, evidence.Object{APIVersion: "v1", Kind: "ServiceAccount", Namespace: a.Namespace, Name: a.ServiceAccount, UID: string(a.Object.UID), ResourceVersion: a.Object.ResourceVersion})
		}
	}
	body, err := yaml.Marshal(map[string]any{"serviceAccountsInUse": list})
	if err != nil {
		return nil, err
	}
	f.body = body
	return f, nil
}
