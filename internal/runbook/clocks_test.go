package runbook

import (
	"strings"
	"testing"
	"time"
)

var clockCatalog = catalog{
	"k8s.label":    testCatalog["k8s.label"],
	"notify.email": {Name: "notify.email", Params: []ParamDef{{Name: "to", Type: Strings}}},
}

const clockRunbook = `apiVersion: irctl/v1
kind: Runbook
name: clocks
params:
  lead: {default: lead@example.com}
  legal: {type: strings, default: [legal@example.com, dpo@example.com]}
windows:
  contain: {from: 0s, to: 60m}
  recover: {from: 4h, to: 1d}
escalation:
  P1: &crit
    - {who: Lead, contact: "{{ .lead }}", step: tell-lead, within: 1m}
    - {who: Legal, contact: "{{ .legal }}", step: tell-legal, within: 15m, data_breach: true}
    - {who: On-call, channel: phone, within: 5m}
  P0: *crit
data_categories: [personal]
authority_notice: tell-legal
phases:
  contain:
    - {name: label, action: k8s.label, with: {namespace: x}}
  recover:
    - {name: unlabel, action: k8s.label, with: {namespace: x}}
  notify:
    - {name: tell-lead, action: notify.email, with: {to: ["{{ .lead }}"]}}
    - {name: tell-legal, action: notify.email, with: {to: "{{ .legal }}"}}
`

func TestClocksLoad(t *testing.T) {
	rb, err := Load("clocks.yaml", []byte(clockRunbook), Options{Catalog: clockCatalog})
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Windows) != 2 || rb.Windows[0] != (Window{Phase: "contain", To: time.Hour, Line: 8}) || rb.Windows[1].To != 24*time.Hour || rb.Windows[1].From != 4*time.Hour {
		t.Errorf("windows %+v", rb.Windows)
	}
	for _, sev := range []string{"P0", "P1"} {
		es := rb.Escalation[sev]
		if len(es) != 3 || es[0].Contact != "lead@example.com" || es[0].Within != time.Minute || es[0].Step != "tell-lead" ||
			es[1].Contact != "legal@example.com, dpo@example.com" || !es[1].DataBreach || es[2].Channel != "phone" || es[2].Step != "" {
			t.Errorf("%s escalation %+v", sev, es)
		}
	}
	if !rb.PersonalData() || rb.AuthorityNotice != "tell-legal" || len(rb.EscalationFor("P1")) != 3 || len(rb.EscalationFor("P2")) != 0 {
		t.Errorf("data %v notice %q", rb.DataCategories, rb.AuthorityNotice)
	}
	// A contact templated from a secret param is never shown.
	rb3, err := Load("clocks.yaml", []byte(strings.Replace(clockRunbook, "lead: {default: lead@example.com}", "lead: {default: lead@example.com, secret: true}", 1)), Options{Catalog: clockCatalog})
	if err != nil || rb3.Escalation["P1"][0].Contact != "[redacted]" {
		t.Errorf("secret contact: %v %+v", err, rb3.Escalation["P1"])
	}
	// Without personal data the data-breach rows drop out.
	rb2, err := Load("clocks.yaml", []byte(strings.Replace(clockRunbook, "[personal]", "[credentials]", 1)), Options{Catalog: clockCatalog})
	if err != nil {
		t.Fatal(err)
	}
	if rb2.PersonalData() || len(rb2.EscalationFor("P1")) != 2 {
		t.Errorf("credentials only: personal %v, rows %+v", rb2.PersonalData(), rb2.EscalationFor("P1"))
	}
}

// Every mistake in the clock blocks is reported with its file:line.
func TestClocksLoadProblems(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"to: 60m}", "to: 60 minutes}", `clocks.yaml:8: windows: contain: to: "60 minutes" is not a duration`},
		{"to: 60m}", "to: 0s}", `clocks.yaml:8: windows: contain: to: "0s" is not a positive duration`},
		{"{from: 4h, to: 1d}", "{from: 2d, to: 1d}", `clocks.yaml:9: windows: recover: from (2d) is after to (1d)`},
		{"  contain: {from", "  contian: {from", `clocks.yaml:8: windows: unknown phase "contian"`},
		{"  recover: {from: 4h", "  validate: {from: 4h", `clocks.yaml:9: windows: phase validate has no steps in this runbook`},
		{"  P0: *crit", "  P9: *crit", `clocks.yaml:15: escalation: unknown severity "P9" (want one of P0, P1, P2, P3, P4)`},
		{"within: 15m,", "within: soon,", `clocks.yaml:13: escalation P1 Legal: within: "soon" is not a duration`},
		{"step: tell-lead,", "step: tell-leed,", `clocks.yaml:12: escalation P1 Lead: step "tell-leed" is not a step of the notify phase (did you mean "tell-lead"?)`},
		{"channel: phone,", "", `clocks.yaml:14: escalation P1 On-call: needs step:`},
		{"channel: phone,", "channel: phone, step: tell-lead,", `clocks.yaml:14: escalation P1 On-call: step: and channel: are exclusive`},
		{"within: 1m}", "withn: 1m}", `clocks.yaml:12: unknown field "withn"`},
		{"[personal]", "[personal, secrets]", `clocks.yaml:16: data_categories: unknown category "secrets"`},
		{"authority_notice: tell-legal", "authority_notice: tell-dpa", `clocks.yaml:17: authority_notice: "tell-dpa" is not a step of the notify phase`},
	} {
		doc := strings.Replace(clockRunbook, tc.old, tc.new, 1)
		_, err := Load("clocks.yaml", []byte(doc), Options{Catalog: clockCatalog})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: got %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
}
