package drill

import (
	"fmt"
	"strings"
	"time"

	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/incident"
)

// TimeToContainGoal is the goal for a runbook's contain phase on the
// sandbox with --yes, from `irctl declare` to contain finished.
const TimeToContainGoal = 3 * time.Second

// Score is a drill's outcome: every check it judged, grouped.
type Score struct {
	Scenario    string    `json:"scenario"`
	Runbook     string    `json:"runbook"`
	Incident    string    `json:"incident"`
	DeclaredAt  time.Time `json:"declared_at"`
	ContainedAt time.Time `json:"contained_at"`
	// TimeToContain is from the declaration to contain finished, the
	// figure to keep under TimeToContainGoal (reported, not judged: it
	// depends on the machine).
	TimeToContain time.Duration `json:"time_to_contain"`
	Lockout       []Lockout     `json:"lockout"`
	Phases        []PhaseScore  `json:"phases"`
	Checks        ChecksScore   `json:"validation"`
	Evidence      Evidence      `json:"evidence"`
	Notified      int           `json:"notifications_delivered"`
	StepsFailed   int           `json:"steps_failed_or_partial"`
	// Undoable and Irreversible count the applied changes that `irctl
	// undo` can reverse and those the runbook declares irreversible.
	Undoable     int `json:"changes_undoable"`
	Irreversible int `json:"changes_irreversible"`
	// Known are the scenario's known failures, with why.
	Known  []KnownFailure `json:"known_failures,omitempty"`
	Cases  []Case         `json:"cases"`
	Passed bool           `json:"passed"`
}

// Lockout is the attacker's outcome with one credential.
type Lockout struct {
	Credential string `json:"credential"`
	StoppedBy  string `json:"stopped_by"`
	Attempts   int    `json:"attempts"`
	Successes  int    `json:"successes"`
	// LastSuccess is from the declaration to the last request that got in
	// (negative: before the declaration; empty: none did).
	LastSuccess *time.Duration `json:"last_success_after_declare,omitempty"`
	// JudgedAfter is the phase of StoppedBy: AfterContain counts requests
	// that got in after it finished (goal 0; after contain for the API
	// credentials), Refused those refused then.
	JudgedAfter  string `json:"judged_after"`
	AfterContain int    `json:"successes_after_phase"`
	Refused      int    `json:"refused_after_contain"`
	LockedOut    bool   `json:"locked_out"`
}

// PhaseScore is a phase's time against its window.
type PhaseScore struct {
	Phase    string        `json:"phase"`
	Exit     int           `json:"exit"`
	Ran      time.Duration `json:"ran"`
	Done     time.Duration `json:"done_after_declare"`
	Window   time.Duration `json:"window"`
	State    string        `json:"state"`
	InWindow bool          `json:"in_window"`
}

// ChecksScore is the validate phase's checks.
type ChecksScore struct {
	Passed int `json:"passed"`
	Total  int `json:"total"`
	Known  int `json:"known_failing"`
}

// Evidence is `irctl evidence verify`'s verdict.
type Evidence struct {
	Verified bool   `json:"verified"`
	Message  string `json:"message,omitempty"`
}

// Case is one judged item: a JUnit test case.
type Case struct {
	Group    string        `json:"group"` // lockout, phase, step, check, undo, evidence, report
	Name     string        `json:"name"`
	Result   string        `json:"result"` // pass, fail, skipped
	Message  string        `json:"message,omitempty"`
	Duration time.Duration `json:"duration"`
}

func score(sc *Scenario, id string, runs []PhaseRun, attempts []Attempt, clk *clocks.Clocks, journal []incident.Record, ev Evidence) *Score {
	// When each phase's run ended (its last run, if it ran twice).
	ended := map[string]time.Time{}
	for _, r := range runs {
		ended[r.Phase] = r.Finished
	}
	s := &Score{Scenario: sc.Name, Runbook: sc.Runbook, Incident: id, ContainedAt: ended["contain"], Evidence: ev, Known: sc.KnownFailures}
	if clk != nil {
		s.DeclaredAt = clk.DeclaredAt
	}
	add := func(c Case) { s.Cases = append(s.Cases, c) }

	// Which steps each phase has, from the reports: a credential's
	// stopped_by that names no step is the runbook's gap.
	steps := map[string]bool{}
	for _, r := range runs {
		for _, rep := range r.Reports {
			for _, st := range rep.Steps {
				steps[st.Phase+"/"+st.Step] = true
			}
		}
	}

	for _, c := range sc.Attacker.Credentials {
		phase, step, _ := strings.Cut(c.StoppedBy, "/")
		stopped := ended[phase]
		l := Lockout{Credential: c.Name, StoppedBy: c.StoppedBy, JudgedAfter: phase}
		for _, a := range attempts {
			if a.Credential != c.Name {
				continue
			}
			l.Attempts++
			after := !stopped.IsZero() && a.Time.After(stopped)
			if a.OK() {
				l.Successes++
				d := a.Time.Sub(s.DeclaredAt).Round(time.Millisecond)
				l.LastSuccess = &d
				if after {
					l.AfterContain++
				}
			} else if after && a.Status != 0 {
				l.Refused++
			}
		}
		l.LockedOut = !stopped.IsZero() && l.AfterContain == 0 && l.Refused > 0
		s.Lockout = append(s.Lockout, l)
		cs := Case{Group: "lockout", Name: c.Name, Result: "pass"}
		if !l.LockedOut {
			cs.Result = "fail"
			why := fmt.Sprintf("step %s should lock it out", c.StoppedBy)
			if !steps[c.StoppedBy] {
				why = fmt.Sprintf("runbook %s has no step %s in phase %s to lock it out: add it", sc.Runbook, step, phase)
			}
			switch {
			case stopped.IsZero():
				cs.Message = fmt.Sprintf("expected the %s phase to run and lock it out; the scenario does not run it", phase)
			default:
				cs.Message = fmt.Sprintf("expected 0 successful requests after %s finished, saw %d of %d (%d refused): %s", phase, l.AfterContain, l.AfterContain+l.Refused, l.Refused, why)
			}
		}
		add(cs)
	}

	windows := map[string]clocks.PhaseClock{}
	if clk != nil {
		for _, p := range clk.Phases {
			windows[p.Phase] = p
		}
	}
	for _, r := range runs {
		ps := PhaseScore{Phase: r.Phase, Exit: r.Exit, Ran: r.Finished.Sub(r.Started).Round(time.Millisecond)}
		ps.Done = r.Finished.Sub(s.DeclaredAt).Round(time.Millisecond)
		cs := Case{Group: "phase", Name: r.Phase, Result: "pass", Duration: ps.Ran}
		if w, ok := windows[r.Phase]; ok {
			ps.Window, ps.State = time.Duration(w.To), w.State
			if w.CompletedAt != nil {
				ps.Done = w.CompletedAt.Sub(s.DeclaredAt).Round(time.Millisecond)
			}
			ps.InWindow = !clocks.StandsOut(w.State) && ps.Done <= ps.Window
		} else {
			ps.InWindow = true // the runbook gives it no window
		}
		switch {
		case r.Exit == 1 && r.Phase == "validate" && onlyKnown(sc, r.Reports):
			cs.Message = "exit 1: only known failures failed"
		case r.Exit != 0:
			cs.Result, cs.Message = "fail", fmt.Sprintf("expected exit 0, saw exit %d: %s", r.Exit, firstLine(r.Stderr))
		case !ps.InWindow:
			cs.Result, cs.Message = "fail", fmt.Sprintf("expected done within %s of the declaration, saw %s (%s)", ps.Window, ps.Done, ps.State)
		}
		s.Phases = append(s.Phases, ps)
		if r.Phase == "contain" {
			s.TimeToContain = ps.Done
		}
		add(cs)
		for _, rep := range r.Reports {
			for _, st := range rep.Steps {
				c := stepCase(st, journal)
				if k := sc.known(st.Step); k != nil && st.Phase == "validate" && c.Result == "fail" {
					c.Result, c.Message = "skipped", "known failure: "+k.Reason+" ("+c.Message+")"
				}
				add(c)
				if c.Result == "fail" {
					s.StepsFailed++
				}
			}
			for _, ch := range rep.Checks {
				add(s.checkCase(sc, ch))
			}
		}
	}
	for _, r := range journal {
		if r.DryRun == "none" || r.DryRun == "" {
			s.Notified += len(r.Sent)
		}
		// Every change made is either undoable or declared irreversible.
		if r.Kind == incident.KindOutcome && r.DryRun == "none" && r.Changed != nil && *r.Changed > 0 && r.Error == "" {
			c := Case{Group: "undo", Name: r.Phase + "/" + r.Step, Result: "pass"}
			switch {
			case len(r.Undo) > 0 && string(r.Undo) != "null":
				s.Undoable++
			case r.Irreversible != "":
				s.Irreversible++
				c.Message = "irreversible by design: " + r.Irreversible
			default:
				c.Result = "fail"
				c.Message = fmt.Sprintf("expected an undo record or an irreversible note for %d change(s), saw neither", *r.Changed)
			}
			add(c)
		}
	}

	evc := Case{Group: "evidence", Name: "verify", Result: "pass"}
	if !ev.Verified {
		evc.Result, evc.Message = "fail", "expected the evidence to verify, saw: "+firstLine(ev.Message)
	}
	add(evc)

	s.Passed = true
	for _, c := range s.Cases {
		if c.Result == "fail" {
			s.Passed = false
		}
	}
	return s
}

func (sc *Scenario) known(check string) *KnownFailure {
	for i := range sc.KnownFailures {
		if sc.KnownFailures[i].Check == check {
			return &sc.KnownFailures[i]
		}
	}
	return nil
}

// onlyKnown says whether every check that did not pass is a known failure.
func onlyKnown(sc *Scenario, reps []engine.Report) bool {
	n := 0
	for _, rep := range reps {
		for _, ch := range rep.Checks {
			n++
			if ch.Result == engine.CheckFail && sc.known(ch.Check) == nil {
				return false
			}
		}
	}
	return n > 0
}

func (s *Score) checkCase(sc *Scenario, ch engine.Check) Case {
	c := Case{Group: "check", Name: ch.Check, Result: ch.Result}
	known := sc.known(ch.Check)
	s.Checks.Total++
	switch {
	case ch.Result == engine.CheckPass && known != nil:
		s.Checks.Passed++
		c.Message = "listed as a known failure (" + known.Reason + ") but passed this time"
	case ch.Result == engine.CheckPass:
		s.Checks.Passed++
	case known != nil:
		s.Checks.Known++
		c.Result, c.Message = "skipped", "known failure on the sandbox: "+known.Reason+" (saw "+ch.Seen+")"
	case ch.Result == engine.CheckSkipped:
		c.Message = "not run"
	default:
		c.Result = "fail"
		c.Message = fmt.Sprintf("expected %s, saw %s", ch.Expected, ch.Seen)
	}
	return c
}

// stepCase judges a step, its wall clock from the journal's first and
// last record for it.
func stepCase(st engine.StepReport, journal []incident.Record) Case {
	c := Case{Group: "step", Name: st.Phase + "/" + st.Step, Result: "pass"}
	var first, last time.Time
	for _, r := range journal {
		if r.Phase == st.Phase && r.Step == st.Step && (r.DryRun == "none" || r.DryRun == "") {
			if first.IsZero() {
				first = r.Time
			}
			last = r.Time
		}
	}
	c.Duration = last.Sub(first)
	switch st.Status {
	case "failed", "partial", "interrupted", "declined":
		c.Result = "fail"
		c.Message = fmt.Sprintf("expected applied, saw %s", st.Status)
		if st.Error != "" {
			c.Message += ": " + firstLine(st.Error)
		}
	case "skipped":
		c.Result, c.Message = "skipped", "skipped by the drill ("+st.Action+": nobody confirms in a drill)"
	}
	return c
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
