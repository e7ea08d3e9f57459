package runbook

import (
	"fmt"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// A step may run only when a value is non-empty, so a runbook can name an
// optional target by a param that is empty by default (a workload to
// restart, an image to patch, addresses to look up):
//
//	- name: restart-jwt-consumers
//	  action: k8s.rollout-restart
//	  only_if: "{{ .jwt_consumer_deployment }}"
//	  skip_message: no jwt_consumer_deployment given
//
// An empty value (nothing, "", false, an empty list or map) skips the step:
// the engine journals it as having nothing to do, with the message (a
// template too), and neither plans it, asks for its permissions or
// confirmation, nor locks or checks the servers for it; the action never
// sees it.

// defaultSkipMessage is what an empty only_if means when the step says
// nothing else.
const defaultSkipMessage = "only_if is empty"

// loadOnlyIf renders the step's only_if and sets st.Skip when it is empty.
func loadOnlyIf(st *Step, sd *stepDoc, stepNode *yaml.Node, data map[string]any, add func(int, string, ...any)) {
	// `only_if:` with nothing after it is there and empty.
	if sd.OnlyIf == nil && child(stepNode, "only_if") == nil {
		if sd.SkipMessage != "" {
			add(valueLine(stepNode, "skip_message"), "step %s: skip_message without only_if", st.Name)
		}
		return
	}
	for k := range paramRefs(sd.OnlyIf) {
		st.uses[k] = true
	}
	v, missing, err := render(sd.OnlyIf, data)
	switch {
	case err != nil:
		add(valueLine(stepNode, "only_if"), "step %s: only_if: %v", st.Name, err)
	case len(missing) > 0:
		st.Unresolved = append(st.Unresolved, missing...)
	case isEmptyValue(v):
		st.Skip = defaultSkipMessage
		if sd.SkipMessage != "" {
			msg, missing, err := render(sd.SkipMessage, data)
			if err != nil {
				add(valueLine(stepNode, "skip_message"), "step %s: skip_message: %v", st.Name, err)
				return
			}
			if len(missing) > 0 {
				st.Unresolved = append(st.Unresolved, missing...)
				return
			}
			st.Skip = fmt.Sprint(msg)
		}
	}
}

// isEmptyValue: nil, "", false, or a list or map with nothing in it.
func isEmptyValue(v any) bool {
	if v == nil {
		return true
	}
	switch x := v.(type) {
	case string:
		return x == ""
	case bool:
		return !x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	}
	return false
}

// SkipSummary is the plan a skipped step shows and journals.
func (s Step) SkipSummary() string { return fmt.Sprintf("skipped: %s", s.Skip) }
