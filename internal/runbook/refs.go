package runbook

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// A param may take its value from an earlier step's recorded result, so
// that what assess found feeds eradicate without retyping it:
//
//	compromised_user_ids:
//	  type: ints
//	  from: {step: assess/compromised-accounts, column: user_id}
//
// The value is the distinct values of that column in the step's last
// recorded result (read back from the evidence it committed, hash
// checked), in the order they appear. --set wins over it; without a
// recorded result the default applies, and without a default the steps
// using the param cannot run yet.
//
// The column _finished_at is the time (RFC 3339, UTC) the step last
// finished successfully, for steps whose effect is the point in time, not
// a table: validate counts the attacker's accepted requests from the end
// of contain/restart-jwt-consumers, when the stolen JWT stopped working.

// FinishedAtColumn is the pseudo-column holding when a step finished.
const FinishedAtColumn = "_finished_at"

// Ref names a column of a step's recorded result.
type Ref struct {
	Phase  string
	Step   string
	Column string
	Line   int
}

func (r Ref) String() string { return r.Phase + "/" + r.Step }

type refDoc struct {
	Step   string `yaml:"step"`
	Column string `yaml:"column"`
}

// Results reads recorded step results (engine.JournalResults is one).
type Results interface {
	// Column returns the distinct values of column in the last recorded
	// result of phase/step, and where they came from (for the plan).
	Column(phase, step, column string) (values []string, origin string, err error)
}

// ErrNoResult is what Results.Column returns when the step has no recorded
// result yet.
var ErrNoResult = errors.New("no recorded result")

// Origin says where a param's value came from, for plans and reports.
type Origin struct {
	Ref     Ref    `json:"-"`
	From    string `json:"from"`             // phase/step.column
	Source  string `json:"source,omitempty"` // journal record and evidence item
	Values  int    `json:"values"`
	Pending string `json:"pending,omitempty"` // why there is no value yet
}

var columnName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseRef checks a param's from: against the runbook's phases; the
// referenced step must exist (checked after steps are loaded).
func parseRef(d *refDoc, line int) (*Ref, error) {
	phase, step, ok := strings.Cut(d.Step, "/")
	if !ok || phase == "" || step == "" {
		return nil, fmt.Errorf("from.step %q: want phase/step, e.g. assess/compromised-accounts", d.Step)
	}
	if !IsPhase(phase) {
		return nil, fmt.Errorf("from.step %q: unknown phase %q (phases: %s)", d.Step, phase, strings.Join(Phases, ", "))
	}
	if !columnName.MatchString(d.Column) {
		return nil, fmt.Errorf("from.column %q: want a result column name", d.Column)
	}
	return &Ref{Phase: phase, Step: step, Column: d.Column, Line: line}, nil
}

func phaseIndex(p string) int {
	for i, q := range Phases {
		if q == p {
			return i
		}
	}
	return -1
}

// resolveRef gives a from: param its value from o.Results. It returns
// false when there is none (yet), with the reason in the origin.
func resolveRef(rb *Runbook, p Param, o Options) (any, bool, error) {
	org := &Origin{Ref: *p.From, From: p.From.String() + "." + p.From.Column}
	rb.Origins[p.Name] = org
	if o.Results == nil {
		org.Pending = "no incident journal to read it from"
		return nil, false, nil
	}
	vals, src, err := o.Results.Column(p.From.Phase, p.From.Step, p.From.Column)
	if errors.Is(err, ErrNoResult) {
		org.Pending = fmt.Sprintf("%s has no recorded result yet", p.From)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("param %s: from %s: %w", p.Name, org.From, err)
	}
	items := make([]any, len(vals))
	for i, v := range vals {
		items[i] = v
	}
	v, err := Convert(p.Type, items)
	if err != nil {
		return nil, false, fmt.Errorf("param %s: from %s: %w", p.Name, org.From, err)
	}
	org.Source, org.Values = src, len(vals)
	return v, true, nil
}

// checkRefs refuses a from: whose step does not exist, or that a step
// using the param runs before (or in the same phase as) the step it reads.
func checkRefs(rb *Runbook, add func(int, string, ...any)) {
	for _, p := range rb.Params {
		if p.From == nil {
			continue
		}
		found := false
		for _, s := range rb.Phases[p.From.Phase] {
			found = found || s.Name == p.From.Step
		}
		if !found {
			add(p.From.Line, "param %s: from.step %s: phase %s has no step %q", p.Name, p.From, p.From.Phase, p.From.Step)
			continue
		}
		for _, ph := range Phases {
			for _, s := range rb.Phases[ph] {
				if s.uses[p.Name] && phaseIndex(ph) <= phaseIndex(p.From.Phase) {
					add(s.Line, "step %s (phase %s) uses param %s, which comes from %s: only a later phase can use it", s.Name, ph, p.Name, p.From)
				}
			}
		}
	}
}

// HasRefs reports whether any param takes its value from a step's result;
// the engine then loads the runbook again before each phase.
func (rb *Runbook) HasRefs() bool {
	for _, p := range rb.Params {
		if p.From != nil {
			return true
		}
	}
	return false
}

var listTypes = map[Type]bool{Strings: true, Ints: true, CIDRs: true, IPs: true}

// paramRefs names the runbook params templates inside v reference.
func paramRefs(v any) map[string]bool {
	out := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			for _, m := range anyRef.FindAllStringSubmatch(x, -1) {
				out[m[1]] = true
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				walk(k)
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// Uses reports whether the step's templates reference runbook param name.
func (s Step) Uses(name string) bool { return s.uses[name] }
