package runbook

import (
	"errors"
	"strings"
	"testing"
)

func TestOnlyIfSkipsAStepWhenEmpty(t *testing.T) {
	cat := catalog{"k8s.restart": {Name: "k8s.restart", Params: []ParamDef{{Name: "deployment", Type: String}},
		// The action refuses an empty deployment: a skipped step never
		// reaches it.
		Validate: func(p Params) error {
			if p.String("deployment") == "" {
				return errors.New("deployment is required")
			}
			return nil
		}}}
	doc := `apiVersion: irctl/v1
kind: Runbook
name: o
params:
  deployment: {default: ""}
  ips: {type: strings, default: []}
phases:
  contain:
    - name: restart
      action: k8s.restart
      only_if: "{{ .deployment }}"
      skip_message: no deployment given
      with: {deployment: "{{ .deployment }}"}
    - name: lookup
      action: k8s.restart
      only_if: "{{ .ips }}"
      with: {deployment: x}
`
	rb, err := Load("o.yaml", []byte(doc), Options{Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	restart, lookup := rb.Phases["contain"][0], rb.Phases["contain"][1]
	if restart.SkipSummary() != "skipped: no deployment given" || lookup.SkipSummary() != "skipped: only_if is empty" {
		t.Fatalf("skips: %q, %q", restart.Skip, lookup.Skip)
	}
	rb, err = Load("o.yaml", []byte(doc), Options{Catalog: cat, Set: map[string]string{"deployment": "web", "ips": "203.0.113.7"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := rb.Phases["contain"]; s[0].Skip != "" || s[1].Skip != "" {
		t.Fatalf("given values still skip: %q, %q", s[0].Skip, s[1].Skip)
	}
	// A param without a value leaves the step waiting for it.
	rb, err = Load("o.yaml", []byte(strings.Replace(doc, "deployment: {default: \"\"}", "deployment: {}", 1)), Options{Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	if s := rb.Phases["contain"][0]; s.Skip != "" || strings.Join(s.Unresolved, ",") != "deployment" {
		t.Fatalf("unresolved only_if: skip %q, unresolved %v", s.Skip, s.Unresolved)
	}
	// skip_message alone is a mistake, reported with its line.
	bad := strings.Replace(doc, "      only_if: \"{{ .ips }}\"\n", "      skip_message: nothing\n", 1)
	if _, err := Load("o.yaml", []byte(bad), Options{Catalog: cat}); err == nil || !strings.Contains(err.Error(), "o.yaml:16: step lookup: skip_message without only_if") {
		t.Fatalf("skip_message without only_if: %v", err)
	}
	// only_if: with nothing after it is empty; skip_message is a template.
	null := strings.Replace(doc, "      only_if: \"{{ .deployment }}\"\n      skip_message: no deployment given\n", "      only_if:\n      skip_message: \"no deployment in {{ .ips }}\"\n", 1)
	rb, err = Load("o.yaml", []byte(null), Options{Catalog: cat, Set: map[string]string{"deployment": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := rb.Phases["contain"][0]; s.Skip != "no deployment in []" {
		t.Fatalf("only_if with no value: skip %q", s.Skip)
	}
	// The old place, under with:, says where it goes now.
	old := strings.Replace(doc, "      only_if: \"{{ .deployment }}\"\n      skip_message: no deployment given\n      with: {deployment: \"{{ .deployment }}\"}", "      with: {deployment: \"{{ .deployment }}\", only_if: \"{{ .deployment }}\"}", 1)
	if _, err := Load("o.yaml", []byte(old), Options{Catalog: cat, Set: map[string]string{"deployment": "web"}}); err == nil || !strings.Contains(err.Error(), `has no param "only_if" (only_if and skip_message are fields of the step`) {
		t.Fatalf("only_if under with: %v", err)
	}
}
