// Package clocks reads an incident's journal against its runbook: what
// each step and phase did and when each phase completed (Progress), the
// incident's status, and its clocks: elapsed time, phase windows,
// escalations and the GDPR deadline (Compute). The engine's notification
// messages, `irctl status`, `irctl close` and the incident report all read
// the journal through here, so they agree.
package clocks

import (
	"strings"
	"time"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// Incident statuses, in the order they advance.
const (
	Declared   = "Declared"
	Contained  = "Contained"
	Eradicated = "Eradicated"
	Recovered  = "Recovered"
	Closed     = "Closed"
)

// statusPhases are the phases whose completion names the status.
var statusPhases = []struct{ phase, status string }{{"contain", Contained}, {"eradicate", Eradicated}, {"recover", Recovered}}

// Step is what the journal records of one runbook step (real runs only:
// dry runs change nothing and are left out).
type Step struct {
	Phase, Step, Action string
	// Applied says the step has an outcome record; the fields below are
	// its last one.
	Applied bool
	Result  string
	Changed int
	Failed  int // targets that failed
	Time    time.Time
	// Done says its last record is a success (an outcome without error or
	// failed targets, or a noop), since DoneAt.
	Done   bool
	DoneAt time.Time
	// SentAt is when it first delivered a notification (a Sent key).
	SentAt time.Time
}

// Phase is what the journal records of one phase of the runbook.
type Phase struct {
	Phase string
	Steps []*Step // the runbook's steps, in order
	// Complete says every step of the phase is done; CompletedAt is when
	// the last of them became done.
	Complete    bool
	CompletedAt time.Time
}

// Progress is the journal read against the runbook.
type Progress struct {
	Phases []Phase // runbook.Phases order, phases with steps only
	// Closed is the `irctl close` record, nil while the incident is open.
	Closed *incident.Record
}

type key struct{ phase, step string }

// Read derives the progress from the journal's records. A step's records
// are matched by phase and name; a later failure undoes an earlier
// success (the step is not done any more).
func Read(recs []incident.Record, rb *runbook.Runbook) *Progress {
	steps := map[key]*Step{}
	p := &Progress{}
	for _, r := range recs {
		if r.Kind == incident.KindClose && p.Closed == nil {
			rc := r // the first close counts: closing again changes nothing
			p.Closed = &rc
		}
	}
	for _, r := range recs {
		if r.Step == "" || r.DryRun != "none" {
			continue
		}
		k := key{r.Phase, r.Step}
		s := steps[k]
		if s == nil {
			s = &Step{Phase: r.Phase, Step: r.Step, Action: r.Action}
			steps[k] = s
		}
		var done bool
		switch r.Kind {
		case incident.KindNoop:
			done = true
		case incident.KindOutcome:
			s.Applied, s.Result, s.Time, s.Action = true, r.Result, r.Time, r.Action
			s.Changed = 0
			if r.Changed != nil {
				s.Changed = *r.Changed
			}
			s.Failed = CountFailed(r)
			done = r.Error == "" && s.Failed == 0
			if len(r.Sent) > 0 && s.SentAt.IsZero() {
				s.SentAt = r.Time
			}
		default:
			continue
		}
		if done && !s.Done {
			s.DoneAt = r.Time
		}
		s.Done = done
	}
	if rb == nil {
		return p
	}
	for _, ph := range runbook.Phases {
		rs := rb.Phases[ph]
		if len(rs) == 0 {
			continue
		}
		pp := Phase{Phase: ph, Complete: true}
		for _, st := range rs {
			s := steps[key{ph, st.Name}]
			if s == nil {
				s = &Step{Phase: ph, Step: st.Name, Action: st.Action}
			}
			pp.Steps = append(pp.Steps, s)
			if !s.Done {
				pp.Complete = false
			} else if s.DoneAt.After(pp.CompletedAt) {
				pp.CompletedAt = s.DoneAt
			}
		}
		if !pp.Complete {
			pp.CompletedAt = time.Time{}
		}
		p.Phases = append(p.Phases, pp)
	}
	return p
}

// Phase returns the named phase's progress, nil when the runbook has no
// steps in it.
func (p *Progress) Phase(name string) *Phase {
	for i := range p.Phases {
		if p.Phases[i].Phase == name {
			return &p.Phases[i]
		}
	}
	return nil
}

// Step finds a step of the runbook by phase and name.
func (p *Progress) Step(phase, name string) *Step {
	if ph := p.Phase(phase); ph != nil {
		for _, s := range ph.Steps {
			if s.Step == name {
				return s
			}
		}
	}
	return nil
}

// Status is the incident's status: Closed once closed, else the last of
// Contained, Eradicated and Recovered whose phase is complete, else
// Declared.
func (p *Progress) Status() string {
	if p.Closed != nil {
		return Closed
	}
	st := Declared
	for _, sp := range statusPhases {
		if ph := p.Phase(sp.phase); ph != nil && ph.Complete {
			st = sp.status
		}
	}
	return st
}

// ValidatePassed says whether the validate phase is complete: every
// validate step's last record a success.
func (p *Progress) ValidatePassed() bool {
	ph := p.Phase("validate")
	return ph != nil && ph.Complete
}

// CountFailed is the number of failed targets an outcome records.
func CountFailed(r incident.Record) int {
	if len(r.Failed) == 0 {
		return 0
	}
	return strings.Count(string(r.Failed), `"target"`)
}
