// Package drill runs scripted incident drills: a scenario's runbook phases
// run non-interactively on the sandbox while an attacker keeps using what
// was stolen, and the outcome is scored (lockout, phase windows, checks,
// evidence, steps) for people and CI.
package drill

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/exitcode"
)

// Scenario is a declarative drill (testdata/scenarios/NAME.yaml).
type Scenario struct {
	File        string
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Runbook     string   `yaml:"runbook"`
	Severity    string   `yaml:"severity"`
	Attacker    Attacker `yaml:"attacker"`
	// Set is given to every phase as --set NAME=VALUE.
	Set    map[string]string `yaml:"set"`
	Phases []Phase           `yaml:"phases"`
	// KnownFailures are validation checks the sandbox cannot pass, with why:
	// scored as known failures, not as the runbook's.
	KnownFailures []KnownFailure `yaml:"known_failures"`
}

// Attacker is who keeps using the stolen credentials.
type Attacker struct {
	// From are the addresses it calls from (X-Forwarded-For), in turn.
	From     []string `yaml:"from"`
	Interval string   `yaml:"interval"`
	// Path is the orchestrator API path it calls (default /v1/me).
	Path        string       `yaml:"path"`
	Credentials []Credential `yaml:"credentials"`
}

// Credential is one stolen credential and the runbook step meant to lock
// it out.
type Credential struct {
	Name   string `yaml:"name"`
	Header string `yaml:"header"`
	Value  string `yaml:"value"`
	// StoppedBy is PHASE/STEP: the step whose run must lock it out. The
	// score names it when the attacker is not locked out, and judges the
	// lockout from the end of that phase.
	StoppedBy string `yaml:"stopped_by"`
	// Target is what it is used against: orchestrator (the API stand-in,
	// the default) or kube-apiserver.
	Target string `yaml:"target"`
	// Path is the request's path (default /v1/me on the orchestrator).
	Path string `yaml:"path"`
	// ServiceAccount is NAMESPACE/NAME of a compromised ServiceAccount:
	// the drill mints a token for it (TokenRequest), the one the attacker
	// stole, and sends it as a bearer token; no value then.
	ServiceAccount string `yaml:"service_account"`
	// CronJob is NAMESPACE/NAME of the attacker's CronJob: its schedule
	// is the credential. Each attempt fires it as the CronJob controller
	// would (a Job from its template, created with dryRun=All so the drill
	// does not flood the cluster): it gets in while the CronJob exists
	// unsuspended and its Job passes the API server's validation and
	// admission (the sandbox has no policy that would refuse it).
	CronJob string `yaml:"cronjob"`
}

// Phase is one phase run as `irctl PHASE --yes` with its inputs.
type Phase struct {
	Phase string            `yaml:"phase"`
	Set   map[string]string `yaml:"set"`
	// Stdin are --set-stdin params: secrets, never on a command line.
	Stdin map[string]string `yaml:"stdin"`
	// AllowExternal sends external notices (--allow-external): on the
	// sandbox they go to its own receivers.
	AllowExternal bool `yaml:"allow_external"`
}

// KnownFailure is a validation check expected to fail on the sandbox.
type KnownFailure struct {
	Check  string `yaml:"check"`
	Reason string `yaml:"reason"`
}

// Targets of the attacker's requests.
const (
	TargetOrchestrator = "orchestrator"
	TargetKube         = "kube-apiserver"
)

var phaseNames = map[string]bool{"contain": true, "assess": true, "preserve": true, "eradicate": true, "recover": true, "validate": true, "notify": true}

// Interval is the attacker's pause between rounds (default 200ms).
func (s *Scenario) Interval() time.Duration {
	d, err := time.ParseDuration(s.Attacker.Interval)
	if err != nil || d <= 0 {
		return 200 * time.Millisecond
	}
	return d
}

var (
	yamlLine     = regexp.MustCompile(`line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// Load parses a scenario strictly: an unknown field or a missing one is a
// usage error (exit 2) naming file:line.
func Load(file string, data []byte) (*Scenario, error) {
	var probs []string
	add := func(line int, format string, args ...any) {
		probs = append(probs, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErr(file, err)
	}
	if len(root.Content) == 0 {
		return nil, exitcode.New(exitcode.Usage, "%s: empty scenario", file)
	}
	s := &Scenario{File: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		return nil, yamlErr(file, err)
	}
	top := root.Content[0]
	line := func(n *yaml.Node, key string) int {
		for i := 0; n != nil && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
		return 1
	}
	for _, k := range []struct{ key, val string }{{"name", s.Name}, {"runbook", s.Runbook}} {
		if k.val == "" {
			add(1, "%s is required", k.key)
		}
	}
	if len(s.Phases) == 0 {
		add(line(top, "phases"), "phases: at least one phase is required")
	}
	if _, err := time.ParseDuration(s.Attacker.Interval); s.Attacker.Interval != "" && err != nil {
		add(line(top, "attacker"), "attacker.interval: %v", err)
	}
	phasesNode := child(top, "phases")
	for i, p := range s.Phases {
		if !phaseNames[p.Phase] {
			add(item(phasesNode, i), "phases[%d]: unknown phase %q", i, p.Phase)
		}
	}
	credsNode := child(child(top, "attacker"), "credentials")
	for i, c := range s.Attacker.Credentials {
		l := item(credsNode, i)
		switch {
		case c.Name == "":
			add(l, "attacker.credentials[%d]: name is required", i)
		case c.CronJob != "":
			if ns, n, ok := strings.Cut(c.CronJob, "/"); !ok || ns == "" || n == "" || c.Value != "" || c.Header != "" || c.ServiceAccount != "" || c.Path != "" || (c.Target != "" && c.Target != TargetKube) {
				add(l, "attacker.credentials[%d]: cronjob is NAMESPACE/NAME, without header, value, path, service_account or another target", i)
			}
		case c.ServiceAccount != "":
			if ns, n, ok := strings.Cut(c.ServiceAccount, "/"); !ok || ns == "" || n == "" || c.Value != "" || c.Header != "" {
				add(l, "attacker.credentials[%d]: service_account is NAMESPACE/NAME, without header or value (the drill mints the token)", i)
			}
		case c.Header == "" || c.Value == "":
			add(l, "attacker.credentials[%d]: header and value (or service_account, or cronjob) are required", i)
		}
		if c.Target != "" && c.Target != TargetOrchestrator && c.Target != TargetKube {
			add(l, "attacker.credentials[%d]: target is %q, want %s or %s", i, c.Target, TargetOrchestrator, TargetKube)
		}
		if ph, st, ok := strings.Cut(c.StoppedBy, "/"); !ok || !phaseNames[ph] || st == "" {
			add(l, "attacker.credentials[%d]: stopped_by is %q, want PHASE/STEP", i, c.StoppedBy)
		}
	}
	if len(probs) > 0 {
		return nil, exitcode.New(exitcode.Usage, "%s", strings.Join(probs, "; "))
	}
	return s, nil
}

func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []string
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if u := unknownField.FindStringSubmatch(m); u != nil {
			m = strings.Replace(m, u[0], fmt.Sprintf("unknown field %q", u[1]), 1)
		}
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			out = append(out, fmt.Sprintf("%s:%s: %s", file, g[1], g[2]))
		} else {
			out = append(out, file+": "+m)
		}
	}
	return exitcode.New(exitcode.Usage, "%s", strings.Join(out, "; "))
}

func child(n *yaml.Node, key string) *yaml.Node {
	for i := 0; n != nil && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func item(n *yaml.Node, i int) int {
	if n == nil || i >= len(n.Content) {
		return 1
	}
	return n.Content[i].Line
}

// Names lists the shipped scenarios.
func Names() []string {
	ents, _ := fs.ReadDir(irctl.Scenarios, "testdata/scenarios")
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Find loads a shipped scenario by name, or a scenario file by path.
func Find(name string) (*Scenario, error) {
	if strings.HasSuffix(name, ".yaml") || strings.ContainsRune(name, os.PathSeparator) {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, exitcode.Wrap(exitcode.Usage, err)
		}
		return Load(name, data)
	}
	file := "testdata/scenarios/" + name + ".yaml"
	data, err := fs.ReadFile(irctl.Scenarios, file)
	if err != nil {
		return nil, exitcode.New(exitcode.Usage, "no scenario %q (scenarios: %s)", name, strings.Join(Names(), ", "))
	}
	return Load(file, data)
}

// expand replaces ${VAR} with env's values; a variable env lacks is an
// error, so a drill never runs with an empty credential.
func expand(file, s string, env map[string]string) (string, error) {
	var missing []string
	out := os.Expand(s, func(k string) string {
		v, ok := env[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return "", exitcode.New(exitcode.Precondition, "%s: ${%s} is not in the sandbox's environment", file, missing[0])
	}
	return out, nil
}

// Expand returns the scenario with every ${VAR} replaced from env.
func (s *Scenario) Expand(env map[string]string) (*Scenario, error) {
	c := *s
	var err error
	ex := func(v string) string {
		if err != nil {
			return v
		}
		var r string
		r, err = expand(s.File, v, env)
		return r
	}
	exMap := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = ex(v)
		}
		return out
	}
	c.Set = exMap(s.Set)
	c.Attacker.Credentials = nil
	for _, cr := range s.Attacker.Credentials {
		cr.Value = ex(cr.Value)
		c.Attacker.Credentials = append(c.Attacker.Credentials, cr)
	}
	c.Phases = nil
	for _, p := range s.Phases {
		c.Phases = append(c.Phases, Phase{Phase: p.Phase, Set: exMap(p.Set), Stdin: exMap(p.Stdin), AllowExternal: p.AllowExternal})
	}
	return &c, err
}
