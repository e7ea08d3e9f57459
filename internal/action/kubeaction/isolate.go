package kubeaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/client-go/util/retry"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// Defaults of k8s.isolate: the LLM-orchestrator runbook's quarantine-policy.
const defaultPolicyName = "quarantine-policy"

var (
	defaultQuarantineSelector = map[string]string{"quarantine": "true"}
	defaultForensicsSelector  = map[string]string{"app": "forensics"}
)

// managedByLabel marks the objects irctl creates, so that a responder can
// find them with a selector when the incident is over.
var managedByLabel = map[string]string{"app.kubernetes.io/managed-by": "irctl"}

// pluginWarning is on every isolation plan: the API server stores a
// NetworkPolicy whether or not anything enforces it.
const pluginWarning = "a NetworkPolicy is enforced only by a network plugin that supports it (Calico, Cilium, ...): " +
	"on a cluster without one, the quarantined pods keep all their traffic"

// Isolate applies the quarantine NetworkPolicy: the selected pods accept no
// ingress and may only reach the forensics pods (and DNS, if allowed).
type Isolate struct{}

func (Isolate) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.isolate",
		Timeout: 5 * time.Minute, // the step's default deadline
		Description: "Apply a quarantine NetworkPolicy (server-side apply): the selected pods get no ingress and egress only to the forensics pods; " +
			"undo removes the policy or restores its previous spec.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the policy and the pods it isolates"},
			{Name: "name", Type: runbook.String, Default: defaultPolicyName, Description: "name of the NetworkPolicy"},
			{Name: "pod_selector", Type: runbook.Map, Default: defaultQuarantineSelector, Description: "labels of the pods to isolate"},
			{Name: "forensics_selector", Type: runbook.Map, Default: defaultForensicsSelector, Description: "labels of the pods in the namespace the isolated pods may still reach; {} denies all egress"},
			{Name: "allow_dns", Type: runbook.Bool, Default: false, Description: "also allow egress to kube-dns in kube-system on port 53"},
		},
		Validate: func(p runbook.Params) error {
			_, err := isolationOf(p)
			return err
		},
	}
}

func (Isolate) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	perms := []kube.Permission{{Verb: "list", Resource: "pods", Namespace: ns}}
	// Server-side apply is a patch, and a patch that creates the object
	// also needs create; replacing rules of other managers is an update.
	for _, verb := range []string{"get", "list", "create", "patch", "update"} {
		perms = append(perms, kube.Permission{Verb: verb, Group: networkingv1.GroupName, Resource: "networkpolicies", Namespace: ns})
	}
	return perms
}

// isolation is a step's params, checked.
type isolation struct {
	namespace, name string
	pods, forensics map[string]string
	dns             bool
}

func isolationOf(p runbook.Params) (isolation, error) {
	iso := isolation{
		namespace: p.String("namespace"),
		name:      p.String("name"),
		pods:      p.Map("pod_selector"),
		forensics: p.Map("forensics_selector"),
		dns:       p.Bool("allow_dns"),
	}
	if errs := validation.IsDNS1123Subdomain(iso.name); len(errs) > 0 {
		return iso, fmt.Errorf("name %q: %s", iso.name, errs[0])
	}
	// An empty pod selector selects every pod in the namespace: cutting
	// off a whole namespace must be spelled out, not fallen into.
	if len(iso.pods) == 0 {
		return iso, fmt.Errorf("pod_selector is empty: it would isolate every pod in the namespace")
	}
	if err := ValidateLabels(iso.pods); err != nil {
		return iso, fmt.Errorf("pod_selector: %w", err)
	}
	if len(iso.forensics) > 0 {
		if err := ValidateLabels(iso.forensics); err != nil {
			return iso, fmt.Errorf("forensics_selector: %w", err)
		}
	}
	return iso, nil
}

// describe says in words what the policy does.
func (iso isolation) describe() string {
	var egress string
	switch {
	case len(iso.forensics) > 0 && iso.dns:
		egress = "egress only to pods " + FormatLabels(iso.forensics) + " and to DNS"
	case len(iso.forensics) > 0:
		egress = "egress only to pods " + FormatLabels(iso.forensics)
	case iso.dns:
		egress = "egress only to DNS"
	default:
		egress = "no egress"
	}
	return fmt.Sprintf("pods %s get no ingress and %s", FormatLabels(iso.pods), egress)
}

// applyConfig is the policy irctl applies: only the fields it sets are
// irctl's under server-side apply.
func (iso isolation) applyConfig() *networkingv1ac.NetworkPolicyApplyConfiguration {
	spec := networkingv1ac.NetworkPolicySpec().
		WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(iso.pods)).
		WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	if len(iso.forensics) > 0 {
		spec.WithEgress(networkingv1ac.NetworkPolicyEgressRule().WithTo(
			networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(iso.forensics))))
	}
	if iso.dns {
		spec.WithEgress(networkingv1ac.NetworkPolicyEgressRule().
			WithTo(networkingv1ac.NetworkPolicyPeer().
				WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{corev1.LabelMetadataName: metav1.NamespaceSystem})).
				WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"k8s-app": "kube-dns"}))).
			WithPorts(
				networkingv1ac.NetworkPolicyPort().WithProtocol(corev1.ProtocolUDP).WithPort(intstr.FromInt32(53)),
				networkingv1ac.NetworkPolicyPort().WithProtocol(corev1.ProtocolTCP).WithPort(intstr.FromInt32(53))))
	}
	return networkingv1ac.NetworkPolicy(iso.name, iso.namespace).WithLabels(managedByLabel).WithSpec(spec)
}

// desiredSpec is the apply configuration's spec as the typed object the
// API server returns. Every field the server would default (protocols,
// policy types) is set explicitly, so the two compare equal.
func (iso isolation) desiredSpec() networkingv1.NetworkPolicySpec {
	var spec networkingv1.NetworkPolicySpec
	b, _ := json.Marshal(iso.applyConfig().Spec)
	_ = json.Unmarshal(b, &spec)
	return spec
}

// isolateState is what Apply and the undo record need from planning.
type isolateState struct {
	iso      isolation
	existing *networkingv1.NetworkPolicy // nil: the policy does not exist
	pods     int
}

// isolateUndo records the policy's spec before irctl applied it.
type isolateUndo struct {
	Namespace string                          `json:"namespace"`
	Name      string                          `json:"name"`
	UID       types.UID                       `json:"uid"`
	Previous  *networkingv1.NetworkPolicySpec `json:"previous"` // nil: irctl created the policy
}

func (Isolate) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	iso, err := isolationOf(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	where := iso.namespace + "/" + iso.name
	policies := c.Core.NetworkingV1().NetworkPolicies(iso.namespace)
	existing, err := policies.Get(ctx, iso.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		existing, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get NetworkPolicy %s: %s", where, kube.Short(err))
	}
	pods, err := c.Core.CoreV1().Pods(iso.namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(iso.pods).String()})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %s", iso.namespace, kube.Short(err))
	}
	targets := make([]string, len(pods.Items))
	for i, pod := range pods.Items {
		targets[i] = iso.namespace + "/" + pod.Name
	}
	sort.Strings(targets)

	plan := &action.Plan{
		Targets: action.Abbreviate(targets, 20),
		Count:   1,
		State:   isolateState{iso: iso, existing: existing, pods: len(pods.Items)},
	}
	selects := fmt.Sprintf("it selects %d pods now", len(pods.Items))
	want := iso.desiredSpec()
	switch {
	case existing != nil && equality.Semantic.DeepEqual(existing.Spec, want):
		plan.Summary = fmt.Sprintf("NetworkPolicy %s is in place (%s); %s", where, iso.describe(), selects)
		plan.Noop, plan.Count = true, 0
	case existing != nil:
		plan.Summary = fmt.Sprintf("update NetworkPolicy %s so that %s; %s", where, iso.describe(), selects)
	default:
		plan.Summary = fmt.Sprintf("create NetworkPolicy %s: %s; %s", where, iso.describe(), selects)
	}
	if !plan.Noop {
		// A server dry run shows what the apply would leave, fields of
		// other managers included, and catches what validation rejects.
		var res *networkingv1.NetworkPolicy
		err := kube.Retry(ctx, func() error {
			var err error
			res, err = policies.Apply(ctx, iso.applyConfig(), metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("apply NetworkPolicy %s (server dry run): %s", where, kube.Short(err))
		}
		if !equality.Semantic.DeepEqual(res.Spec, want) {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("NetworkPolicy %s holds rules set by %s that a server-side apply would keep: "+
				"irctl replaces its whole spec so that the quarantine is exact", where, strings.Join(otherManagers(existing), ", ")))
		}
	}
	if len(pods.Items) == 0 {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("no pod in %s carries %s yet: the policy applies to pods as soon as they are labelled", iso.namespace, FormatLabels(iso.pods)))
	}
	others, err := admittingPolicies(ctx, c, iso, pods.Items)
	if err != nil {
		return nil, err
	}
	plan.Warnings = append(plan.Warnings, others...)
	plan.Warnings = append(plan.Warnings, pluginWarning)
	return plan, nil
}

// otherManagers names the field managers of obj other than irctl.
func otherManagers(obj *networkingv1.NetworkPolicy) []string {
	if obj == nil {
		return []string{"other field managers"}
	}
	seen := map[string]bool{}
	var out []string
	for _, mf := range obj.ManagedFields {
		if mf.Manager != kube.FieldManager && !seen[mf.Manager] {
			seen[mf.Manager] = true
			out = append(out, mf.Manager)
		}
	}
	if len(out) == 0 {
		return []string{"other field managers"}
	}
	sort.Strings(out)
	return out
}

// admittingPolicies warns about the other NetworkPolicies that select some
// of the pods and allow traffic: policies are additive, so whatever they
// admit still reaches the quarantined pods.
func admittingPolicies(ctx context.Context, c *kube.Clients, iso isolation, pods []corev1.Pod) ([]string, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	list, err := c.Core.NetworkingV1().NetworkPolicies(iso.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list NetworkPolicies in %s: %s", iso.namespace, kube.Short(err))
	}
	var warnings []string
	for _, np := range list.Items {
		if np.Name == iso.name {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			continue // the API server validated it; nothing it selects
		}
		n := 0
		for _, pod := range pods {
			if sel.Matches(labels.Set(pod.Labels)) {
				n++
			}
		}
		var admits []string
		if hasPolicyType(np.Spec, networkingv1.PolicyTypeIngress) && len(np.Spec.Ingress) > 0 {
			admits = append(admits, "ingress")
		}
		if hasPolicyType(np.Spec, networkingv1.PolicyTypeEgress) && len(np.Spec.Egress) > 0 {
			admits = append(admits, "egress")
		}
		if n == 0 || len(admits) == 0 {
			continue
		}
		warnings = append(warnings, fmt.Sprintf("NetworkPolicy %s also selects %d of these pods and admits %s: policies are additive, "+
			"so that traffic still reaches them; narrow or delete it to isolate them fully", np.Name, n, strings.Join(admits, " and ")))
	}
	return warnings, nil
}

// hasPolicyType applies the API's rule that a policy without policyTypes
// is an ingress policy, and an egress one too if it has egress rules.
func hasPolicyType(spec networkingv1.NetworkPolicySpec, t networkingv1.PolicyType) bool {
	if len(spec.PolicyTypes) == 0 {
		return t == networkingv1.PolicyTypeIngress || (t == networkingv1.PolicyTypeEgress && len(spec.Egress) > 0)
	}
	for _, pt := range spec.PolicyTypes {
		if pt == t {
			return true
		}
	}
	return false
}

func (Isolate) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	st := plan.State.(isolateState)
	iso := st.iso
	where := iso.namespace + "/" + iso.name
	dry := kube.DryRunOpt(env.DryRun == action.DryRunServer)
	policies := c.Core.NetworkingV1().NetworkPolicies(iso.namespace)
	want := iso.desiredSpec()
	// After an uncertain write the policy is read again: one that is in
	// place with exactly the quarantine spec is the write having worked.
	var res *networkingv1.NetworkPolicy
	inPlace := func() (bool, error) {
		if dry != nil {
			return false, nil // a server dry run leaves nothing to find
		}
		cur, err := policies.Get(ctx, iso.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		res = cur
		return equality.Semantic.DeepEqual(cur.Spec, want), nil
	}
	err = kube.Write(ctx, func() error {
		var err error
		res, err = policies.Apply(ctx, iso.applyConfig(), metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true, DryRun: dry})
		return err
	}, inPlace)
	if err != nil {
		return nil, fmt.Errorf("apply NetworkPolicy %s: %s", where, kube.Short(err))
	}
	// Server-side apply leaves alone the fields irctl does not set, such as
	// ingress rules another manager added; any of them would let traffic
	// through, so the spec is then replaced whole.
	if !equality.Semantic.DeepEqual(res.Spec, want) {
		err := kube.Write(ctx, func() error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := policies.Get(ctx, iso.name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				cur.Spec = want
				res, err = policies.Update(ctx, cur, metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: dry})
				return err
			})
		}, inPlace)
		if err != nil {
			return nil, fmt.Errorf("replace the spec of NetworkPolicy %s: %s", where, kube.Short(err))
		}
	}
	u := isolateUndo{Namespace: iso.namespace, Name: iso.name, UID: res.UID}
	verb := "created"
	if st.existing != nil {
		verb = "updated"
		u.Previous = st.existing.Spec.DeepCopy()
	}
	undo, _ := json.Marshal(u)
	return &action.Result{
		Summary: fmt.Sprintf("%s NetworkPolicy %s: %s (%d pods selected at plan time)", verb, where, iso.describe(), st.pods),
		Changed: 1,
		Undo:    undo,
	}, nil
}

// errReplaced: the object found is not the one irctl wrote.
var errReplaced = errors.New("not the object irctl applied (its UID changed)")

// Undo deletes the policy irctl created, or puts back the spec it had.
// Either way it acts only on the object irctl applied (same UID): a policy
// deleted and recreated since is somebody else's.
func (Isolate) Undo(ctx context.Context, env *action.Env, raw json.RawMessage) (*action.Result, error) {
	u, c, err := undoRecord[isolateUndo](env, raw)
	if err != nil {
		return nil, err
	}
	dry := kube.DryRunOpt(env.DryRun == action.DryRunServer)
	policies := c.Core.NetworkingV1().NetworkPolicies(u.Namespace)
	where := u.Namespace + "/" + u.Name
	replaced := func() (*action.Result, error) {
		return &action.Result{
			Summary: fmt.Sprintf("left NetworkPolicy %s alone: it was replaced after irctl applied it", where),
			Failed:  []action.Failure{{Target: "networkpolicy/" + where, Error: "not the object irctl applied (its UID changed)"}},
		}, nil
	}
	gone := &action.Result{Summary: fmt.Sprintf("NetworkPolicy %s is already gone", where)}

	if u.Previous == nil {
		// A delete whose response is lost is read back: gone is done.
		err := kube.Write(ctx, func() error {
			return policies.Delete(ctx, u.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &u.UID}, DryRun: dry})
		}, func() (bool, error) {
			cur, err := policies.Get(ctx, u.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) && dry == nil:
				return true, nil
			case err == nil && cur.UID != u.UID:
				return false, errReplaced
			}
			return false, err
		})
		switch {
		case apierrors.IsNotFound(err):
			return gone, nil
		case apierrors.IsConflict(err), errors.Is(err, errReplaced):
			return replaced()
		case err != nil:
			return nil, fmt.Errorf("delete NetworkPolicy %s: %s", where, kube.Short(err))
		}
		return &action.Result{Summary: fmt.Sprintf("deleted NetworkPolicy %s, which irctl had created", where), Changed: 1}, nil
	}

	deleted, otherUID := false, false
	restored := func() (bool, error) {
		cur, err := policies.Get(ctx, u.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			deleted = true
			return true, nil
		case err != nil || dry != nil:
			return false, err
		case cur.UID != u.UID:
			otherUID = true
			return true, nil
		}
		return equality.Semantic.DeepEqual(cur.Spec, *u.Previous), nil
	}
	err = kube.Write(ctx, func() error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := policies.Get(ctx, u.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				deleted = true
				return nil
			}
			if err != nil {
				return err
			}
			if cur.UID != u.UID {
				otherUID = true
				return nil
			}
			cur.Spec = *u.Previous
			_, err = policies.Update(ctx, cur, metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: dry})
			return err
		})
	}, restored)
	switch {
	case err != nil:
		return nil, fmt.Errorf("restore NetworkPolicy %s: %s", where, kube.Short(err))
	case deleted:
		return gone, nil
	case otherUID:
		return replaced()
	}
	return &action.Result{Summary: fmt.Sprintf("restored the previous spec of NetworkPolicy %s", where), Changed: 1}, nil
}
