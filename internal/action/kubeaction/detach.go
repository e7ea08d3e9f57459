package kubeaction

// Detaching quarantined pods (k8s.label with detach): a pod leaves its
// ReplicaSet and its Services when it loses the labels they select on.
// The ReplicaSet then counts one pod fewer and starts a clean replacement,
// the EndpointSlice controller drops the pod from the Services, and the
// pod itself stays, behind the isolation policy, as evidence that a later
// rollout restart or scale-down no longer touches (the ReplicaSet releases
// it: its controller reference goes).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"irctl.dev/irctl/internal/kube"
)

// Annotations a detached pod carries: the incident it was quarantined for,
// the step's selector (so a rerun of the step in the incident knows it is
// done), the labels taken away, as k=v,k2=v2, for the forensic record, and
// what a rerun after the step stopped partway needs to tell the originals
// it missed from the replacements the ReplicaSet started since (the
// selector matches both): when the step planned, and the names of every
// pod it chose (up to maxQuarantineSet of them, beyond which the plan time
// alone tells: a pod created in an earlier second is an original).
const (
	QuarantinedForIncident = "irctl.dev/quarantined-for-incident"
	QuarantineSelector     = "irctl.dev/quarantine-selector"
	DetachedLabels         = "irctl.dev/detached-labels"
	QuarantinePlannedAt    = "irctl.dev/quarantine-planned-at"
	QuarantineSet          = "irctl.dev/quarantine-set"
	maxQuarantineSet       = 100
)

// detached is what the pods an earlier run of a detach step detached say.
type detached struct {
	pods      []string        // NS/NAME
	chosen    map[string]bool // the names the step chose, when recorded
	plannedAt time.Time       // the earliest plan time recorded
	newest    time.Time       // the newest detached pod's creation
}

// missed reports whether pod, which the selector matches but no earlier
// run detached, is one that run chose and did not reach, not a
// replacement.
func (d detached) missed(pod *corev1.Pod) bool {
	if len(d.chosen) > 0 {
		return d.chosen[pod.Name]
	}
	// Creation times are whole seconds: one in the plan's second may be a
	// replacement, so only pods from an earlier second count.
	if !d.plannedAt.IsZero() {
		return pod.CreationTimestamp.Time.Before(d.plannedAt.Truncate(time.Second))
	}
	// Pods detached by an irctl that recorded neither: older than the
	// newest of them (its originals may share that second, and be left).
	return pod.CreationTimestamp.Time.Before(d.newest)
}

// selectors are the namespace's ReplicaSets and Services with a selector.
type selectors struct {
	replicaSets map[string]*appsv1.ReplicaSet // by name
	services    []corev1.Service
}

func loadSelectors(ctx context.Context, c *kube.Clients, ns string) (*selectors, error) {
	rsList, err := c.Core.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets in %s: %s", ns, kube.Short(err))
	}
	svcList, err := c.Core.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services in %s: %s", ns, kube.Short(err))
	}
	s := &selectors{replicaSets: map[string]*appsv1.ReplicaSet{}}
	for i := range rsList.Items {
		s.replicaSets[rsList.Items[i].Name] = &rsList.Items[i]
	}
	for _, svc := range svcList.Items {
		if len(svc.Spec.Selector) > 0 {
			s.services = append(s.services, svc)
		}
	}
	return s, nil
}

// ownerRS is the ReplicaSet controlling pod, if that is what controls it.
func (s *selectors) ownerRS(pod *corev1.Pod) *appsv1.ReplicaSet {
	o := metav1.GetControllerOf(pod)
	if o == nil || o.Kind != "ReplicaSet" {
		return nil
	}
	if rs := s.replicaSets[o.Name]; rs != nil && rs.UID == o.UID {
		return rs
	}
	return nil
}

// selectingServices are the Services whose selector matches set.
func (s *selectors) selectingServices(set labels.Set) []*corev1.Service {
	var out []*corev1.Service
	for i := range s.services {
		if labels.SelectorFromSet(s.services[i].Spec.Selector).Matches(set) {
			out = append(out, &s.services[i])
		}
	}
	return out
}

// detachment is what detaching one pod removes, and why.
type detachment struct {
	keys     []string
	why      string   // "selected by ReplicaSet x, Service y"
	problems []string // what removing labels cannot do
}

// detach works out the labels pod must lose to leave its ReplicaSet and
// every Service selecting it; keep (the quarantine labels) never goes.
func (s *selectors) detach(pod *corev1.Pod, keep map[string]string) detachment {
	var d detachment
	drop := map[string][]string{} // key -> who selects on it
	var by []string
	where := pod.Namespace + "/" + pod.Name
	if rs := s.ownerRS(pod); rs != nil {
		who := "ReplicaSet " + rs.Name
		by = append(by, who)
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil {
			d.problems = append(d.problems, fmt.Sprintf("%s: %s has an invalid selector (%v); not detached from it", where, who, err))
		} else {
			reqs, _ := sel.Requirements()
			for _, r := range reqs {
				switch r.Operator() {
				case selection.In, selection.Equals, selection.DoubleEquals, selection.Exists:
					if _, has := pod.Labels[r.Key()]; has {
						drop[r.Key()] = append(drop[r.Key()], who)
					}
				}
			}
		}
	} else if o := metav1.GetControllerOf(pod); o != nil {
		d.problems = append(d.problems, fmt.Sprintf("%s is controlled by %s %s: only pods of a ReplicaSet are detached from their controller; it stays in it", where, o.Kind, o.Name))
	}
	for _, svc := range s.selectingServices(pod.Labels) {
		who := "Service " + svc.Name
		by = append(by, who)
		for k := range svc.Spec.Selector {
			drop[k] = append(drop[k], who)
		}
	}
	after := labels.Set{}
	for k, v := range pod.Labels {
		after[k] = v
	}
	for k, who := range drop {
		if _, q := keep[k]; q {
			d.problems = append(d.problems, fmt.Sprintf("%s: %s select(s) on %s, which the step sets: the pod stays selected", where, strings.Join(who, ", "), k))
			continue
		}
		d.keys = append(d.keys, k)
		delete(after, k)
	}
	for k, v := range keep {
		after[k] = v
	}
	sort.Strings(d.keys)
	if rs := s.ownerRS(pod); rs != nil {
		if sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil && sel.Matches(after) {
			d.problems = append(d.problems, fmt.Sprintf("%s: ReplicaSet %s still selects it after the labels go (its selector %s); it is not detached", where, rs.Name, sel))
		}
	}
	for _, svc := range s.selectingServices(after) {
		d.problems = append(d.problems, fmt.Sprintf("%s: Service %s still selects it", where, svc.Name))
	}
	d.why = "selected by " + strings.Join(by, ", ")
	return d
}

// zeroReady says what the change leaves without a pod to serve: a
// ReplicaSet whose every replica gets isolated in place (no detach), or a
// Service left with no pod outside the changed ones and no replacement
// coming. Notes say which replacements detach makes the ReplicaSets start.
func (s *selectors) zeroReady(ctx context.Context, c *kube.Clients, ns string, pods []corev1.Pod, changes []labelChange, detach bool) (notes, zero []string, err error) {
	changed := map[string]bool{}
	for _, ch := range changes {
		changed[ch.Name] = true
	}
	byRS := map[string]int{} // ReplicaSet -> changed pods it controls
	svcs := map[string]*corev1.Service{}
	for i := range pods {
		pod := &pods[i]
		if !changed[pod.Name] {
			continue
		}
		if rs := s.ownerRS(pod); rs != nil {
			byRS[rs.Name]++
		}
		for _, svc := range s.selectingServices(pod.Labels) {
			svcs[svc.Name] = svc
		}
	}
	rsNames := slices.Sorted(maps.Keys(byRS))
	for _, name := range rsNames {
		rs, n := s.replicaSets[name], byRS[name]
		spec := int32(1)
		if rs.Spec.Replicas != nil {
			spec = *rs.Spec.Replicas
		}
		if detach {
			notes = append(notes, fmt.Sprintf("ReplicaSet %s%s loses %d pod(s) and starts as many clean replacements (%d replicas wanted)", name, ownerNote(rs), n, spec))
		} else if int32(n) >= spec {
			zero = append(zero, fmt.Sprintf("every replica of ReplicaSet %s%s (%d) would be isolated in place", name, ownerNote(rs), spec))
		}
	}
	svcNames := make([]string, 0, len(svcs))
	for name := range svcs {
		svcNames = append(svcNames, name)
	}
	sort.Strings(svcNames)
	for _, name := range svcNames {
		svc := svcs[name]
		list, lerr := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
		if lerr != nil {
			return nil, nil, fmt.Errorf("list the pods of Service %s/%s: %s", ns, name, kube.Short(lerr))
		}
		left := 0
		for _, p := range list.Items {
			if !changed[p.Name] && p.DeletionTimestamp == nil {
				left++
			}
		}
		if left > 0 {
			continue
		}
		if detach {
			// Replacements from a ReplicaSet whose template the Service
			// selects keep it served.
			for _, rsName := range rsNames {
				if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.replicaSets[rsName].Spec.Template.Labels)) {
					left += byRS[rsName]
				}
			}
			if left > 0 {
				continue
			}
			zero = append(zero, fmt.Sprintf("Service %s would have no pods: none of the changed pods is replaced by a ReplicaSet", name))
			continue
		}
		zero = append(zero, fmt.Sprintf("Service %s would route only to isolated pods", name))
	}
	return notes, zero, nil
}

func ownerNote(rs *appsv1.ReplicaSet) string {
	if o := metav1.GetControllerOf(rs); o != nil {
		return " (" + o.Kind + " " + o.Name + ")"
	}
	return ""
}

// removedLabels renders the labels keys had on pod, k=v,k2=v2.
func removedLabels(pod *corev1.Pod, keys []string) string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = pod.Labels[k]
	}
	return FormatLabels(m)
}

// detachedBefore lists the pods of ns that this incident already
// quarantined and detached with this selector: those carrying the
// quarantine labels and the step's annotations.
func detachedBefore(ctx context.Context, c *kube.Clients, ns string, quarantine map[string]string, selector, incident string) (detached, error) {
	var d detached
	list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(quarantine).String()})
	if err != nil {
		return d, fmt.Errorf("list quarantined pods in %s: %s", ns, kube.Short(err))
	}
	d.chosen = map[string]bool{}
	for _, p := range list.Items {
		if p.Annotations[QuarantinedForIncident] != incident || p.Annotations[QuarantineSelector] != selector {
			continue
		}
		d.pods = append(d.pods, ns+"/"+p.Name)
		if p.CreationTimestamp.After(d.newest) {
			d.newest = p.CreationTimestamp.Time
		}
		if t, err := time.Parse(time.RFC3339Nano, p.Annotations[QuarantinePlannedAt]); err == nil && (d.plannedAt.IsZero() || t.Before(d.plannedAt)) {
			d.plannedAt = t
		}
		for _, n := range strings.Split(p.Annotations[QuarantineSet], ",") {
			if n != "" {
				d.chosen[n] = true
			}
		}
	}
	sort.Strings(d.pods)
	return d, nil
}
