package runbook

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Expect is a step's assertion on its result table (`expect:`), judged by
// the engine after the step applied. Every condition must hold.
//
// The YAML form is a mapping from what is measured to a value or a
// comparison:
//
//	expect: {rows: 0}              # the result has no rows
//	expect: {value: 0}             # its one row's value is 0
//	expect: {rows: {le: 5}}        # at most 5 rows
//	expect: {value: {gt: 0, lt: 100}}
//
// A bare value means "equal to": the common assertion (nothing found)
// reads as it is said, and YAML keeps numbers typed, so no expression
// language has to be parsed and every mistake is caught at load time.
type Expect struct {
	Conds []Cond
	Line  int
}

// Cond is one comparison: Subject Op Want.
type Cond struct {
	Subject string // SubjectRows or SubjectValue
	Op      string // eq, ne, lt, le, gt, ge
	Want    string // the value as written; a number when Num is set
	Num     *float64
}

// What an expectation measures.
const (
	// SubjectRows is the result's row count (every row, not only those
	// kept for display).
	SubjectRows = "rows"
	// SubjectValue is the single value of a one-row result: its only
	// column, or its column named "value" (Prometheus' tables).
	SubjectValue = "value"
)

var opSymbols = map[string]string{"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

// ordered lists the subjects and operators in the order they print.
var subjects = []string{SubjectRows, SubjectValue}
var ops = []string{"eq", "ne", "lt", "le", "gt", "ge"}

// String reads as the expectation does: "rows = 0, value <= 5".
func (e *Expect) String() string {
	if e == nil {
		return ""
	}
	parts := make([]string, len(e.Conds))
	for i, c := range e.Conds {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

func (c Cond) String() string { return fmt.Sprintf("%s %s %s", c.Subject, opSymbols[c.Op], c.Want) }

// Holds reports whether got satisfies c. A number compares numerically
// (got must parse as one); a string compares only for eq and ne.
func (c Cond) Holds(got string) (bool, error) {
	if c.Num == nil {
		switch c.Op {
		case "eq":
			return got == c.Want, nil
		case "ne":
			return got != c.Want, nil
		}
		return false, fmt.Errorf("%s compares numbers, and %q is not one", c.Op, c.Want)
	}
	g, err := strconv.ParseFloat(strings.TrimSpace(got), 64)
	if err != nil || math.IsNaN(g) {
		return false, fmt.Errorf("%q is not a number", got)
	}
	w := *c.Num
	switch c.Op {
	case "eq":
		return g == w, nil
	case "ne":
		return g != w, nil
	case "lt":
		return g < w, nil
	case "le":
		return g <= w, nil
	case "gt":
		return g > w, nil
	case "ge":
		return g >= w, nil
	}
	return false, fmt.Errorf("unknown operator %q", c.Op)
}

// parseExpect reads an `expect:` node; errors carry the line of the part
// that is wrong.
func parseExpect(n *yaml.Node) (*Expect, int, error) {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return nil, n.Line, fmt.Errorf("expect: want a mapping like {rows: 0} or {value: {le: 5}} (measures: %s)", strings.Join(subjects, ", "))
	}
	e := &Expect{Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != SubjectRows && k.Value != SubjectValue {
			return nil, k.Line, fmt.Errorf("expect: unknown measure %q (want %s)%s", k.Value, strings.Join(subjects, " or "), suggest(k.Value, subjects))
		}
		if v.Kind == yaml.ScalarNode {
			c, err := cond(k.Value, "eq", v)
			if err != nil {
				return nil, v.Line, err
			}
			e.Conds = append(e.Conds, c)
			continue
		}
		if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			return nil, v.Line, fmt.Errorf("expect: %s: want a value or a comparison like {le: 5} (%s)", k.Value, strings.Join(ops, ", "))
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			op, val := v.Content[j], v.Content[j+1]
			if _, ok := opSymbols[op.Value]; !ok {
				return nil, op.Line, fmt.Errorf("expect: %s: unknown comparison %q (want one of %s)%s", k.Value, op.Value, strings.Join(ops, ", "), suggest(op.Value, ops))
			}
			if val.Kind != yaml.ScalarNode {
				return nil, val.Line, fmt.Errorf("expect: %s: %s: want a single value", k.Value, op.Value)
			}
			c, err := cond(k.Value, op.Value, val)
			if err != nil {
				return nil, val.Line, err
			}
			e.Conds = append(e.Conds, c)
		}
	}
	// Print in a stable order whatever the file's order.
	rank := func(c Cond) int {
		for i, s := range subjects {
			if s == c.Subject {
				return i*10 + indexOf(ops, c.Op)
			}
		}
		return 0
	}
	sort.SliceStable(e.Conds, func(i, j int) bool { return rank(e.Conds[i]) < rank(e.Conds[j]) })
	return e, n.Line, nil
}

func cond(subject, op string, v *yaml.Node) (Cond, error) {
	c := Cond{Subject: subject, Op: op, Want: v.Value}
	if v.Tag == "!!null" {
		return c, fmt.Errorf("expect: %s: the value is empty", subject)
	}
	isNum := v.Tag == "!!int" || v.Tag == "!!float"
	if isNum {
		f, err := strconv.ParseFloat(strings.ReplaceAll(v.Value, "_", ""), 64)
		if err != nil {
			return c, fmt.Errorf("expect: %s: %q is not a number", subject, v.Value)
		}
		c.Num = &f
	}
	if subject == SubjectRows {
		if !isNum || *c.Num < 0 || *c.Num != math.Trunc(*c.Num) {
			return c, fmt.Errorf("expect: rows: %q is not a row count (want a whole number, 0 or more)", v.Value)
		}
	}
	if !isNum && op != "eq" && op != "ne" {
		return c, fmt.Errorf("expect: %s: %s compares numbers, and %q is not one", subject, op, v.Value)
	}
	if strings.Contains(v.Value, "{{") {
		return c, fmt.Errorf("expect: %s: templates are not expanded in expect; write the value itself", subject)
	}
	return c, nil
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

// checkStep reads a step's `expect:` and checks what only makes sense in
// some places: an expectation needs an action whose result is a table,
// and a validate phase holds read-only checks, so it never asks.
func checkStep(st *Step, spec Spec, expect *yaml.Node, stepNode *yaml.Node) []Problem {
	var ps []Problem
	if st.Phase == PhaseValidate && spec.Destructive {
		ps = append(ps, Problem{Line: valueLine(stepNode, "action"), Msg: fmt.Sprintf(
			"step %s: action %s changes things and asks first; a validate phase holds read-only checks (move the step to eradicate or recover)", st.Name, spec.Name)})
	}
	if st.Phase == PhaseValidate && spec.Manual {
		ps = append(ps, Problem{Line: valueLine(stepNode, "action"), Msg: fmt.Sprintf(
			"step %s: a manual step waits for a person; a validate phase holds checks irctl runs itself (move it to eradicate or recover)", st.Name)})
	}
	if expect.Kind == 0 {
		return ps
	}
	e, line, err := parseExpect(expect)
	if err != nil {
		return append(ps, Problem{Line: line, Msg: fmt.Sprintf("step %s: %v", st.Name, err)})
	}
	if !spec.Table {
		return append(ps, Problem{Line: expect.Line, Msg: fmt.Sprintf("step %s: expect: action %s returns no table to judge (actions with tables: see `irctl actions`)", st.Name, spec.Name)})
	}
	st.Expect = e
	return ps
}
