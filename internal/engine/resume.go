package engine

import (
	"errors"
	"fmt"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/incident"
)

// LastRun is the last run of an incident as the journal tells it, and how
// far it got.
type LastRun struct {
	// Run is the run record of the original run (a resume's own run
	// record points back at it, so resuming a resume continues the same
	// run).
	Run incident.Record
	// Done holds the steps that finished, with the Seq of the record that
	// says so: a noop, a client-dry-run plan in a client dry run, or an
	// outcome without error and without failed targets.
	Done map[StepKey]int
	// Replan holds the steps whose last record is an intent: the process
	// died between applying and recording. They are planned again against
	// the servers, never applied blindly.
	Replan map[StepKey]bool
	// Inputs are the params the run's phases took from earlier steps'
	// results, as it journaled them: a resume gives them as --set values,
	// so it acts on what the run was shown.
	Inputs map[string]string
}

// ErrNoRun says the journal has no run to resume.
var ErrNoRun = errors.New("the journal records no run to resume")

// FindLastRun reads what `irctl resume` continues from the records of a
// journal.
func FindLastRun(recs []incident.Record) (*LastRun, error) {
	last := -1
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Kind == incident.KindRun {
			last = i
			break
		}
	}
	if last < 0 {
		return nil, ErrNoRun
	}
	origin := last
	if want := recs[last].Resumes; want != 0 {
		origin = -1
		for i := last - 1; i >= 0; i-- {
			if recs[i].Kind == incident.KindRun && recs[i].Seq == want {
				origin = i
				break
			}
		}
		if origin < 0 {
			return nil, fmt.Errorf("the last run resumes journal record %d, which is not a run record", want)
		}
	}
	lr := &LastRun{Run: recs[origin], Done: map[StepKey]int{}, Replan: map[StepKey]bool{}, Inputs: map[string]string{}}
	lastKind := map[StepKey]incident.Record{}
	for _, r := range recs[origin+1:] {
		if r.Kind == incident.KindInputs {
			for k, v := range r.Set {
				lr.Inputs[k] = v
			}
			continue
		}
		if r.Step == "" || r.Kind == incident.KindUndo || r.Kind == incident.KindRun {
			continue
		}
		lastKind[StepKey{r.Phase, r.Step}] = r
	}
	for k, r := range lastKind {
		switch {
		case r.Kind == incident.KindNoop,
			r.Kind == incident.KindPlanned && lr.Run.DryRun == string(action.DryRunClient),
			r.Kind == incident.KindOutcome && r.Error == "" && len(r.Failed) == 0:
			lr.Done[k] = r.Seq
		case r.Kind == incident.KindIntent:
			lr.Replan[k] = true
		}
	}
	return lr, nil
}
