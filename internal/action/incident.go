package action

import "time"

// IncidentInfo is what notifications say about an incident: its declared
// metadata and, from the journal, what each phase did and what is next.
type IncidentInfo struct {
	ID         string
	Title      string
	Severity   string
	DeclaredAt time.Time
	DeclaredBy string
	Runbook    string
	// Status is Declared, Contained, Eradicated or Recovered: the last of
	// contain, eradicate and recover whose every step is done; Closed
	// after `irctl close` (clocks.Progress.Status).
	Status string
	// Done lists, in phase order, the phases with steps applied so far
	// (dry runs and notifications not counted).
	Done []PhaseDone
	// Next lists the runbook's phases not done yet, in order.
	Next []string
}

// PhaseDone is what one phase did so far.
type PhaseDone struct {
	Phase   string
	Steps   []StepDone
	Changed int // objects or rows changed, summed over the steps
	Failed  int // targets that failed, summed over the steps
}

// StepDone is a step's last applied outcome.
type StepDone struct {
	Step    string
	Action  string
	Result  string
	Changed int
	Failed  int
	Time    time.Time
}
