package runbook

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"time"
)

// Params are a step's parameters after rendering, type conversion and
// defaults, bound to the spec of the action that reads them. The getters
// return the value the step set, else the param's Default, else the zero
// value. Reading a name the spec does not declare, or reading it as
// another type, panics: a typo'd key in an action is a programming error
// that the first test exercising that read must catch, not a silent "".
type Params struct {
	spec *Spec
	vals map[string]any
}

// Bind converts vals to the spec's types and fills in the defaults of the
// params vals does not set. An undeclared name or a value of the wrong
// type is an error.
func (s Spec) Bind(vals map[string]any) (Params, error) {
	p := Params{spec: &s, vals: make(map[string]any, len(s.Params))}
	for k, v := range vals {
		d, ok := s.param(k)
		if !ok {
			return Params{}, fmt.Errorf("action %s has no param %q%s", s.Name, k, suggest(k, paramNames(s)))
		}
		cv, err := Convert(d.Type, v)
		if err != nil {
			return Params{}, fmt.Errorf("param %s: %w", k, err)
		}
		p.vals[k] = cv
	}
	p.fillDefaults(nil)
	return p, nil
}

// MustBind is Bind for values known to be right (tests, built-in
// callers); it panics on an error.
func (s Spec) MustBind(vals map[string]any) Params {
	p, err := s.Bind(vals)
	if err != nil {
		panic(err)
	}
	return p
}

// fillDefaults sets each param the step did not give to its Default;
// params in skip (given but not resolvable yet) stay unset.
func (p Params) fillDefaults(skip map[string]bool) {
	for _, d := range p.spec.Params {
		if _, set := p.vals[d.Name]; set || skip[d.Name] || d.Default == nil {
			continue
		}
		v := d.Default
		if m, ok := v.(map[string]string); ok { // callers must not share the spec's map
			v = maps.Clone(m)
		} else if l, ok := v.([]string); ok {
			v = append([]string(nil), l...)
		}
		p.vals[d.Name] = v
	}
}

// Spec returns the spec the params are bound to.
func (p Params) Spec() Spec {
	if p.spec == nil {
		return Spec{}
	}
	return *p.spec
}

// With returns a copy of p with param k set to v (converted to its type).
func (p Params) With(k string, v any) Params {
	d := p.def(k, "")
	cv, err := Convert(d.Type, v)
	if err != nil {
		panic(fmt.Sprintf("action %s: param %s: %v", p.spec.Name, k, err))
	}
	q := Params{spec: p.spec, vals: maps.Clone(p.vals)}
	q.vals[k] = cv
	return q
}

// def returns the declaration of k, panicking when the spec has none or
// declares another type than want ("" accepts any).
func (p Params) def(k string, want Type) ParamDef {
	if p.spec == nil {
		panic(fmt.Sprintf("runbook: param %q read from Params that are bound to no spec (build them with Spec.Bind)", k))
	}
	d, ok := p.spec.param(k)
	if !ok {
		panic(fmt.Sprintf("action %s reads param %q, which its spec does not declare%s", p.spec.Name, k, suggest(k, paramNames(*p.spec))))
	}
	if want != "" && d.Type != want && !(want == String && d.Type == "") {
		panic(fmt.Sprintf("action %s reads param %q as %s, but its spec declares %s", p.spec.Name, k, want, d.Type))
	}
	return d
}

func (p Params) get(k string, t Type) any {
	p.def(k, t)
	return p.vals[k]
}

// Has reports whether param k has a value: set by the step or defaulted.
func (p Params) Has(k string) bool { p.def(k, ""); _, ok := p.vals[k]; return ok }

func (p Params) String(k string) string { s, _ := p.get(k, String).(string); return s }
func (p Params) Int(k string) int64     { n, _ := p.get(k, Int).(int64); return n }
func (p Params) Bool(k string) bool     { b, _ := p.get(k, Bool).(bool); return b }
func (p Params) Duration(k string) time.Duration {
	d, _ := p.get(k, Duration).(time.Duration)
	return d
}
func (p Params) Strings(k string) []string      { s, _ := p.get(k, Strings).([]string); return s }
func (p Params) Ints(k string) []int64          { s, _ := p.get(k, Ints).([]int64); return s }
func (p Params) CIDRs(k string) []netip.Prefix  { s, _ := p.get(k, CIDRs).([]netip.Prefix); return s }
func (p Params) IPs(k string) []netip.Addr      { s, _ := p.get(k, IPs).([]netip.Addr); return s }
func (p Params) Map(k string) map[string]string { m, _ := p.get(k, Map).(map[string]string); return m }

// Any returns param k's value as converted, whatever its type (nil when
// unset): for Any-typed params such as bound SQL arguments.
func (p Params) Any(k string) any { p.def(k, ""); return p.vals[k] }

// Lookup returns param k's value when the spec declares k and it has a
// value, without the typo check: for code that reads params across many
// actions (the runbook warnings), where an undeclared name is expected.
func (p Params) Lookup(k string) (any, bool) {
	if p.spec == nil {
		return nil, false
	}
	if _, ok := p.spec.param(k); !ok {
		return nil, false
	}
	v, ok := p.vals[k]
	return v, ok
}

// Len is the number of params with a value.
func (p Params) Len() int { return len(p.vals) }

// MarshalJSON writes the values; use Display for anything shown or journaled.
func (p Params) MarshalJSON() ([]byte, error) { return json.Marshal(p.vals) }

// Display renders the params for the journal and plans: values of secret
// params (per the action's spec) and any runbook secret are replaced by
// "[redacted]"; lists and durations print in their natural form.
func (p Params) Display(spec Spec, secrets []string) map[string]any {
	secret := map[string]bool{}
	for _, d := range spec.Params {
		secret[d.Name] = d.Secret
	}
	out := make(map[string]any, len(p.vals))
	for k, v := range p.vals {
		if secret[k] {
			out[k] = "[redacted]"
			continue
		}
		out[k] = display(v, secrets)
	}
	return out
}

func display(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		for _, s := range secrets {
			if s != "" && x == s {
				return "[redacted]"
			}
		}
		return x
	case time.Duration:
		return x.String()
	case []netip.Prefix, []netip.Addr:
		return fmt.Sprint(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = display(e, secrets)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = display(e, secrets)
		}
		return out
	}
	return v
}

// DisplayValue renders one converted value as it is shown to people
// (durations as 2m0s, prefixes as text), e.g. a param's default.
func DisplayValue(v any) any { return display(v, nil) }
