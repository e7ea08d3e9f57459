package drill

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/incident"
)

// The lockout judgement from attempts alone: a credential that got in
// after contain finished fails, naming the step meant to stop it, or the
// runbook's lack of it.
func TestLockoutIsJudgedFromAttemptsAfterContain(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := &Scenario{Name: "s", Runbook: "rb", Attacker: Attacker{Credentials: []Credential{
		{Name: "key", StoppedBy: "contain/revoke"},
		{Name: "bg", StoppedBy: "contain/rotate-bg"},
		{Name: "jwt", StoppedBy: "contain/rotate-jwt"},
	}}}
	at := func(sec int, cred string, status int) Attempt {
		return Attempt{Time: t0.Add(time.Duration(sec) * time.Second), Credential: cred, Status: status}
	}
	attempts := []Attempt{
		at(1, "key", 200), at(3, "key", 401), at(4, "key", 401),
		at(1, "bg", 200), at(4, "bg", 200),
		at(1, "jwt", 200), at(4, "jwt", 200),
	}
	runs := []PhaseRun{{Phase: "contain", Started: t0, Finished: t0.Add(2 * time.Second), Reports: []engine.Report{{Steps: []engine.StepReport{
		{Phase: "contain", Step: "revoke", Status: "applied"}, {Phase: "contain", Step: "rotate-jwt", Status: "applied"},
	}}}}}
	clk := &clocks.Clocks{DeclaredAt: t0, Phases: []clocks.PhaseClock{{Phase: "contain", To: clocks.Duration(time.Hour), State: "met"}}}
	two := 2
	journal := []incident.Record{
		{Kind: incident.KindOutcome, DryRun: "none", Phase: "contain", Step: "revoke", Changed: &two, Irreversible: "revoked keys stay revoked"},
		{Kind: incident.KindOutcome, DryRun: "none", Phase: "contain", Step: "rotate-jwt", Changed: &two},
	}
	s := score(sc, "INC", runs, attempts, clk, journal, Evidence{Verified: true})
	if s.Passed {
		t.Fatal("passed with the attacker still in")
	}
	msgs := map[string]string{}
	for _, c := range s.Cases {
		if c.Group == "lockout" {
			msgs[c.Name] = c.Result + ": " + c.Message
		}
	}
	if msgs["key"] != "pass: " {
		t.Errorf("key: %s", msgs["key"])
	}
	if !strings.Contains(msgs["bg"], "saw 1 of 1") || !strings.Contains(msgs["bg"], "runbook rb has no step rotate-bg in phase contain") {
		t.Errorf("bg: %s", msgs["bg"])
	}
	if !strings.Contains(msgs["jwt"], "step contain/rotate-jwt should lock it out") {
		t.Errorf("jwt: %s", msgs["jwt"])
	}
	if l := s.Lockout[0]; l.LastSuccess == nil || *l.LastSuccess != time.Second || l.Refused != 2 {
		t.Errorf("key: %+v", l)
	}
	for _, c := range s.Cases {
		if c.Group == "undo" && c.Name == "contain/rotate-jwt" && (c.Result != "fail" || !strings.Contains(c.Message, "saw neither")) {
			t.Errorf("a change with no undo: %+v", c)
		}
	}
	if s.Irreversible != 1 {
		t.Errorf("irreversible: %d", s.Irreversible)
	}
	var text, x bytes.Buffer
	s.WriteText(&text)
	if s.TimeToContain != 2*time.Second || !strings.Contains(text.String(), "time to contain (declare to contain finished): 2s, goal under 3s met") {
		t.Errorf("time to contain %s:\n%s", s.TimeToContain, text.String())
	}
	if !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), "no step rotate-bg") {
		t.Errorf("text:\n%s", text.String())
	}
	if err := s.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	var j JUnit
	if err := xml.Unmarshal(x.Bytes(), &j); err != nil || j.Failures != 3 || j.Tests != len(s.Cases) {
		t.Errorf("JUnit: %v %+v", err, j)
	}
}
