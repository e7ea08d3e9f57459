package sandbox

// The seeded demo platform, from the runbook "LLM-orchestrator security
// incident": Nodes, namespaces, Secrets and what the seed writes itself;
// the workloads (workloads.go) and the attack's leftovers (attack.go) are
// created as a team or an attacker would create them, and the controllers
// and kwok make their pods.

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
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
	// LLMKeysSecret holds the LLM provider's API key (key api-key) the
	// orchestrator calls models with, as env LLM_API_KEY: the key a person
	// obtains anew from the provider after the breach (k8s.secret-set).
	LLMKeysSecret = "orchestrator-llm-keys"

	// fieldManager marks the seed's writes, so that managedFields tell
	// them apart from irctl's own ("irctl").
	fieldManager = "irctl-sandbox"
)

// NodeNames are the seeded Nodes. kwok simulates their kubelets; the
// sandbox registers a stand-in log endpoint as each one's kubelet
// (kubelet.go).
var NodeNames = []string{"node-a", "node-b", "node-c"}

var volumeSnapshotClasses = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}

var (
	createOpts = metav1.CreateOptions{FieldManager: fieldManager}
	updateOpts = metav1.UpdateOptions{FieldManager: fieldManager}
)

// seedKube creates the demo platform. Once the Nodes are registered and
// Ready it calls nodesReady (which starts kwok and the log endpoints), then
// creates the rest. The controllers make the workloads' pods; see
// waitSeeded for when they are Ready.
func seedKube(ctx context.Context, cfg *rest.Config, dbPassword string, nodesReady func(context.Context) error) error {
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
		{"simulated kubelets", func() error { return nodesReady(ctx) }},
		{"namespaces", func() error { return seedNamespaces(ctx, cs) }},
		{"secrets", func() error { return seedSecrets(ctx, cs, dbPassword) }},
		{"orchestrator", func() error { return seedOrchestrator(ctx, cs) }},
		{"postgres", func() error { return seedPostgres(ctx, cs) }},
		{"forensics pod", func() error { return seedForensics(ctx, cs) }},
		{"node-exporter", func() error { return seedNodeExporter(ctx, cs) }},
		{"the attack's leftovers", func() error { return seedAttack(ctx, cs) }},
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
				kwokNodeLabel:            kwokNodeValue,
			}},
		}, createOpts)
		if err != nil {
			return err
		}
		condition := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
		}
		status := corev1.NodeStatus{
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
		// kwok takes the Node as soon as it exists and writes its status
		// and lease too: a write that lost the race reads it again.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			node.Status = status
			_, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, updateOpts)
			if apierrors.IsConflict(err) {
				if fresh, gerr := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); gerr == nil {
					node = fresh
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		// The API server taints a new Node not-ready; the node lifecycle
		// controller, which the sandbox does not run (see kcmControllers),
		// would lift the taint once the Node reports Ready. Lift it, as it
		// would.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var taints []corev1.Taint
			for _, t := range node.Spec.Taints {
				if t.Key != corev1.TaintNodeNotReady {
					taints = append(taints, t)
				}
			}
			if len(taints) == len(node.Spec.Taints) {
				return nil
			}
			node.Spec.Taints = taints
			_, err = cs.CoreV1().Nodes().Update(ctx, node, updateOpts)
			return err
		})
		if err != nil {
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
		{
			ObjectMeta: metav1.ObjectMeta{Name: LLMKeysSecret, Labels: map[string]string{"app": "orchestrator"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"api-key": []byte("sk-proj-" + randomHex(24))},
		},
	}
	for _, s := range secrets {
		if _, err := cs.CoreV1().Secrets(DemoNamespace).Create(ctx, s, createOpts); err != nil {
			return err
		}
	}
	return nil
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
