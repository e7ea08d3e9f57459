package runbook

import (
	"strings"
	"testing"
)

// warnCatalog knows a destroying action, capture actions and a bystander.
var warnCatalog = catalog{
	"k8s.drain": {Name: "k8s.drain", Params: []ParamDef{{Name: "nodes", Type: Strings}, {Name: "pod_selector", Type: String}}},
	"k8s.delete": {Name: "k8s.delete", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "names", Type: Strings},
		{Name: "selector", Type: String}}},
	"k8s.logs": {Name: "k8s.logs", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "names", Type: Strings},
		{Name: "selector", Type: String}}},
	"k8s.dump":     {Name: "k8s.dump", Params: []ParamDef{{Name: "namespace", Type: String}}},
	"k8s.snapshot": {Name: "k8s.snapshot", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "pvcs", Type: Strings}}},
	"k8s.label":    {Name: "k8s.label", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "selector", Type: String}, {Name: "labels", Type: Map}}},
}

func warningsOf(t *testing.T, yaml string) []string {
	t.Helper()
	rb, err := Load("w.yaml", []byte(yaml), Options{Catalog: warnCatalog})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range Warnings(rb) {
		out = append(out, w.String())
	}
	return out
}

const warnHeader = "apiVersion: irctl/v1\nkind: Runbook\nname: w\nphases:\n"

func TestWarnsWhenDrainComesBeforeEvidence(t *testing.T) {
	// the cluster-compromise runbook's order: drain first, capture the evidence afterwards.
	got := warningsOf(t, warnHeader+`
  contain:
    - name: drain
      action: k8s.drain
      with: {nodes: [node-a]}
    - name: quarantine
      action: k8s.label
      with: {namespace: app, selector: app=web, labels: {quarantine: "true"}}
  preserve:
    - name: logs
      action: k8s.logs
      with: {namespace: app, selector: app=web}
    - name: dump
      action: k8s.dump
`)
	if len(got) != 1 {
		t.Fatalf("want one warning, got %q", got)
	}
	for _, want := range []string{"w.yaml:7:", "step drain (k8s.drain, phase contain) evicts the pods of nodes node-a",
		"logs (k8s.logs, phase preserve, line 14)", "dump (k8s.dump, phase preserve, line 17)", "RFC 3227"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("warning lacks %q:\n%s", want, got[0])
		}
	}
}

func TestNoWarningWhenEvidenceComesFirstOrTargetsDiffer(t *testing.T) {
	for name, yaml := range map[string]string{
		"capture first": `
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, selector: app=web}}
  eradicate:
    - {name: delete, action: k8s.delete, with: {namespace: app, selector: app=web}}
`,
		"other namespace": `
  contain:
    - {name: delete, action: k8s.delete, with: {namespace: other, names: [x]}}
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, selector: app=web}}
`,
		"other pods by name": `
  contain:
    - {name: delete, action: k8s.delete, with: {namespace: app, names: [a, b]}}
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, names: [c]}}
`,
		"disjoint selectors": `
  contain:
    - {name: delete, action: k8s.delete, with: {namespace: app, selector: "app=db"}}
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, selector: "app=web,tier=front"}}
`,
		"drain keeps the quarantined pods": `
  contain:
    - {name: drain, action: k8s.drain, with: {nodes: [n1], pod_selector: "quarantine!=true"}}
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, selector: "quarantine=true"}}
`,
	} {
		if got := warningsOf(t, warnHeader+yaml); len(got) != 0 {
			t.Errorf("%s: unexpected warnings %q", name, got)
		}
	}
}

func TestWarnsOnOverlappingNamesAndSelectors(t *testing.T) {
	got := warningsOf(t, warnHeader+`
  contain:
    - {name: delete, action: k8s.delete, with: {namespace: app, names: [web-1]}}
  preserve:
    - {name: logs, action: k8s.logs, with: {namespace: app, selector: app=web}}
    - {name: snap, action: k8s.snapshot, with: {namespace: app, pvcs: [data]}}
`)
	if len(got) != 1 || !strings.Contains(got[0], "deletes app/web-1 before logs") || !strings.Contains(got[0], "snap (k8s.snapshot") {
		t.Fatalf("warnings: %q", got)
	}
}

// A restart of a workload whose affected pods a k8s.label step detached
// before it replaces only their clean replacements: no warning. Without the
// detach, or with the detach after it, it warns; an only_if left empty
// skips the step, and its warning.
func TestRestartAfterDetachDoesNotWarn(t *testing.T) {
	cat := catalog{
		"k8s.label": {Name: "k8s.label", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "selector", Type: String},
			{Name: "labels", Type: Map}, {Name: "detach", Type: Bool}}},
		"k8s.rollout-restart": {Name: "k8s.rollout-restart", Params: []ParamDef{{Name: "namespace", Type: String}, {Name: "deployment", Type: String}}},
		"k8s.logs":            warnCatalog["k8s.logs"],
	}
	warn := func(detach, onlyIf string) int {
		t.Helper()
		rb, err := Load("w.yaml", []byte(warnHeader+`
  contain:
    - name: quarantine
      action: k8s.label
      with: {namespace: app, selector: app=web, labels: {quarantine: "true"}, detach: `+detach+`}
    - name: restart
      action: k8s.rollout-restart
      with: {namespace: app, deployment: web}`+onlyIf+`
  preserve:
    - name: logs
      action: k8s.logs
      with: {namespace: app, selector: quarantine=true}
`), Options{Catalog: cat})
		if err != nil {
			t.Fatal(err)
		}
		return len(Warnings(rb))
	}
	if n := warn("true", ""); n != 0 {
		t.Errorf("restart after detach: %d warnings, want 0", n)
	}
	if n := warn("false", ""); n != 1 {
		t.Errorf("restart without detach: %d warnings, want 1", n)
	}
	if n := warn("false", "\n      only_if: \"\""); n != 0 {
		t.Errorf("skipped restart: %d warnings, want 0", n)
	}
}
