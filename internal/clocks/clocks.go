package clocks

import (
	"time"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// States of a clock.
const (
	// A phase window or deadline: complete in time, complete after its
	// deadline, not complete and still within it, not complete and past it.
	Met     = "met"
	Late    = "late"
	Running = "running"
	Overdue = "overdue"
	// An escalation: delivered in time (Done) or late (Late); not
	// delivered yet and within its time (Due) or past it (Overdue);
	// Manual is an out-of-band channel irctl cannot see.
	Done   = "done"
	Due    = "due"
	Manual = "manual"
)

// GDPRWindow is GDPR art. 33's: the supervisory authority is notified
// within 72 hours of becoming aware of a personal data breach, counted
// here from the declaration.
const GDPRWindow = 72 * time.Hour

// Clocks are an incident's clocks at a moment.
type Clocks struct {
	Incident   string    `json:"incident"`
	Severity   string    `json:"severity"`
	Status     string    `json:"status"`
	DeclaredAt time.Time `json:"declared_at"`
	// Now is when they were read; once the incident is closed the clocks
	// stop at ClosedAt and Now is that time.
	Now      time.Time  `json:"now"`
	ClosedAt *time.Time `json:"closed_at,omitempty"`
	ClosedBy string     `json:"closed_by,omitempty"`
	Elapsed  Duration   `json:"elapsed"`

	Phases         []PhaseClock      `json:"phases"`
	Escalations    []EscalationClock `json:"escalations"`
	DataCategories []string          `json:"data_categories"`
	// GDPR is the 72-hour deadline, nil unless the runbook's data
	// categories include personal data.
	GDPR *Deadline `json:"gdpr,omitempty"`
}

// PhaseClock is a phase's window.
type PhaseClock struct {
	Phase       string     `json:"phase"`
	From        Duration   `json:"from"`
	To          Duration   `json:"to"`
	Deadline    time.Time  `json:"deadline"`
	State       string     `json:"state"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

// EscalationClock is one row of the escalation matrix for the incident's
// severity.
type EscalationClock struct {
	Who        string     `json:"who"`
	Contact    string     `json:"contact,omitempty"`
	Step       string     `json:"step,omitempty"`
	Channel    string     `json:"channel,omitempty"`
	Within     Duration   `json:"within"`
	DataBreach bool       `json:"data_breach,omitempty"`
	Due        time.Time  `json:"due"`
	State      string     `json:"state"`
	SentAt     *time.Time `json:"sent_at,omitempty"`
}

// Deadline is a legal deadline: Met/Late once the notice step delivered,
// else Running/Overdue. Step is empty when the runbook names no notice
// step, and the deadline can only be Running or Overdue.
type Deadline struct {
	Due    time.Time  `json:"due"`
	Step   string     `json:"step,omitempty"`
	State  string     `json:"state"`
	SentAt *time.Time `json:"sent_at,omitempty"`
}

// Duration marshals as Go's duration text ("1h0m0s"), which people and
// tools both read.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Compute reads the incident's clocks at now from the journal's records
// and the runbook (nil: only the elapsed time and status). Clocks run from
// the declaration; a closed incident's stop at its close.
func Compute(inc *incident.Incident, rb *runbook.Runbook, recs []incident.Record, now time.Time) *Clocks {
	p := Read(recs, rb)
	return FromProgress(inc, rb, p, now)
}

// FromProgress is Compute from an already read Progress.
func FromProgress(inc *incident.Incident, rb *runbook.Runbook, p *Progress, now time.Time) *Clocks {
	decl := inc.DeclaredAt.UTC()
	c := &Clocks{Incident: inc.ID, Severity: inc.Severity, Status: p.Status(), DeclaredAt: decl,
		Phases: []PhaseClock{}, Escalations: []EscalationClock{}, DataCategories: []string{}}
	if p.Closed != nil {
		t := p.Closed.Time.UTC()
		c.ClosedAt, c.ClosedBy = &t, p.Closed.Operator
		now = t
	}
	c.Now = now.UTC()
	c.Elapsed = Duration(c.Now.Sub(decl))
	if rb == nil {
		return c
	}
	c.DataCategories = append(c.DataCategories, rb.DataCategories...)
	for _, w := range rb.Windows {
		pc := PhaseClock{Phase: w.Phase, From: Duration(w.From), To: Duration(w.To), Deadline: decl.Add(w.To)}
		var done time.Time
		if ph := p.Phase(w.Phase); ph != nil && ph.Complete {
			done = ph.CompletedAt
		}
		pc.State, pc.CompletedAt = judge(pc.Deadline, done, c.Now, Met)
		c.Phases = append(c.Phases, pc)
	}
	for _, e := range rb.EscalationFor(inc.Severity) {
		ec := EscalationClock{Who: e.Who, Contact: e.Contact, Step: e.Step, Channel: e.Channel, Within: Duration(e.Within), DataBreach: e.DataBreach, Due: decl.Add(e.Within)}
		if e.Step == "" {
			ec.State = Manual
		} else {
			ec.State, ec.SentAt = judge(ec.Due, sentAt(p, e.Step), c.Now, Done)
			if ec.State == Running {
				ec.State = Due
			}
		}
		c.Escalations = append(c.Escalations, ec)
	}
	if rb.PersonalData() {
		g := &Deadline{Due: decl.Add(GDPRWindow), Step: rb.AuthorityNotice}
		var sent time.Time
		if g.Step != "" {
			sent = sentAt(p, g.Step)
		}
		g.State, g.SentAt = judge(g.Due, sent, c.Now, Met)
		c.GDPR = g
	}
	return c
}

// judge is a deadline's state: done (at a non-zero time) by the deadline
// is ok, after it Late; not done, Running until the deadline and Overdue
// from it on.
func judge(deadline, done, now time.Time, ok string) (string, *time.Time) {
	if !done.IsZero() {
		t := done.UTC()
		if t.After(deadline) {
			return Late, &t
		}
		return ok, &t
	}
	if now.Before(deadline) {
		return Running, nil
	}
	return Overdue, nil
}

// sentAt is when the notify step first delivered, zero if never.
func sentAt(p *Progress, step string) time.Time {
	if s := p.Step("notify", step); s != nil {
		return s.SentAt
	}
	return time.Time{}
}

// StandsOut reports whether the state is one to make stand out: past its
// deadline, done or not.
func StandsOut(state string) bool { return state == Overdue || state == Late }
