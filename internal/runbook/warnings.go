package runbook

import (
	"fmt"
	"strings"
)

// StateDestroyingActions are the actions that destroy state of their
// targets an investigation may need (an evicted or restarted pod loses its
// logs, its memory and its writable layer; a deleted object is gone), with
// what they do, for warnings.
var StateDestroyingActions = map[string]string{
	"k8s.drain":           "evicts the pods of",
	"k8s.evict":           "evicts",
	"k8s.delete":          "deletes",
	"k8s.delete-pods":     "deletes",
	"k8s.rollout-restart": "restarts",
	"k8s.restart":         "restarts",
	"k8s.scale":           "scales down",
	"k8s.set-image":       "replaces the pods of",
}

// EvidenceCaptureActions capture a target's evidence.
var EvidenceCaptureActions = map[string]bool{
	"k8s.logs":       true,
	"k8s.dump":       true,
	"k8s.snapshot":   true,
	"k8s.debug-copy": true,
}

// Warnings returns what is allowed but probably wrong in a loaded runbook:
// a step that destroys state of a target (drain, delete, restart...)
// ordered, in phase order, before a step that captures that target's
// evidence (logs, dump, snapshot, forensic copy). RFC 3227: collect the
// most volatile evidence first. Warnings never fail validation.
func Warnings(rb *Runbook) []Problem {
	type placed struct {
		step  Step
		order int
	}
	var steps []placed
	for _, ph := range Phases {
		for _, s := range rb.Phases[ph] {
			steps = append(steps, placed{s, len(steps)})
		}
	}
	var out []Problem
	detached := map[string]bool{} // namespaces where a k8s.label step detached the quarantined pods
	for i, d := range steps {
		if d.step.Action == "k8s.label" && lookupBool(d.step, "detach") {
			detached[lookupString(d.step, "namespace")] = true
		}
		verb, destroys := StateDestroyingActions[d.step.Action]
		if !destroys || skippedStep(d.step) {
			continue
		}
		// A restart of a workload after the affected pods were detached
		// from it (k8s.label detach) replaces their clean replacements:
		// the quarantined pods are no longer the workload's.
		if namesWorkload(d.step) && detached[lookupString(d.step, "namespace")] {
			continue
		}
		dt := targetOf(d.step)
		var later []string
		for _, c := range steps[i+1:] {
			if EvidenceCaptureActions[c.step.Action] && dt.overlaps(targetOf(c.step)) {
				later = append(later, fmt.Sprintf("%s (%s, phase %s, line %d)", c.step.Name, c.step.Action, c.step.Phase, c.step.Line))
			}
		}
		if len(later) == 0 {
			continue
		}
		out = append(out, Problem{File: rb.File, Line: d.step.Line, Msg: fmt.Sprintf(
			"step %s (%s, phase %s) %s %s before %s capture(s) its evidence: collect the most volatile evidence first (RFC 3227), so move the capture before it",
			d.step.Name, d.step.Action, d.step.Phase, verb, dt, strings.Join(later, ", "))})
	}
	return out
}

func lookupString(s Step, k string) string { v, _ := s.Params.Lookup(k); x, _ := v.(string); return x }
func lookupBool(s Step, k string) bool     { v, _ := s.Params.Lookup(k); x, _ := v.(bool); return x }

// skippedStep: the step's only_if is empty, so it does nothing.
func skippedStep(s Step) bool { return s.Skip != "" }

// namesWorkload: the step acts on one named Deployment, StatefulSet or
// DaemonSet (and so on its pods only).
func namesWorkload(s Step) bool {
	for _, k := range []string{"deployment", "statefulset", "daemonset"} {
		if lookupString(s, k) != "" {
			return true
		}
	}
	return false
}

// stepTarget is what a step acts on, as far as its params tell.
type stepTarget struct {
	namespace string   // "": any namespace (cluster-wide, or nodes)
	names     []string // nil: any object in the namespace
	selector  string
	nodes     []string
}

func targetOf(s Step) stepTarget {
	// Steps of every action pass through here: read only the params each
	// declares (k8s.isolate's pod_selector is a map, not a selector string).
	str := func(k string) string { v, _ := s.Params.Lookup(k); x, _ := v.(string); return x }
	strs := func(k string) []string { v, _ := s.Params.Lookup(k); x, _ := v.([]string); return x }
	t := stepTarget{namespace: str("namespace"), names: strs("names"), selector: str("selector")}
	if t.selector == "" {
		t.selector = str("pod_selector")
	}
	t.nodes = strs("nodes")
	if len(t.nodes) > 0 || str("node_selector") != "" {
		// Pods on nodes may be in any namespace.
		t.namespace, t.names = "", nil
	}
	if len(s.Unresolved) > 0 {
		return stepTarget{}
	}
	return t
}

func (t stepTarget) String() string {
	var where string
	switch {
	case len(t.nodes) > 0:
		where = "nodes " + strings.Join(t.nodes, ", ")
	case t.namespace == "":
		where = "pods in any namespace"
	case len(t.names) > 0:
		where = t.namespace + "/" + strings.Join(t.names, ", "+t.namespace+"/")
	case t.selector != "":
		where = fmt.Sprintf("pods %s in %s", t.selector, t.namespace)
	default:
		where = "namespace " + t.namespace
	}
	return where
}

// overlaps is conservative: it says no only when the params show the two
// steps cannot touch the same objects.
func (t stepTarget) overlaps(o stepTarget) bool {
	if t.namespace != "" && o.namespace != "" && t.namespace != o.namespace {
		return false
	}
	if t.namespace != "" && o.namespace != "" && len(t.names) > 0 && len(o.names) > 0 {
		for _, a := range t.names {
			for _, b := range o.names {
				if a == b {
					return true
				}
			}
		}
		return false
	}
	return !selectorsDisjoint(t.selector, o.selector)
}

// selectorsDisjoint reports whether two equality-based selectors cannot
// both match one object (app=a vs app=b, or app=a vs app!=a).
func selectorsDisjoint(a, b string) bool {
	ea, na := equalities(a)
	eb, nb := equalities(b)
	for k, v := range ea {
		if w, ok := eb[k]; ok && w != v {
			return true
		}
		if nb[k+"="+v] {
			return true
		}
	}
	for k, v := range eb {
		if na[k+"="+v] {
			return true
		}
	}
	return false
}

// equalities parses the k=v and k!=v terms of a selector; set-based terms
// are ignored (they never make two selectors look disjoint).
func equalities(sel string) (eq map[string]string, ne map[string]bool) {
	eq, ne = map[string]string{}, map[string]bool{}
	for _, term := range strings.Split(sel, ",") {
		term = strings.TrimSpace(term)
		if k, v, ok := strings.Cut(term, "!="); ok {
			ne[strings.TrimSpace(k)+"="+strings.TrimSpace(v)] = true
			continue
		}
		if strings.ContainsAny(term, " ()") {
			continue
		}
		k, v, ok := strings.Cut(term, "=")
		if !ok {
			continue
		}
		eq[strings.TrimSpace(k)] = strings.TrimSpace(strings.TrimPrefix(v, "="))
	}
	return eq, ne
}
