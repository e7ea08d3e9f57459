package runbook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Runbook is a loaded, validated runbook with its parameter values resolved
// and every step's parameters rendered and type-checked.
type Runbook struct {
	Name        string
	Description string
	Source      string // what the runbook was written from (free text)
	File        string // where it was loaded from, for messages
	Hash        string // sha256 of the file's bytes, recorded in the journal
	Params      []Param
	Values      map[string]any // param name -> value (defaults overridden by --set)
	Phases      map[string][]Step
	// Secrets holds the values of params marked secret, so that output and
	// the journal can redact them wherever they were templated in.
	Secrets []string `json:"-"`
	// Origins says, for each param with from:, where its value came from
	// or why it has none yet.
	Origins map[string]*Origin
	// The incident's clocks (clocks.go): phase windows in phase order,
	// the escalation matrix by severity, the data categories the incident
	// may involve, and the notify step that tells the supervisory
	// authority (GDPR art. 33).
	Windows         []Window
	Escalation      map[string][]Escalation
	DataCategories  []string
	AuthorityNotice string
}

// Param is a runbook parameter.
type Param struct {
	Name        string
	Type        Type
	Default     any
	Required    bool
	Description string
	Secret      bool
	Line        int
	From        *Ref // the value comes from an earlier step's result
}

// Step is one step of a phase, ready to execute.
type Step struct {
	Phase       string
	Name        string
	Action      string
	Description string
	Line        int
	// Timeout is the step's own deadline (`timeout:`), zero when it has
	// none and the action's default applies.
	Timeout time.Duration
	// Params are the rendered, converted values keyed by the action's param
	// names; an action reads them with the typed getters of Params.
	Params Params
	// Unresolved names params whose templates referenced runbook params
	// without a value; such a step cannot run until they are --set.
	Unresolved []string

	uses map[string]bool // runbook params its templates reference
	// Expect is the step's assertion on its result table (`expect:`), nil
	// when it has none.
	Expect *Expect
	// Skip, when set, is why the step does nothing: its only_if is empty
	// (onlyif.go).
	Skip string
}

// Where returns "file:line" for messages.
func (s Step) Where(rb *Runbook) string { return fmt.Sprintf("%s:%d", rb.File, s.Line) }

// Problem is one thing wrong with a runbook, located in its file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Problems is every problem found; as an error it reads as one line.
type Problems []Problem

func (ps Problems) Error() string {
	if len(ps) == 1 {
		return ps[0].String()
	}
	return fmt.Sprintf("%s (and %d more; see `irctl runbook validate`)", ps[0], len(ps)-1)
}

// Options are the inputs to Load besides the file.
type Options struct {
	Catalog  Catalog
	Set      map[string]string // --set key=value
	Incident string            // available to templates as {{ .incident }}
	// Results reads earlier steps' recorded results for params with
	// from:; nil leaves those params without a value.
	Results Results
}

// Reserved template names that are not runbook params.
const incidentKey = "incident"

type doc struct {
	APIVersion  string               `yaml:"apiVersion"`
	Kind        string               `yaml:"kind"`
	Name        string               `yaml:"name"`
	Description string               `yaml:"description"`
	Source      string               `yaml:"source"`
	Params      map[string]paramDoc  `yaml:"params"`
	Phases      map[string][]stepDoc `yaml:"phases"`

	Windows         map[string]windowDoc       `yaml:"windows"`
	Escalation      map[string][]escalationDoc `yaml:"escalation"`
	DataCategories  []string                   `yaml:"data_categories"`
	AuthorityNotice string                     `yaml:"authority_notice"`
}

type paramDoc struct {
	Type        Type    `yaml:"type"`
	Default     any     `yaml:"default"`
	Required    bool    `yaml:"required"`
	Description string  `yaml:"description"`
	Secret      bool    `yaml:"secret"`
	From        *refDoc `yaml:"from"`
}

type stepDoc struct {
	Name        string         `yaml:"name"`
	Action      string         `yaml:"action"`
	Description string         `yaml:"description"`
	Timeout     string         `yaml:"timeout"`
	With        map[string]any `yaml:"with"`
	Expect      yaml.Node      `yaml:"expect"`
	OnlyIf      any            `yaml:"only_if"`
	SkipMessage string         `yaml:"skip_message"`
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// Load parses and validates a runbook. Every problem is collected; if there
// are any, the error is a Problems value (exit code 2 in the CLI). Steps
// referencing params that have no value are marked Unresolved rather than
// failing, so a runbook validates without --set; the engine refuses to run
// such a step.
func Load(file string, data []byte, o Options) (*Runbook, error) {
	sum := sha256.Sum256(data)
	rb := &Runbook{File: file, Hash: hex.EncodeToString(sum[:]), Values: map[string]any{}, Phases: map[string][]Step{}, Origins: map[string]*Origin{}}
	var ps Problems
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}

	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	if len(root.Content) == 0 {
		return nil, Problems{{File: file, Msg: "empty runbook"}}
	}
	var d doc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{yamlProblem(file, err)}
		}
		for _, e := range te.Errors {
			ps = append(ps, yamlProblem(file, errors.New(e)))
		}
	}
	top := root.Content[0]
	if d.Kind != "" && d.Kind != "Runbook" {
		add(valueLine(top, "kind"), "kind is %q, want Runbook", d.Kind)
	}
	if d.APIVersion != "" && d.APIVersion != "irctl/v1" {
		add(valueLine(top, "apiVersion"), "apiVersion is %q, want irctl/v1", d.APIVersion)
	}
	if d.Name == "" {
		add(1, "runbook has no name")
	}
	rb.Name, rb.Description, rb.Source = d.Name, d.Description, d.Source

	// Params, in file order.
	paramsNode := child(top, "params")
	for _, name := range keysInOrder(paramsNode, sortedKeys(d.Params)) {
		pd := d.Params[name]
		line := keyLine(paramsNode, name)
		p := Param{Name: name, Type: pd.Type, Default: pd.Default, Required: pd.Required, Description: pd.Description, Secret: pd.Secret, Line: line}
		if p.Type == "" {
			p.Type = String
		}
		if name == incidentKey {
			add(line, "param name %q is reserved", name)
			continue
		}
		if !runbookParamTypes[p.Type] {
			add(line, "param %s: unknown type %q (want one of string, int, bool, duration, strings, ints, cidrs, ips)", name, p.Type)
			continue
		}
		if pd.From != nil {
			fromLine := valueLine(child(paramsNode, name), "from")
			ref, err := parseRef(pd.From, fromLine)
			switch {
			case err != nil:
				add(fromLine, "param %s: %v", name, err)
				continue
			case !listTypes[p.Type]:
				add(fromLine, "param %s: from: needs a list type (strings, ints, cidrs, ips), not %s: a result column has many values", name, p.Type)
				continue
			case p.Default != nil:
				add(fromLine, "param %s: a param with from: takes no default: until %s has a recorded result the steps using it wait for it (or a --set)", name, ref)
				continue
			}
			p.From = ref
		}
		if p.Default != nil {
			v, err := Convert(p.Type, p.Default)
			if err != nil {
				add(line, "param %s: default: %v", name, err)
				continue
			}
			rb.Values[name] = v
		}
		rb.Params = append(rb.Params, p)
	}
	byName := map[string]Param{}
	for _, p := range rb.Params {
		byName[p.Name] = p
	}
	for _, k := range sortedKeys(o.Set) {
		p, ok := byName[k]
		if !ok {
			add(0, "--set %s: the runbook has no param %q%s", k, k, suggest(k, sortedKeys(byName)))
			continue
		}
		v, err := ParseValue(p.Type, o.Set[k])
		if err != nil {
			add(0, "--set %s: %v", k, err)
			continue
		}
		rb.Values[k] = v
	}
	for _, p := range rb.Params {
		if _, set := o.Set[p.Name]; p.From == nil || set {
			continue
		}
		v, ok, err := resolveRef(rb, p, o)
		if err != nil {
			add(p.From.Line, "%v", err)
		} else if ok {
			rb.Values[p.Name] = v
		}
	}
	for _, p := range rb.Params {
		if p.Secret {
			rb.Secrets = append(rb.Secrets, secretStrings(rb.Values[p.Name])...)
		}
	}
	data2 := map[string]any{incidentKey: o.Incident}
	for k, v := range rb.Values {
		data2[k] = v
	}

	// Phases and steps.
	phasesNode := child(top, "phases")
	for _, phase := range keysInOrder(phasesNode, sortedKeys(d.Phases)) {
		phaseLine := keyLine(phasesNode, phase)
		if !IsPhase(phase) {
			add(phaseLine, "unknown phase %q (phases: %s)", phase, strings.Join(Phases, ", "))
			continue
		}
		seq := child(phasesNode, phase)
		seen := map[string]int{}
		for i, sd := range d.Phases[phase] {
			var stepNode *yaml.Node
			if seq != nil && i < len(seq.Content) {
				stepNode = seq.Content[i]
			}
			line := phaseLine
			if stepNode != nil {
				line = stepNode.Line
			}
			st := Step{Phase: phase, Name: sd.Name, Action: sd.Action, Description: sd.Description, Line: line}
			if st.Name == "" {
				st.Name = fmt.Sprintf("%s-%d", sd.Action, i+1)
			}
			if prev, dup := seen[st.Name]; dup {
				add(line, "step name %q is used twice in phase %s (first at line %d)", st.Name, phase, prev)
			}
			seen[st.Name] = line
			if sd.Timeout != "" {
				d, err := ParseDuration(sd.Timeout)
				if err == nil && d == 0 {
					err = fmt.Errorf("%q is not a positive duration", sd.Timeout)
				}
				if err != nil {
					add(valueLine(stepNode, "timeout"), "step %s: timeout: %v", st.Name, err)
				}
				st.Timeout = d
			}
			if sd.Action == "" {
				add(line, "step %s has no action", st.Name)
				rb.Phases[phase] = append(rb.Phases[phase], st)
				continue
			}
			spec, ok := o.Catalog.Spec(sd.Action)
			if !ok {
				add(valueLine(stepNode, "action"), "step %s: unknown action %q%s (see `irctl actions`)", st.Name, sd.Action, suggest(sd.Action, catalogNames(o.Catalog)))
				rb.Phases[phase] = append(rb.Phases[phase], st)
				continue
			}
			for _, p := range checkStep(&st, spec, &sd.Expect, stepNode) {
				add(p.Line, "%s", p.Msg)
			}
			withNode := child(stepNode, "with")
			st.uses = paramRefs(sd.With)
			st.Params = Params{spec: &spec, vals: map[string]any{}}
			unresolved := map[string]bool{}
			defs := map[string]ParamDef{}
			for _, pd := range spec.Params {
				defs[pd.Name] = pd
			}
			for _, k := range sortedKeys(sd.With) {
				kl := keyLine(withNode, k)
				if kl == 0 {
					kl = line
				}
				pd, ok := defs[k]
				if !ok {
					hint := suggest(k, paramNames(spec))
					if k == "only_if" || k == "skip_message" {
						hint = " (only_if and skip_message are fields of the step, next to action:, not under with:)"
					}
					add(kl, "step %s: action %s has no param %q%s", st.Name, sd.Action, k, hint)
					continue
				}
				if pd.SQL && hasTemplate(sd.With[k]) {
					add(kl, "step %s: param %s is SQL text, where templates are refused ({{ }} would splice values into the statement): "+
						"write $1, $2... placeholders and bind the values with %s: [\"{{ .name }}\"]", st.Name, k, argsParamFor(k))
					continue
				}
				rendered, missing, err := render(sd.With[k], data2)
				if err != nil {
					add(kl, "step %s: param %s: %v", st.Name, k, err)
					continue
				}
				if len(missing) > 0 {
					st.Unresolved = append(st.Unresolved, missing...)
					unresolved[k] = true
					continue
				}
				v, err := Convert(pd.Type, rendered)
				if err != nil {
					add(kl, "step %s: param %s: %v", st.Name, k, err)
					continue
				}
				st.Params.vals[k] = v
			}
			// Defaults go in only for params the step left out: one it
			// gave but cannot resolve yet stays unset (the step cannot run).
			st.Params.fillDefaults(unresolved)
			for _, pd := range spec.Params {
				if _, set := sd.With[pd.Name]; pd.Required && !set {
					add(line, "step %s: action %s needs param %q", st.Name, sd.Action, pd.Name)
				}
			}
			loadOnlyIf(&st, &sd, stepNode, data2, add)
			if st.Skip != "" {
				// What it would lack or get wrong does not matter: it
				// does not run.
				st.Unresolved = nil
			}
			if spec.Validate != nil && len(st.Unresolved) == 0 && st.Skip == "" {
				if err := spec.Validate(st.Params); err != nil {
					add(line, "step %s: %v", st.Name, err)
				}
			}
			sort.Strings(st.Unresolved)
			st.Unresolved = dedupe(st.Unresolved)
			rb.Phases[phase] = append(rb.Phases[phase], st)
		}
	}
	loadClocks(rb, &d, top, data2, add)
	checkRefs(rb, add)
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
		return rb, ps
	}
	return rb, nil
}

func yamlProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	p := Problem{File: file, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &p.Line)
		p.Msg = m[2]
	}
	if m := unknownField.FindStringSubmatch(p.Msg); m != nil {
		p.Msg = fmt.Sprintf("unknown field %q", m[1])
	}
	return p
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func keyLine(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return 0
}

func valueLine(n *yaml.Node, key string) int {
	if c := child(n, key); c != nil {
		return c.Line
	}
	if n != nil {
		return n.Line
	}
	return 0
}

// keysInOrder returns the keys of a mapping node in file order, falling back
// to fallback when the node is missing.
func keysInOrder(n *yaml.Node, fallback []string) []string {
	if n == nil || n.Kind != yaml.MappingNode {
		return fallback
	}
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}

func dedupe(ss []string) []string {
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}

type namer interface{ Names() []string }

func catalogNames(c Catalog) []string {
	if n, ok := c.(namer); ok {
		return n.Names()
	}
	return nil
}

func paramNames(s Spec) []string {
	var out []string
	for _, p := range s.Params {
		out = append(out, p.Name)
	}
	return out
}
