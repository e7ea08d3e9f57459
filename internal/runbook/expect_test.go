package runbook

import (
	"strings"
	"testing"
)

var expectCatalog = catalog{
	"sql.query": {Name: "sql.query", Table: true, Params: []ParamDef{{Name: "sql", Type: String, Required: true}}},
	"sql.exec":  {Name: "sql.exec", Destructive: true, Params: []ParamDef{{Name: "sql", Type: String, Required: true}}},
	"http.get":  {Name: "http.get", Params: []ParamDef{{Name: "url", Type: String}}},
	"manual":    {Name: "manual", Manual: true, Params: []ParamDef{{Name: "instructions", Type: String}}},
}

func loadSteps(t *testing.T, phase, steps string) (*Runbook, error) {
	t.Helper()
	src := "apiVersion: irctl/v1\nkind: Runbook\nname: x\nphases:\n  " + phase + ":\n" + steps
	return Load("x.yaml", []byte(src), Options{Catalog: expectCatalog})
}

func TestExpectLoads(t *testing.T) {
	rb, err := loadSteps(t, "validate", `    - name: none
      action: sql.query
      with: {sql: "SELECT 1"}
      expect: {value: {lt: 100, ge: 1}, rows: 1}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := rb.Phases["validate"][0].Expect.String(); got != "rows = 1, value < 100, value >= 1" {
		t.Errorf("expect: %q", got)
	}
}

// A bad expectation is refused at load with the line of what is wrong.
func TestBadExpectIsAProblemWithItsLine(t *testing.T) {
	for _, tc := range []struct{ expect, want string }{
		{`{rowz: 0}`, `x.yaml:9: step s: expect: unknown measure "rowz" (want rows or value) (did you mean "rows"?)`},
		{`{rows: -1}`, `x.yaml:9: step s: expect: rows: "-1" is not a row count (want a whole number, 0 or more)`},
		{`{rows: many}`, `x.yaml:9: step s: expect: rows: "many" is not a row count (want a whole number, 0 or more)`},
		{`{value: {lte: 5}}`, `x.yaml:9: step s: expect: value: unknown comparison "lte" (want one of eq, ne, lt, le, gt, ge) (did you mean "lt"?)`},
		{`{value: {lt: abc}}`, `x.yaml:9: step s: expect: value: lt compares numbers, and "abc" is not one`},
		{`{value: [1]}`, `x.yaml:9: step s: expect: value: want a value or a comparison like {le: 5} (eq, ne, lt, le, gt, ge)`},
		{`0`, `x.yaml:9: step s: expect: want a mapping like {rows: 0} or {value: {le: 5}} (measures: rows, value)`},
		{`{value: "{{ .max }}"}`, `x.yaml:9: step s: expect: value: templates are not expanded in expect; write the value itself`},
	} {
		_, err := loadSteps(t, "assess", "    - name: s\n      action: sql.query\n      with: {sql: \"SELECT 1\"}\n      expect: "+tc.expect+"\n")
		ps, ok := err.(Problems)
		if !ok || len(ps) != 1 || ps[0].String() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.expect, err, tc.want)
		}
	}
}

func TestExpectNeedsATable(t *testing.T) {
	_, err := loadSteps(t, "recover", "    - name: s\n      action: http.get\n      expect: {rows: 0}\n")
	if err == nil || !strings.Contains(err.Error(), "x.yaml:8: step s: expect: action http.get returns no table to judge") {
		t.Errorf("err: %v", err)
	}
}

// A validate phase holds read-only checks: it never asks.
func TestValidateRefusesManualSteps(t *testing.T) {
	_, err := loadSteps(t, "validate", "    - name: look\n      action: manual\n      with: {instructions: check the dashboards}\n")
	if err == nil || !strings.Contains(err.Error(), "x.yaml:7: step look: a manual step waits for a person") {
		t.Errorf("err: %v", err)
	}
}

func TestValidateRefusesDestructiveSteps(t *testing.T) {
	_, err := loadSteps(t, "validate", "    - name: fix\n      action: sql.exec\n      with: {sql: \"DELETE FROM x\"}\n")
	if err == nil || !strings.Contains(err.Error(), "x.yaml:7: step fix: action sql.exec changes things and asks first; a validate phase holds read-only checks") {
		t.Errorf("err: %v", err)
	}
}
