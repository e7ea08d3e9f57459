package clocks

import (
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

type catalog map[string]runbook.Spec

func (c catalog) Spec(n string) (runbook.Spec, bool) { s, ok := c[n]; return s, ok }

var testCatalog = catalog{
	"fake.step":    {Name: "fake.step"},
	"notify.email": {Name: "notify.email"},
}

const rbText = `apiVersion: irctl/v1
kind: Runbook
name: clocks
windows:
  contain: {to: 1h}
  recover: {from: 4h, to: 24h}
  validate: {to: 72h}
escalation:
  P1:
    - {who: Lead, step: tell-lead, within: 5m}
    - {who: Legal, step: tell-legal, within: 15m, data_breach: true}
    - {who: On-call, channel: phone, within: 5m}
data_categories: [CATEGORIES]
authority_notice: tell-legal
phases:
  contain:
    - {name: a, action: fake.step}
    - {name: b, action: fake.step}
  eradicate:
    - {name: c, action: fake.step}
  recover:
    - {name: d, action: fake.step}
  notify:
    - {name: tell-lead, action: notify.email}
    - {name: tell-legal, action: notify.email}
  validate:
    - {name: v, action: fake.step}
`

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func load(t *testing.T, categories string) *runbook.Runbook {
	t.Helper()
	rb, err := runbook.Load("clocks.yaml", []byte(strings.Replace(rbText, "CATEGORIES", categories, 1)), runbook.Options{Catalog: testCatalog})
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

var inc = &incident.Incident{ID: "SEC-20261122-001", Severity: "P1", DeclaredAt: t0}

func at(d time.Duration) time.Time { return t0.Add(d) }

func ok(phase, step string, d time.Duration) incident.Record {
	return incident.Record{Kind: incident.KindOutcome, Phase: phase, Step: step, DryRun: "none", Time: at(d)}
}

func sent(step string, d time.Duration) incident.Record {
	r := ok("notify", step, d)
	r.Action, r.Sent = "notify.email", []string{"email:" + step}
	return r
}

func phase(t *testing.T, c *Clocks, name string) PhaseClock {
	t.Helper()
	for _, p := range c.Phases {
		if p.Phase == name {
			return p
		}
	}
	t.Fatalf("no clock for phase %s in %+v", name, c.Phases)
	return PhaseClock{}
}

// A phase's window: met when its last step completed by the deadline (the
// deadline itself included), late after it; while incomplete, running
// before the deadline and overdue from it on.
func TestPhaseWindowBoundaries(t *testing.T) {
	rb := load(t, "personal")
	for _, tc := range []struct {
		name string
		recs []incident.Record
		now  time.Duration
		want string
	}{
		{"not started, before the deadline", nil, 59 * time.Minute, Running},
		{"not started, at the deadline", nil, time.Hour, Overdue},
		{"one step of two done", []incident.Record{ok("contain", "a", time.Minute)}, 2 * time.Hour, Overdue},
		{"complete a minute early", []incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", 59*time.Minute)}, 3 * time.Hour, Met},
		{"complete at the deadline", []incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", time.Hour)}, 3 * time.Hour, Met},
		{"complete a second late", []incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", time.Hour+time.Second)}, 3 * time.Hour, Late},
		{"a noop counts as done", []incident.Record{ok("contain", "a", time.Minute), {Kind: incident.KindNoop, Phase: "contain", Step: "b", DryRun: "none", Time: at(2 * time.Minute)}}, 3 * time.Hour, Met},
		{"a dry run does not count", []incident.Record{ok("contain", "a", time.Minute), {Kind: incident.KindOutcome, Phase: "contain", Step: "b", DryRun: "server", Time: at(2 * time.Minute)}}, 30 * time.Minute, Running},
		{"a later failure undoes the success", []incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", 2*time.Minute), {Kind: incident.KindOutcome, Phase: "contain", Step: "b", DryRun: "none", Error: "boom", Time: at(3 * time.Minute)}}, 2 * time.Hour, Overdue},
		{"failed targets are not done", []incident.Record{ok("contain", "a", time.Minute), {Kind: incident.KindOutcome, Phase: "contain", Step: "b", DryRun: "none", Failed: []byte(`[{"target":"pod/x"}]`), Time: at(2 * time.Minute)}}, 30 * time.Minute, Running},
	} {
		c := Compute(inc, rb, tc.recs, at(tc.now))
		p := phase(t, c, "contain")
		if p.State != tc.want {
			t.Errorf("%s: state %s, want %s", tc.name, p.State, tc.want)
		}
		if !p.Deadline.Equal(at(time.Hour)) || (p.CompletedAt != nil) != (tc.want == Met || tc.want == Late) {
			t.Errorf("%s: deadline %v completed %v", tc.name, p.Deadline, p.CompletedAt)
		}
	}
	// A step done twice completed the first time.
	c := Compute(inc, rb, []incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", 10*time.Minute), ok("contain", "b", 2*time.Hour)}, at(3*time.Hour))
	if p := phase(t, c, "contain"); p.State != Met || !p.CompletedAt.Equal(at(10*time.Minute)) {
		t.Errorf("rerun: %+v", p)
	}
	if c.Elapsed != Duration(3*time.Hour) {
		t.Errorf("elapsed %v", time.Duration(c.Elapsed))
	}
}

// An escalation is done when its notify step delivered by its time, late
// after; undelivered it is due, then overdue. A channel is manual.
func TestEscalationDueAndDone(t *testing.T) {
	rb := load(t, "personal")
	states := func(recs []incident.Record, now time.Duration) []string {
		var out []string
		for _, e := range Compute(inc, rb, recs, at(now)).Escalations {
			out = append(out, e.Who+"="+e.State)
		}
		return out
	}
	for _, tc := range []struct {
		recs []incident.Record
		now  time.Duration
		want string
	}{
		{nil, 4 * time.Minute, "Lead=due Legal=due On-call=manual"},
		{nil, 5 * time.Minute, "Lead=overdue Legal=due On-call=manual"},
		{nil, 15 * time.Minute, "Lead=overdue Legal=overdue On-call=manual"},
		{[]incident.Record{sent("tell-lead", 3*time.Minute)}, 10 * time.Minute, "Lead=done Legal=due On-call=manual"},
		{[]incident.Record{sent("tell-lead", 6*time.Minute), sent("tell-legal", 15*time.Minute)}, time.Hour, "Lead=late Legal=done On-call=manual"},
		// An outcome that delivered nothing (no Sent key) is no escalation.
		{[]incident.Record{ok("notify", "tell-lead", time.Minute)}, 10 * time.Minute, "Lead=overdue Legal=due On-call=manual"},
	} {
		if got := strings.Join(states(tc.recs, tc.now), " "); got != tc.want {
			t.Errorf("at +%v: %s, want %s", tc.now, got, tc.want)
		}
	}
	c := Compute(inc, rb, []incident.Record{sent("tell-lead", 3*time.Minute)}, at(time.Hour))
	if e := c.Escalations[0]; !e.Due.Equal(at(5*time.Minute)) || e.SentAt == nil || !e.SentAt.Equal(at(3*time.Minute)) {
		t.Errorf("lead %+v", e)
	}
	// Another severity has no rows in this matrix.
	p2 := *inc
	p2.Severity = "P2"
	if c := Compute(&p2, rb, nil, at(time.Hour)); len(c.Escalations) != 0 {
		t.Errorf("P2: %+v", c.Escalations)
	}
}

// The GDPR clock runs only when the data categories include personal (or
// health) data: 72 hours from the declaration, met by the authority notice.
func TestGDPROnlyWithPersonalData(t *testing.T) {
	if c := Compute(inc, load(t, "credentials"), nil, at(100*time.Hour)); c.GDPR != nil || len(c.Escalations) != 2 {
		t.Errorf("without personal data: GDPR %+v, escalations %+v", c.GDPR, c.Escalations)
	}
	for _, cat := range []string{"personal", "health"} {
		rb := load(t, cat)
		for _, tc := range []struct {
			recs []incident.Record
			now  time.Duration
			want string
		}{
			{nil, 71 * time.Hour, Running},
			{nil, 72 * time.Hour, Overdue},
			{[]incident.Record{sent("tell-legal", 71*time.Hour)}, 80 * time.Hour, Met},
			{[]incident.Record{sent("tell-legal", 73*time.Hour)}, 80 * time.Hour, Late},
		} {
			c := Compute(inc, rb, tc.recs, at(tc.now))
			if c.GDPR == nil || c.GDPR.State != tc.want || !c.GDPR.Due.Equal(at(72*time.Hour)) || c.GDPR.Step != "tell-legal" {
				t.Errorf("%s at +%v: %+v, want %s", cat, tc.now, c.GDPR, tc.want)
			}
		}
	}
}

// The status advances with the phases completed and ends Closed; closing
// stops the clocks.
func TestStatusAdvancesAndCloseStopsClocks(t *testing.T) {
	rb := load(t, "personal")
	recs := []incident.Record{}
	want := []struct {
		add  []incident.Record
		want string
	}{
		{nil, Declared},
		{[]incident.Record{ok("contain", "a", time.Minute), ok("contain", "b", 2*time.Minute)}, Contained},
		{[]incident.Record{ok("eradicate", "c", time.Hour)}, Eradicated},
		{[]incident.Record{ok("recover", "d", 2*time.Hour)}, Recovered},
		{[]incident.Record{ok("validate", "v", 3*time.Hour)}, Recovered},
		{[]incident.Record{{Kind: incident.KindClose, Operator: "alice@host", Time: at(4 * time.Hour)}}, Closed},
		{[]incident.Record{{Kind: incident.KindClose, Operator: "bob@host", Time: at(5 * time.Hour)}}, Closed},
	}
	for _, w := range want {
		recs = append(recs, w.add...)
		if got := Read(recs, rb).Status(); got != w.want {
			t.Errorf("after %d records: %s, want %s", len(recs), got, w.want)
		}
	}
	if !Read(recs, rb).ValidatePassed() || Read(recs[:4], rb).ValidatePassed() {
		t.Error("ValidatePassed")
	}
	c := Compute(inc, rb, recs, at(100*time.Hour))
	if c.ClosedAt == nil || !c.ClosedAt.Equal(at(4*time.Hour)) || c.ClosedBy != "alice@host" || c.Elapsed != Duration(4*time.Hour) || !c.Now.Equal(at(4*time.Hour)) {
		t.Errorf("closed clocks: %+v", c)
	}
	// Stopped at the close, the GDPR clock (72h) was still running.
	if c.GDPR.State != Running || phase(t, c, "validate").State != Met {
		t.Errorf("GDPR %+v validate %+v", c.GDPR, phase(t, c, "validate"))
	}
}
