package engine

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/manual"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

func manualRig(t *testing.T) *rig {
	t.Helper()
	inc, err := incident.Declare(t.TempDir(), "P1", "manual test", "tester", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	m := manual.Step{}
	params := m.Spec().MustBind(map[string]any{"instructions": "Review the last 7 days of commits\nRevert any backdoor", "done_when": "the review is written up"})
	rb := &runbook.Runbook{Name: "fake", File: "fake.yaml", Hash: "abc", Phases: map[string][]runbook.Step{
		"eradicate": {{Phase: "eradicate", Name: "review-commits", Action: "manual", Line: 5, Params: params}},
	}}
	out := &bytes.Buffer{}
	p := &fakePrompter{terminal: true, answer: true}
	eng := &Engine{Registry: action.NewRegistry(m), Env: &action.Env{DryRun: action.DryRunNone},
		Runbook: rb, Incident: inc, Journal: j, Prompter: p, Operator: "alice@host", Out: out, ErrOut: io.Discard}
	return &rig{t: t, eng: eng, out: out, inc: inc, p: p}
}

func TestManualStepJournalsWhoConfirmed(t *testing.T) {
	r := manualRig(t)
	rep, err := r.eng.RunPhase(context.Background(), "eradicate")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.p.asked) != 1 || !strings.Contains(r.out.String(), "Review the last 7 days of commits") {
		t.Fatalf("asked %v; output:\n%s", r.p.asked, r.out)
	}
	last := r.last()
	if last.Kind != incident.KindOutcome || last.Operator != "alice@host" || !strings.HasPrefix(last.Result, "confirmed done by alice@host at ") {
		t.Fatalf("journal: %+v", last)
	}
	if rep.Steps[0].Status != "applied" {
		t.Fatalf("status %s", rep.Steps[0].Status)
	}
}

func TestManualStepNotConfirmedStopsThePhase(t *testing.T) {
	r := manualRig(t)
	r.p.answer = false
	_, err := r.eng.RunPhase(context.Background(), "eradicate")
	if exitcode.Code(err) != exitcode.Declined {
		t.Fatalf("got %v, want exit 3", err)
	}
	if k := r.kinds("review-commits"); len(k) != 1 || k[0] != incident.KindDeclined {
		t.Fatalf("journal kinds %v", k)
	}
}

func TestManualStepWithYesIsSkippedNotDone(t *testing.T) {
	r := manualRig(t)
	r.eng.Yes = true
	rep, err := r.eng.RunPhase(context.Background(), "eradicate")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.p.asked) != 0 || rep.Steps[0].Status != "skipped" || !strings.Contains(r.last().Result, "nobody confirmed") {
		t.Fatalf("asked %v, status %s, journal %+v", r.p.asked, rep.Steps[0].Status, r.last())
	}
	// Not done: a resume runs it again (and asks, without --yes), and the
	// incident's status does not count it.
	lr, err := FindLastRun(r.journal())
	if err != nil {
		t.Fatal(err)
	}
	if _, done := lr.Done[StepKey{"eradicate", "review-commits"}]; done {
		t.Error("resume takes a manual step skipped under --yes as done")
	}
	r.eng.Yes = false
	reps, err := r.eng.Run(context.Background(), RunOptions{Command: "eradicate", Phases: []string{"eradicate"}, Resumes: lr.Run.Seq, Done: lr.Done, Replan: lr.Replan})
	if err != nil || len(r.p.asked) != 1 || reps[0].Steps[0].Status != "applied" {
		t.Fatalf("resume: err %v, asked %v", err, r.p.asked)
	}
}

func TestManualStepWithoutTerminalRefusedUpFront(t *testing.T) {
	r := manualRig(t)
	r.p.terminal = false
	_, err := r.eng.RunPhase(context.Background(), "eradicate")
	if exitcode.Code(err) != exitcode.Declined || !strings.Contains(err.Error(), "eradicate/review-commits") {
		t.Fatalf("got %v", err)
	}
	if len(r.journal()) != 0 {
		t.Fatalf("journal written: %+v", r.journal())
	}
}

func TestManualStepDryRunAsksNobody(t *testing.T) {
	r := manualRig(t)
	r.eng.Env.DryRun = action.DryRunServer
	rep, err := r.eng.RunPhase(context.Background(), "eradicate")
	if err != nil || len(r.p.asked) != 0 || rep.Steps[0].Status != "planned" {
		t.Fatalf("err %v asked %v status %s", err, r.p.asked, rep.Steps[0].Status)
	}
}
