package runbook

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// catalog is a fixed set of action specs for loader tests.
type catalog map[string]Spec

func (c catalog) Spec(n string) (Spec, bool) { s, ok := c[n]; return s, ok }
func (c catalog) Names() []string {
	var out []string
	for k := range c {
		out = append(out, k)
	}
	return out
}

var testCatalog = catalog{
	"k8s.label": {Name: "k8s.label", Params: []ParamDef{{Name: "namespace", Type: String, Required: true}, {Name: "labels", Type: Map}}},
	"sql.exec":  {Name: "sql.exec", Params: []ParamDef{{Name: "sql", Type: String, Required: true}, {Name: "args", Type: Any}, {Name: "summary", Type: String}}},
}

func TestLoadReportsEveryProblemWithLine(t *testing.T) {
	data, err := os.ReadFile("../../testdata/runbooks/typos.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load("typos.yaml", data, Options{Catalog: testCatalog, Set: map[string]string{"namespce": "x"}})
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("want Problems, got %v", err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	want := []string{
		`typos.yaml: --set namespce: the runbook has no param "namespce" (did you mean "namespace"?)`,
		`typos.yaml:13: step quarantine: unknown action "k8s.lable" (did you mean "k8s.label"?) (see ` + "`irctl actions`)",
		`typos.yaml:20: step revoke: action sql.exec has no param "argz" (did you mean "args"?)`,
		`typos.yaml:24: step bad-template: param sql: bad template: 1: unclosed action`,
		`typos.yaml:25: step name "revoke" is used twice in phase contain (first at line 16)`,
		`typos.yaml:27: unknown field "wiht"`,
		`typos.yaml:25: step revoke: action sql.exec needs param "sql"`,
		`typos.yaml:33: unknown phase "cleanup" (phases: contain, assess, preserve, eradicate, recover, notify, validate)`,
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %q\ngot:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if !strings.Contains(ps.Error(), "more; see `irctl runbook validate`") {
		t.Errorf("one-line error should point at validate: %s", ps.Error())
	}
}

func TestUnknownTemplateParamIsUnresolvedNotFatal(t *testing.T) {
	data, _ := os.ReadFile("../../testdata/runbooks/typos.yaml")
	rb, _ := Load("typos.yaml", data, Options{Catalog: testCatalog})
	st := rb.Phases["eradicate"][0]
	if !reflect.DeepEqual(st.Unresolved, []string{"namespac"}) {
		t.Fatalf("unresolved = %v", st.Unresolved)
	}
}

const good = `apiVersion: irctl/v1
kind: Runbook
name: good
params:
  ns: {default: prod}
  ids: {type: ints, default: [1]}
  ranges: {type: cidrs, default: ["10.0.0.0/8"]}
  token: {secret: true, required: true}
phases:
  contain:
    - name: a
      action: sql.exec
      with:
        sql: UPDATE users SET disabled_at = now() WHERE id = ANY($1)
        args: ["{{ .ids }}", "{{ .ranges }}", "ns-{{ .ns }}"]
        summary: "{{ .token }}"
`

func TestSetKeepsTypesAndRejectsBadValues(t *testing.T) {
	rb, err := Load("good.yaml", []byte(good), Options{Catalog: testCatalog, Set: map[string]string{"ids": "7, 13,21", "ranges": "10.0.0.0/8,fd00::/8", "token": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	st := rb.Phases["contain"][0]
	args := st.Params.Any("args").([]any)
	if !reflect.DeepEqual(args[0], []int64{7, 13, 21}) {
		t.Errorf("ids = %#v", args[0])
	}
	if !reflect.DeepEqual(args[1], []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}) {
		t.Errorf("ranges = %#v", args[1])
	}
	if args[2] != "ns-prod" {
		t.Errorf("templated string = %#v", args[2])
	}
	if d := st.Params.Display(testCatalog["sql.exec"], rb.Secrets); d["summary"] != "[redacted]" {
		t.Errorf("secret param value shown: %v", d["summary"])
	}

	for _, tc := range []struct{ set, want string }{
		{"ids=7,x", `--set ids: "x" is not an integer id`},
		{"ranges=10.1.2.3/8", `--set ranges: "10.1.2.3/8" has host bits set (did you mean 10.0.0.0/8?)`},
		{"ranges=10.0.0.0/33", `--set ranges: "10.0.0.0/33" is not an IP prefix`},
		{"ranges=1.2.3.4'; DROP TABLE users;--", `is not an IP prefix`},
	} {
		k, v, _ := strings.Cut(tc.set, "=")
		_, err := Load("good.yaml", []byte(good), Options{Catalog: testCatalog, Set: map[string]string{k: v, "token": "t"}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: got %v, want %q", tc.set, err, tc.want)
		}
	}
}

func TestMissingRequiredParamLeavesStepUnresolved(t *testing.T) {
	rb, err := Load("good.yaml", []byte(good), Options{Catalog: testCatalog})
	if err != nil {
		t.Fatal(err)
	}
	if got := rb.Phases["contain"][0].Unresolved; !reflect.DeepEqual(got, []string{"token"}) {
		t.Fatalf("unresolved = %v", got)
	}
}

func TestParseDuration(t *testing.T) {
	for in, ok := range map[string]bool{"7d": true, "24h": true, "90m": true, "-1h": false, "d": false, "7days": false} {
		if _, err := ParseDuration(in); (err == nil) != ok {
			t.Errorf("ParseDuration(%q) err = %v", in, err)
		}
	}
}
