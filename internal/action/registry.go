package action

import (
	"fmt"
	"sort"

	"irctl.dev/irctl/internal/runbook"
)

// Registry maps action names to actions. It is the runbook loader's Catalog.
type Registry struct {
	m map[string]Action
}

// NewRegistry registers actions; a duplicate name is a programming error.
func NewRegistry(actions ...Action) *Registry {
	r := &Registry{m: map[string]Action{}}
	for _, a := range actions {
		name := a.Spec().Name
		if err := a.Spec().Check(); err != nil {
			panic(err.Error())
		}
		if _, dup := r.m[name]; dup {
			panic(fmt.Sprintf("action %s registered twice", name))
		}
		r.m[name] = a
	}
	return r
}

// Get returns the named action.
func (r *Registry) Get(name string) (Action, bool) { a, ok := r.m[name]; return a, ok }

// Spec implements runbook.Catalog.
func (r *Registry) Spec(name string) (runbook.Spec, bool) {
	a, ok := r.m[name]
	if !ok {
		return runbook.Spec{}, false
	}
	return a.Spec(), true
}

// Names lists the registered actions in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
