package runbook

import (
	"fmt"
	"strings"
	"testing"
)

var sqlCatalog = catalog{
	"sql.exec": {Name: "sql.exec", Params: []ParamDef{
		{Name: "sql", Type: String, Required: true, SQL: true}, {Name: "args", Type: Any},
		{Name: "guard", Type: String, SQL: true}, {Name: "guard_args", Type: Any}, {Name: "summary", Type: String},
	}},
}

const injectable = `apiVersion: irctl/v1
kind: Runbook
name: injectable
params:
  who: {default: nobody}
phases:
  contain:
    - name: disable
      action: sql.exec
      with:
        summary: "disable {{ .who }}"
        sql: UPDATE users SET disabled_at = now() WHERE name = '{{ .who }}'
        guard: "SELECT {{ .who }} IS NOT NULL"
`

// A template inside SQL text is refused at load time, with file:line
// naming the param and the way to bind instead; whatever --set says.
func TestTemplatesInSQLParamsAreRefused(t *testing.T) {
	_, err := Load("inj.yaml", []byte(injectable), Options{Catalog: sqlCatalog, Set: map[string]string{"who": "x' OR '1'='1'; --"}})
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("want Problems, got %v", err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	want := []string{
		`inj.yaml:12: step disable: param sql is SQL text, where templates are refused ({{ }} would splice values into the statement): write $1, $2... placeholders and bind the values with args: ["{{ .name }}"]`,
		`inj.yaml:13: step disable: param guard is SQL text, where templates are refused ({{ }} would splice values into the statement): write $1, $2... placeholders and bind the values with guard_args: ["{{ .name }}"]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The same value bound as an arg stays one string value: the step's args
// hold it verbatim and the SQL text is exactly the runbook's.
func TestSQLValuesAreBoundNotSpliced(t *testing.T) {
	rb := strings.NewReplacer(
		`sql: UPDATE users SET disabled_at = now() WHERE name = '{{ .who }}'`, `sql: UPDATE users SET disabled_at = now() WHERE name = $1`,
		`guard: "SELECT {{ .who }} IS NOT NULL"`, `args: ["{{ .who }}"]`,
	).Replace(injectable)
	hostile := "x' OR '1'='1'; --"
	got, err := Load("ok.yaml", []byte(rb), Options{Catalog: sqlCatalog, Set: map[string]string{"who": hostile}})
	if err != nil {
		t.Fatal(err)
	}
	p := got.Phases["contain"][0].Params
	if p.String("sql") != "UPDATE users SET disabled_at = now() WHERE name = $1" {
		t.Errorf("sql = %q", p.String("sql"))
	}
	if args, _ := p.Any("args").([]any); len(args) != 1 || args[0] != hostile {
		t.Errorf("args = %#v, want the value verbatim", p.Any("args"))
	}
}

// Secrets are redacted inside longer values, list-typed secrets included,
// and URL passwords whatever the param.
func TestDisplayRedactsSecretSubstrings(t *testing.T) {
	rb := `apiVersion: irctl/v1
kind: Runbook
name: secrets
params:
  token: {secret: true}
  tokens: {type: strings, secret: true}
phases:
  contain:
    - name: s
      action: sql.exec
      with:
        summary: "Bearer {{ .token }} and {{ join \",\" .tokens }} via http://u:pw@prom/"
        sql: SELECT $1
        args: ["{{ .tokens }}"]
`
	got, err := Load("s.yaml", []byte(rb), Options{Catalog: sqlCatalog, Set: map[string]string{"token": "tok-AAA", "tokens": "tok-BBB,tok-CCC"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Secrets, " ") != "tok-AAA tok-BBB tok-CCC" {
		t.Fatalf("secrets collected: %v", got.Secrets)
	}
	d := got.Phases["contain"][0].Params.Display(sqlCatalog["sql.exec"], got.Secrets)
	out := fmt.Sprint(d)
	for _, leak := range []string{"tok-AAA", "tok-BBB", "tok-CCC", "pw@"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q shown: %s", leak, out)
		}
	}
	if d["summary"] != "Bearer [redacted] and [redacted],[redacted] via http://u:[redacted]@prom/" {
		t.Errorf("summary shown as %q", d["summary"])
	}
}
