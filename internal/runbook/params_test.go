package runbook

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var defaultsSpec = Spec{Name: "k8s.drain", Params: []ParamDef{
	{Name: "namespace", Type: String, Required: true},
	{Name: "timeout", Type: Duration, Default: 2 * time.Minute},
	{Name: "ignore_daemonsets", Type: Bool, Default: true},
	{Name: "grace_period", Type: Int, Default: int64(-1)},
	{Name: "selector", Type: Map, Default: map[string]string{"quarantine": "true"}},
	{Name: "force", Type: Bool},
}}

const defaultsRunbook = `apiVersion: irctl/v1
kind: Runbook
name: d
params:
  wait: {type: duration}
phases:
  contain:
    - name: omitted
      action: k8s.drain
      with: {namespace: prod}
    - name: given
      action: k8s.drain
      with: {namespace: prod, timeout: 10s, ignore_daemonsets: false, grace_period: 5}
    - name: unresolved
      action: k8s.drain
      with: {namespace: prod, timeout: "{{ .wait }}"}
`

func TestLoaderFillsDefaultsOnlyForOmittedParams(t *testing.T) {
	rb, err := Load("d.yaml", []byte(defaultsRunbook), Options{Catalog: catalog{"k8s.drain": defaultsSpec}})
	if err != nil {
		t.Fatal(err)
	}
	steps := rb.Phases["contain"]
	omitted, given, unresolved := steps[0].Params, steps[1].Params, steps[2].Params
	if omitted.Duration("timeout") != 2*time.Minute || !omitted.Bool("ignore_daemonsets") || omitted.Int("grace_period") != -1 || omitted.Bool("force") {
		t.Errorf("defaults not filled: %v", omitted.Display(defaultsSpec, nil))
	}
	if given.Duration("timeout") != 10*time.Second || given.Bool("ignore_daemonsets") || given.Int("grace_period") != 5 {
		t.Errorf("given values overridden: %v", given.Display(defaultsSpec, nil))
	}
	// A param the step gives but cannot resolve yet is not silently
	// replaced by its default.
	if unresolved.Has("timeout") || !reflect.DeepEqual(steps[2].Unresolved, []string{"wait"}) {
		t.Errorf("unresolved timeout = %v (%v)", unresolved.Duration("timeout"), steps[2].Unresolved)
	}
	// The journal records the values used, defaults included.
	if d := omitted.Display(defaultsSpec, nil); d["timeout"] != "2m0s" || d["force"] != nil {
		t.Errorf("display = %v", d)
	}
	// A default map is the step's own copy.
	omitted.Map("selector")["x"] = "y"
	if len(defaultsSpec.Params[4].Default.(map[string]string)) != 1 {
		t.Error("a step's map default aliases the spec's")
	}
}

// mustPanic returns the panic message of fn, failing the test if it does
// not panic.
func mustPanic(t *testing.T, fn func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("no panic")
		}
		msg, _ = r.(string)
	}()
	fn()
	return ""
}

// An action reading a param its spec does not declare (a typo'd key)
// fails loudly the first time a test runs that read.
func TestUndeclaredParamReadPanics(t *testing.T) {
	p := defaultsSpec.MustBind(map[string]any{"namespace": "prod"})
	if p.String("namespace") != "prod" {
		t.Fatal("declared read failed")
	}
	msg := mustPanic(t, func() { _ = p.String("namspace") })
	if !strings.Contains(msg, `action k8s.drain reads param "namspace", which its spec does not declare (did you mean "namespace"?)`) {
		t.Errorf("message = %q", msg)
	}
	for name, read := range map[string]func(){
		"Has":      func() { p.Has("timout") },
		"Int":      func() { p.Int("grace") },
		"Any":      func() { p.Any("sql") },
		"mistyped": func() { p.Int("timeout") },
		"unbound":  func() { Params{}.String("namespace") },
	} {
		if msg := mustPanic(t, read); msg == "" {
			t.Errorf("%s: empty panic message", name)
		}
	}
}

func TestBindConvertsAndRejectsUndeclared(t *testing.T) {
	p, err := defaultsSpec.Bind(map[string]any{"namespace": "prod", "grace_period": 3, "timeout": "7d"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Int("grace_period") != 3 || p.Duration("timeout") != 7*24*time.Hour || !p.Bool("ignore_daemonsets") {
		t.Errorf("bound = %v", p.Display(defaultsSpec, nil))
	}
	if _, err := defaultsSpec.Bind(map[string]any{"namspace": "prod"}); err == nil || !strings.Contains(err.Error(), `did you mean "namespace"`) {
		t.Errorf("undeclared name: %v", err)
	}
	if _, err := defaultsSpec.Bind(map[string]any{"force": "maybe"}); err == nil {
		t.Error("bad bool accepted")
	}
	if q := p.With("force", true); !q.Bool("force") || p.Bool("force") {
		t.Error("With must copy")
	}
}

func TestSpecCheckRejectsBadDefaults(t *testing.T) {
	if err := defaultsSpec.Check(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []ParamDef{
		{Name: "n", Type: Int, Default: 5},         // int, not int64: Int would return 0
		{Name: "t", Type: Duration, Default: "2m"}, // text, not a time.Duration
		{Name: "r", Type: String, Required: true, Default: "x"},
		{Name: "x", Type: "float"},
	} {
		if err := (Spec{Name: "a", Params: []ParamDef{d}}).Check(); err == nil {
			t.Errorf("%+v accepted", d)
		}
	}
}
