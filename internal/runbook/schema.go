// Package runbook loads incident-response runbooks: strict YAML with line
// numbers, typed parameters set with --set, templated step parameters checked
// against each action's schema, all before anything touches a server.
package runbook

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Phases are the incident phases in the order `irctl run` executes them.
var Phases = []string{"contain", "assess", "preserve", "eradicate", "recover", "notify", PhaseValidate}

// PhaseValidate is the phase of assertions: its steps are read-only
// checks, all of which run, and it ends with a pass/fail table.
const PhaseValidate = "validate"

// IsPhase reports whether name is one of Phases.
func IsPhase(name string) bool {
	for _, p := range Phases {
		if p == name {
			return true
		}
	}
	return false
}

// Type names a parameter's type, for runbook params and action params alike.
type Type string

// Types understood by runbook params (--set parses into them) and by actions.
const (
	String   Type = "string"
	Int      Type = "int"
	Bool     Type = "bool"
	Duration Type = "duration"
	Strings  Type = "strings" // list of strings; --set takes a comma-separated list
	Ints     Type = "ints"    // list of integers (e.g. user ids)
	CIDRs    Type = "cidrs"   // list of IP prefixes, parsed with net/netip
	IPs      Type = "ips"     // list of IP addresses, parsed with net/netip
	Map      Type = "map"     // string to string (actions only)
	Any      Type = "any"     // any YAML value; the action checks it (actions only)
)

var runbookParamTypes = map[Type]bool{String: true, Int: true, Bool: true, Duration: true, Strings: true, Ints: true, CIDRs: true, IPs: true}

// ParamDef describes one parameter of an action.
type ParamDef struct {
	Name        string
	Type        Type
	Required    bool
	Description string
	// Secret values are replaced by a fingerprint in the journal and output.
	Secret bool
	// Default is the value a step that omits the param gets, in the Go
	// type Convert gives Type (int64, time.Duration, []string,
	// map[string]string...); nil means the zero value. The loader fills
	// it in, so actions never carry defaults of their own.
	Default any
	// SQL marks a param whose text PostgreSQL parses as a statement: the
	// loader refuses templates in it, so values reach SQL only as bound
	// args.
	SQL bool
}

// Spec is what the loader needs to know about an action.
type Spec struct {
	Name        string
	Description string
	Destructive bool
	// Manual steps are done by a person: the engine shows the plan (the
	// instructions) and asks the operator to confirm they are done; with
	// --yes nobody confirms and the step is recorded as skipped.
	Manual bool
	Params []ParamDef
	// Validate, when set, checks a step's converted params at load time
	// (selectors, label syntax, exclusive params), so bad input fails
	// with file:line before anything runs.
	Validate func(Params) error `json:"-"`
	// Uses names the servers the action talks to ("kubernetes",
	// "postgres"), so the engine can check they answer before the first
	// write of a phase.
	Uses []string
	// Timeout is the step's default deadline (a step may set its own with
	// `timeout:`); zero means the engine's DefaultStepTimeout.
	Timeout time.Duration
	// Table says the action's result is a table (rows of a query, objects
	// found), which a step's `expect:` can judge.
	Table bool
}

func (s *Spec) param(name string) (ParamDef, bool) {
	for _, d := range s.Params {
		if d.Name == name {
			return d, true
		}
	}
	return ParamDef{}, false
}

// Check reports a spec that cannot be right: a param declared twice, an
// unknown type, a required param with a default, or a default that is not
// already in its type's canonical Go form (so a getter would drop it).
func (s Spec) Check() error {
	seen := map[string]bool{}
	for _, d := range s.Params {
		if seen[d.Name] {
			return fmt.Errorf("action %s: param %s declared twice", s.Name, d.Name)
		}
		seen[d.Name] = true
		if !runbookParamTypes[d.Type] && d.Type != Map && d.Type != Any {
			return fmt.Errorf("action %s: param %s: unknown type %q", s.Name, d.Name, d.Type)
		}
		if d.Default == nil {
			continue
		}
		if d.Required {
			return fmt.Errorf("action %s: param %s is required and has a default", s.Name, d.Name)
		}
		v, err := Convert(d.Type, d.Default)
		if err != nil {
			return fmt.Errorf("action %s: param %s: default: %v", s.Name, d.Name, err)
		}
		if reflect.TypeOf(v) != reflect.TypeOf(d.Default) {
			return fmt.Errorf("action %s: param %s: default is a %T, want a %T", s.Name, d.Name, d.Default, v)
		}
	}
	return nil
}

// Servers an action can use.
const (
	UsesKubernetes = "kubernetes"
	UsesPostgres   = "postgres"
)

// Catalog resolves action names to their specs (the action registry).
type Catalog interface {
	Spec(name string) (Spec, bool)
}

// ParseValue converts a --set string into a value of type t.
func ParseValue(t Type, s string) (any, error) {
	switch t {
	case String, "":
		return s, nil
	case Int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return b, nil
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	var items []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			items = append(items, f)
		}
	}
	return convertList(t, toAny(items))
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ParseDuration accepts Go durations plus a day unit ("7d", "24h", "90m").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration (like 24h, 7d)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (like 24h, 7d)", s)
	}
	return d, nil
}

// Convert checks a decoded YAML value (or a value produced by templating)
// against t and returns it in its canonical Go type: string, int64, bool,
// time.Duration, []string, []int64, []netip.Prefix, []netip.Addr,
// map[string]string, or v itself for Any.
func Convert(t Type, v any) (any, error) {
	switch t {
	case Any:
		return v, nil
	case String, "":
		switch x := v.(type) {
		case string:
			return x, nil
		case int, int64, bool, float64:
			return fmt.Sprint(x), nil
		}
		return nil, fmt.Errorf("want a string, got %s", describe(v))
	case Int:
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		case string:
			return ParseValue(Int, x)
		}
		return nil, fmt.Errorf("want an integer, got %s", describe(v))
	case Bool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			return ParseValue(Bool, x)
		}
		return nil, fmt.Errorf("want true or false, got %s", describe(v))
	case Duration:
		switch x := v.(type) {
		case time.Duration:
			return x, nil
		case string:
			return ParseDuration(x)
		}
		return nil, fmt.Errorf("want a duration (like 24h, 7d), got %s", describe(v))
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			if ms, ok := v.(map[string]string); ok {
				return ms, nil
			}
			return nil, fmt.Errorf("want a mapping, got %s", describe(v))
		}
		out := make(map[string]string, len(m))
		for k, e := range m {
			s, err := Convert(String, e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = s.(string)
		}
		return out, nil
	case Strings, Ints, CIDRs, IPs:
		switch x := v.(type) {
		case []any:
			return convertList(t, x)
		case []string:
			return convertList(t, toAny(x))
		case []int64, []netip.Prefix, []netip.Addr:
			return convertList(t, listToAny(x))
		case string:
			// A single value, or a comma-separated list from templating.
			return ParseValue(t, x)
		case nil:
			return convertList(t, nil)
		}
		return nil, fmt.Errorf("want a list, got %s", describe(v))
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

func listToAny(v any) []any {
	var out []any
	switch x := v.(type) {
	case []int64:
		for _, e := range x {
			out = append(out, e)
		}
	case []netip.Prefix:
		for _, e := range x {
			out = append(out, e.String())
		}
	case []netip.Addr:
		for _, e := range x {
			out = append(out, e.String())
		}
	}
	return out
}

func convertList(t Type, items []any) (any, error) {
	switch t {
	case Strings:
		out := make([]string, 0, len(items))
		for i, e := range items {
			s, err := Convert(String, e)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i+1, err)
			}
			out = append(out, s.(string))
		}
		return out, nil
	case Ints:
		out := make([]int64, 0, len(items))
		for _, e := range items {
			n, err := Convert(Int, e)
			if err != nil {
				return nil, fmt.Errorf("%s is not an integer id", describe(e))
			}
			out = append(out, n.(int64))
		}
		return out, nil
	case CIDRs:
		out := make([]netip.Prefix, 0, len(items))
		for _, e := range items {
			s, _ := e.(string)
			p, err := parsePrefix(s)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	case IPs:
		out := make([]netip.Addr, 0, len(items))
		for _, e := range items {
			s, _ := e.(string)
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil || a.Zone() != "" { // inet has no zones: fe80::1%eth0 is not a value it can hold
				return nil, fmt.Errorf("%s is not an IP address", describe(e))
			}
			out = append(out, a)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown list type %q", t)
}

// parsePrefix accepts "10.0.0.0/8" or a bare address (a /32 or /128), and
// insists on the canonical (masked) form so that a typo like 10.1.2.3/8 is
// caught rather than silently widened.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%v", x)
	}
}

// sortedKeys returns m's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
