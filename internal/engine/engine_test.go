package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

func TestNoopStepAppliesNothingAndSaysSo(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true, plan: func(context.Context) (*action.Plan, error) {
		return &action.Plan{Summary: "already labelled", Noop: true}, nil
	}}
	r := newRig(t, a)
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if a.applied != 0 || len(r.p.asked) != 0 {
		t.Errorf("a noop applied %d times and asked %v", a.applied, r.p.asked)
	}
	if got := r.kinds("fake.label"); !slices.Equal(got, []string{incident.KindNoop}) {
		t.Errorf("journal: %v, want noop", got)
	}
	if !strings.Contains(r.out.String(), "nothing to change") {
		t.Errorf("output: %s", r.out)
	}
}

func TestClientDryRunPlansAndNeverApplies(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	r := newRig(t, a)
	r.eng.Env.DryRun = action.DryRunClient
	r.p.terminal = false // a dry run needs nobody's consent
	rep, err := r.eng.RunPhase(context.Background(), "contain")
	if err != nil {
		t.Fatal(err)
	}
	if a.planned != 1 || a.applied != 0 {
		t.Errorf("planned %d, applied %d; want 1, 0", a.planned, a.applied)
	}
	if rep.Steps[0].Status != "planned" || r.last().Kind != incident.KindPlanned || r.last().DryRun != "client" {
		t.Errorf("report %+v, last record %+v", rep.Steps[0], r.last())
	}
}

func TestDeclinedStepChangesNothingAndStopsThePhase(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	b := &fakeAction{name: "fake.after"}
	r := newRig(t, a, b)
	r.p.answer = false
	_, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Declined {
		t.Fatalf("err %v (exit %d), want exit 3", err, exitcode.Code(err))
	}
	if a.applied != 0 || b.planned != 0 {
		t.Errorf("after no: applied %d, next step planned %d", a.applied, b.planned)
	}
	if got := r.kinds("fake.label"); !slices.Equal(got, []string{incident.KindDeclined}) {
		t.Errorf("journal: %v, want declined (and no intent)", got)
	}
}

func TestPartlyFailedStepIsRecordedWithItsFailuresAndExits4(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true, apply: func(context.Context) (*action.Result, error) {
		return &action.Result{Summary: "labelled 1 of 2", Changed: 1, Failed: []action.Failure{{Target: "b", Error: "forbidden"}}, Undo: json.RawMessage(`["a"]`)}, nil
	}}
	b := &fakeAction{name: "fake.after"}
	r := newRig(t, a, b)
	rep, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Partial {
		t.Fatalf("err %v, want exit 4", err)
	}
	if b.applied != 1 {
		t.Error("a step with some failed targets should let the phase go on")
	}
	out := r.journal()[2] // run, intent, outcome
	if out.Kind != incident.KindOutcome || *out.Changed != 1 || !strings.Contains(string(out.Failed), "forbidden") || string(out.Undo) != `["a"]` {
		t.Errorf("outcome record: %+v", out)
	}
	if rep.Steps[0].Status != "partial" || !strings.Contains(r.out.String(), "failed: b: forbidden") {
		t.Errorf("status %s, output %s", rep.Steps[0].Status, r.out)
	}
}

// Ctrl-C while a step is applying: the action stops and returns what it
// changed so far with the context's error. The engine journals that (undo
// data included) as "interrupted", exits 130, and undo reverses it.
func TestInterruptMidApplyJournalsWhatChangedAndUndoReversesIt(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	a := &fakeAction{name: "fake.label", destructive: true}
	a.apply = func(actx context.Context) (*action.Result, error) {
		cancel(errors.New("received interrupt"))
		<-actx.Done()
		return &action.Result{Summary: "labelled 3 of 10 pods", Changed: 3, Undo: json.RawMessage(`{"pods":["p1","p2","p3"]}`)}, actx.Err()
	}
	b := &fakeAction{name: "fake.after"}
	r := newRig(t, a, b)
	rep, err := r.eng.RunPhase(ctx, "contain")
	if exitcode.Code(err) != exitcode.Interrupted || !strings.Contains(err.Error(), "received interrupt") {
		t.Fatalf("err %v (exit %d), want exit 130 naming the signal", err, exitcode.Code(err))
	}
	if b.planned != 0 {
		t.Error("a step started after the interrupt")
	}
	last := r.last()
	if last.Kind != incident.KindInterrupted || last.Changed == nil || *last.Changed != 3 || string(last.Undo) != `{"pods":["p1","p2","p3"]}` {
		t.Fatalf("last record: %+v, want interrupted with 3 changed and the undo data", last)
	}
	if rep.Steps[0].Status != "interrupted" || rep.Steps[0].Result == nil {
		t.Errorf("report: %+v", rep.Steps[0])
	}
	if !strings.Contains(r.out.String(), "changed before it stopped: labelled 3 of 10 pods") {
		t.Errorf("output should say what changed: %s", r.out)
	}

	r.out.Reset()
	if err := r.eng.Undo(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if a.undone != 1 || string(a.undoData[0]) != `{"pods":["p1","p2","p3"]}` {
		t.Errorf("undo got %d calls with %s", a.undone, a.undoData)
	}
	if u := r.last(); u.Kind != incident.KindUndo || u.Undoes != last.Seq {
		t.Errorf("undo record: %+v", u)
	}
}

func TestJournalWriteFailureStopsBeforeAnythingHappensUnrecorded(t *testing.T) {
	for ok, what := range []string{"the run record", "the intent"} {
		t.Run(what, func(t *testing.T) {
			a := &fakeAction{name: "fake.label", destructive: true}
			r := newRig(t, a)
			r.eng.Journal = &failingJournal{real: r.eng.Journal, ok: ok}
			_, err := r.eng.RunPhase(context.Background(), "contain")
			if err == nil || !strings.Contains(err.Error(), "nothing happens unrecorded") {
				t.Fatalf("err %v", err)
			}
			if a.applied != 0 {
				t.Error("applied although its intent could not be journaled")
			}
		})
	}
	t.Run("the outcome", func(t *testing.T) {
		a := &fakeAction{name: "fake.label", destructive: true}
		b := &fakeAction{name: "fake.after"}
		r := newRig(t, a, b)
		r.eng.Journal = &failingJournal{real: r.eng.Journal, ok: 2}
		if _, err := r.eng.RunPhase(context.Background(), "contain"); err == nil {
			t.Fatal("no error")
		}
		if b.planned != 0 {
			t.Error("the next step ran although the last outcome is not journaled")
		}
		// The intent is on disk: resume plans that step again.
		lr, err := FindLastRun(r.journal())
		if err != nil || !lr.Replan[StepKey{"contain", "fake.label"}] {
			t.Errorf("resume should re-plan the step: %+v %v", lr, err)
		}
	})
}

// Resume skips what finished and plans the step whose intent has no
// outcome again; the re-plan finds it done (noop) and applies nothing.
func TestResumeSkipsFinishedStepsAndReplansAnIntentWithoutOutcome(t *testing.T) {
	first := &fakeAction{name: "fake.first", destructive: true}
	second := &fakeAction{name: "fake.second", destructive: true}
	third := &fakeAction{name: "fake.third"}
	r := newRig(t, first, second, third)
	// The first run: the first step finished, the second died after its
	// intent (the process was killed while applying).
	r.eng.Journal = &failingJournal{real: r.eng.Journal, ok: 4} // run, intent, outcome, intent
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err == nil {
		t.Fatal("the first run should have stopped")
	}
	if first.applied != 1 || second.applied != 1 || third.planned != 0 {
		t.Fatalf("first run: applied %d, %d, third planned %d", first.applied, second.applied, third.planned)
	}
	j, err := r.inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	r.eng.Journal = j
	lr, err := FindLastRun(r.journal())
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Done) != 1 || lr.Done[StepKey{"contain", "fake.first"}] == 0 || !lr.Replan[StepKey{"contain", "fake.second"}] {
		t.Fatalf("last run: done %v, replan %v", lr.Done, lr.Replan)
	}
	second.plan = func(context.Context) (*action.Plan, error) {
		return &action.Plan{Summary: "already done", Noop: true}, nil
	}
	reps, err := r.eng.Run(context.Background(), RunOptions{Command: "contain", Phases: lr.Run.Phases, Resumes: lr.Run.Seq, Done: lr.Done, Replan: lr.Replan})
	if err != nil {
		t.Fatal(err)
	}
	if first.planned != 1 || first.applied != 1 {
		t.Errorf("a finished step was repeated: planned %d, applied %d", first.planned, first.applied)
	}
	if second.planned != 2 || second.applied != 1 {
		t.Errorf("the step with an intent: planned %d, applied %d; want planned again, not applied", second.planned, second.applied)
	}
	if third.applied != 1 {
		t.Error("the rest of the phase did not run")
	}
	if got := []string{reps[0].Steps[0].Status, reps[0].Steps[1].Status, reps[0].Steps[2].Status}; !slices.Equal(got, []string{"done-before", "noop", "applied"}) {
		t.Errorf("statuses %v", got)
	}
	if !strings.Contains(r.out.String(), "planning it again against the servers") {
		t.Errorf("output: %s", r.out)
	}
	// A resume of the resume finds nothing left and runs nothing.
	lr2, err := FindLastRun(r.journal())
	if err != nil || lr2.Run.Seq != lr.Run.Seq || len(lr2.Done) != 3 {
		t.Fatalf("after the resume: %+v %v", lr2, err)
	}
	r.out.Reset()
	if _, err := r.eng.Run(context.Background(), RunOptions{Command: "contain", Phases: []string{"contain"}, Resumes: lr2.Run.Seq, Done: lr2.Done}); err != nil || !strings.Contains(r.out.String(), "nothing to resume") {
		t.Errorf("second resume: %v %s", err, r.out)
	}
}

// Without a terminal and without --yes, a phase with a destructive step is
// refused before its first step: nothing planned, applied or journaled.
func TestRefusedUpFrontWithoutTerminal(t *testing.T) {
	safe := &fakeAction{name: "fake.evidence"}
	destructive := &fakeAction{name: "fake.label", destructive: true}
	r := newRig(t, safe, destructive)
	r.p.terminal = false
	locked := false
	r.eng.Lock = func(context.Context, map[string]bool) (func(), error) { locked = true; return func() {}, nil }
	_, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Declined || !strings.Contains(err.Error(), "contain/fake.label") || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("err %v, want exit 3 naming the step and --yes", err)
	}
	if safe.planned+safe.applied+destructive.planned != 0 || locked {
		t.Error("something ran or locked before the refusal")
	}
	if recs := r.journal(); len(recs) != 0 {
		t.Errorf("journal written: %+v", recs)
	}
	// --yes lets it through.
	r.eng.Yes = true
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil || destructive.applied != 1 {
		t.Errorf("with --yes: %v, applied %d", err, destructive.applied)
	}
}

func TestStepPastItsDeadlineFailsSayingSo(t *testing.T) {
	a := &fakeAction{name: "fake.slow", apply: func(ctx context.Context) (*action.Result, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	r := newRig(t, a)
	r.eng.Runbook.Phases["contain"][0].Timeout = 20 * time.Millisecond
	rep, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Error || !strings.Contains(err.Error(), "exceeded its deadline of 20ms") {
		t.Fatalf("err %v (exit %d)", err, exitcode.Code(err))
	}
	if rep.Steps[0].Status != "failed" || r.last().Kind != incident.KindOutcome || !strings.Contains(r.last().Error, "deadline") {
		t.Errorf("status %s, last record %+v", rep.Steps[0].Status, r.last())
	}
}

// With -o json the human output is discarded; a step that asks shows its
// plan (cleaned) on stderr before the question.
func TestJSONModeShowsThePlanOnStderrBeforeAsking(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true, plan: func(context.Context) (*action.Plan, error) {
		return &action.Plan{Summary: "label 1 pod", Targets: []string{"pod/\x1b[2Jevil"}, Count: 1, Warnings: []string{"w\x07"}}, nil
	}}
	r := newRig(t, a)
	var stderr bytes.Buffer
	r.eng.ErrOut, r.eng.JSONMode = &stderr, true
	r.eng.Out = &bytes.Buffer{}
	var atPrompt string
	r.p.seen = func() { atPrompt = stderr.String() }
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"label 1 pod", `pod/\x1b[2Jevil`, `warning: w\x07`} {
		if !strings.Contains(atPrompt, want) {
			t.Errorf("stderr at the prompt lacks %q:\n%s", want, atPrompt)
		}
	}
	if strings.Contains(atPrompt, "\x1b") {
		t.Error("a raw escape reached the terminal")
	}
}

func TestUndoThatLeavesTargetsIsPartialAndRetried(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	calls := 0
	a.undo = func(context.Context, json.RawMessage) (*action.Result, error) {
		calls++
		if calls == 1 {
			return &action.Result{Summary: "reversed 1 of 2", Changed: 1, Failed: []action.Failure{{Target: "b", Error: "conflict"}}}, nil
		}
		return &action.Result{Summary: "reversed 2", Changed: 2}, nil
	}
	r := newRig(t, a)
	r.eng.Yes = true
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.Undo(context.Background(), "contain"); exitcode.Code(err) != exitcode.Partial {
		t.Fatalf("first undo: %v, want exit 4", err)
	}
	if u := r.last(); u.Kind != incident.KindUndo || len(u.Failed) == 0 {
		t.Errorf("partial undo record: %+v", u)
	}
	if err := r.eng.Undo(context.Background(), "contain"); err != nil {
		t.Fatalf("second undo: %v", err)
	}
	if a.undone != 2 {
		t.Errorf("the partial undo was not retried: %d calls", a.undone)
	}
	r.out.Reset()
	if err := r.eng.Undo(context.Background(), "contain"); err != nil || a.undone != 2 || !strings.Contains(r.out.String(), "nothing to undo") {
		t.Errorf("third undo: %v, %d calls, %s", err, a.undone, r.out)
	}
}

func TestUndoWithoutTerminalIsRefusedBeforeAnything(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	r := newRig(t, a)
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	n := len(r.journal())
	r.p.terminal = false
	if err := r.eng.Undo(context.Background(), "contain"); exitcode.Code(err) != exitcode.Declined {
		t.Fatalf("undo without terminal: %v, want exit 3", err)
	}
	if a.undone != 0 || len(r.journal()) != n {
		t.Error("something was undone or journaled")
	}
}

// An interrupt while waiting for the lock (or in the preflight) exits 130
// and is journaled, with no step run.
func TestInterruptWhileLockingIsJournaled(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	r := newRig(t, a)
	ctx, cancel := context.WithCancelCause(context.Background())
	r.eng.Lock = func(ctx context.Context, _ map[string]bool) (func(), error) {
		cancel(errors.New("received terminated"))
		<-ctx.Done()
		return nil, fmt.Errorf("waiting for the lock: %w", ctx.Err())
	}
	_, err := r.eng.RunPhase(ctx, "contain")
	if exitcode.Code(err) != exitcode.Interrupted {
		t.Fatalf("err %v, want exit 130", err)
	}
	if a.planned != 0 {
		t.Error("a step ran")
	}
	if last := r.last(); last.Kind != incident.KindInterrupted || !strings.Contains(last.Error, "locking") {
		t.Errorf("last record %+v", last)
	}
}

func TestCleanNeutralisesTerminalEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"plain pod-1":                   "plain pod-1",
		"two\nlines\tand  spaces":       "two lines and spaces",
		"\x1b]0;pwned\x07title":         `\x1b]0;pwned\x07title`,
		"\x1b[2J\x1b[1;1Hclear":         `\x1b[2J\x1b[1;1Hclear`,
		"csi\u009b31m":                  `csi\x9b31m`,
		"bad byte \x9b31m":              `bad byte \ufffd31m`,
		"admin\u202egnp.exe":            `admin\u202egnp.exe`,
		"del\x7f":                       `del\x7f`,
		"ünïcödé 日本":                    "ünïcödé 日本",
		"zero\u200bwidth and \u2066iso": `zero\u200bwidth and \u2066iso`,
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// Two records with one seq (two writers once raced on the journal) must
// not let the undo of one hide the other.
func TestUndoMatchesRecordsBySeqStepAndAction(t *testing.T) {
	recs := []incident.Record{
		{Seq: 5, Kind: incident.KindOutcome, Phase: "contain", Step: "label", Action: "k8s.label", DryRun: "none", Undo: json.RawMessage(`1`)},
		{Seq: 5, Kind: incident.KindOutcome, Phase: "contain", Step: "cordon", Action: "k8s.cordon", DryRun: "none", Undo: json.RawMessage(`2`)},
		{Seq: 6, Kind: incident.KindUndo, Phase: "contain", Step: "label", Action: "k8s.label", DryRun: "none", Undoes: 5},
		{Seq: 7, Kind: incident.KindUndo, Phase: "contain", Step: "cordon", Action: "k8s.cordon", DryRun: "server", Undoes: 5},
	}
	done := undone(recs)
	if !done[undoKey{5, "label", "k8s.label"}] || done[undoKey{5, "cordon", "k8s.cordon"}] {
		t.Errorf("undone: %v; want the label reversed and the cordon (only dry-run undone) not", done)
	}
}

// The run record keeps --set values for resume, but not secret ones.
func TestRunRecordRedactsSecretSetValues(t *testing.T) {
	a := &fakeAction{name: "fake.label", destructive: true}
	r := newRig(t, a)
	r.eng.Runbook.Params = []runbook.Param{{Name: "namespace"}, {Name: "token", Secret: true}}
	if _, err := r.eng.Run(context.Background(), RunOptions{Command: "contain", Phases: []string{"contain"}, RunbookRef: "fake", Set: map[string]string{"namespace": "ns1", "token": "s3cr3t-canary"}}); err != nil {
		t.Fatal(err)
	}
	run := r.journal()[0]
	if run.Kind != incident.KindRun || run.Set["namespace"] != "ns1" || run.Set["token"] != redacted || run.RunbookRef != "fake" || !slices.Equal(run.Phases, []string{"contain"}) {
		t.Errorf("run record: %+v", run)
	}
	b, _ := json.Marshal(r.journal())
	if strings.Contains(string(b), "s3cr3t-canary") {
		t.Error("the secret reached the journal")
	}
}

// A run cancelled for a reason with an exit code of its own (the lock was
// lost: exit 5) keeps that code; the step is still journaled interrupted.
func TestCancelWithACodedCauseKeepsItsExitCode(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	a := &fakeAction{name: "fake.label", apply: func(actx context.Context) (*action.Result, error) {
		cancel(exitcode.New(exitcode.Precondition, "lost the responder lock"))
		<-actx.Done()
		return nil, actx.Err()
	}}
	r := newRig(t, a)
	_, err := r.eng.RunPhase(ctx, "contain")
	if exitcode.Code(err) != exitcode.Precondition || !strings.Contains(err.Error(), "lost the responder lock") {
		t.Fatalf("err %v (exit %d), want exit 5 naming the cause", err, exitcode.Code(err))
	}
	if r.last().Kind != incident.KindInterrupted {
		t.Errorf("last record %+v", r.last())
	}
}

// A step that still needs a --set is bad input for the whole run: refused
// with exit 2 before any step of any phase runs or anything is journaled.
func TestUnresolvedStepRefusesTheRunBeforeAnything(t *testing.T) {
	first := &fakeAction{name: "fake.first"}
	r := newRig(t, first)
	r.eng.Runbook.Phases["assess"] = []runbook.Step{{Phase: "assess", Name: "needs", Action: "fake.first", Line: 30, Unresolved: []string{"suspicious_ips"}}}
	_, err := r.eng.Run(context.Background(), RunOptions{Command: "run", Phases: runbook.Phases, SkipEmpty: true})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "fake.yaml:30: step needs needs --set suspicious_ips=...") {
		t.Fatalf("err %v", err)
	}
	if first.planned != 0 || len(r.journal()) != 0 {
		t.Error("something ran or was journaled")
	}
}

// A step whose only_if is empty is journaled as having nothing to do, with
// why; its action is never asked to plan or apply, and it needs neither a
// confirmation (no terminal, no --yes) nor a server for the lock.
func TestSkippedStepIsNeverPlanned(t *testing.T) {
	a := &fakeAction{name: "fake.restart", destructive: true}
	r := newRig(t, a)
	r.eng.Runbook.Phases["contain"][0].Skip = "no deployment given"
	r.p.terminal = false
	var lockedFor map[string]bool
	r.eng.Lock = func(_ context.Context, servers map[string]bool) (func(), error) {
		lockedFor = servers
		return func() {}, nil
	}
	if _, err := r.eng.Run(context.Background(), RunOptions{Command: "run", Phases: []string{"contain"}}); err != nil {
		t.Fatalf("run: %v\n%s", err, r.out)
	}
	if a.planned != 0 || a.applied != 0 || len(r.p.asked) != 0 || len(lockedFor) != 0 {
		t.Errorf("a skipped step was planned %d, applied %d times, asked %v, locked for %v", a.planned, a.applied, r.p.asked, lockedFor)
	}
	recs := r.journal()
	last := recs[len(recs)-1]
	if last.Kind != incident.KindNoop || last.Plan != "skipped: no deployment given" {
		t.Errorf("journal: %+v", last)
	}
	if !strings.Contains(r.out.String(), "skipped: no deployment given") {
		t.Errorf("output: %s", r.out)
	}
}
