package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

// externalRig is a rig whose first step drafts an external notice and
// whose second is an ordinary one, with an evidence store.
func externalRig(t *testing.T) (*rig, *fakeAction, *fakeAction) {
	ext := &fakeAction{name: "fake.notice", plan: func(context.Context) (*action.Plan, error) {
		return &action.Plan{Summary: "EXTERNAL notice: email 1 regulator", Targets: []string{"dpa@example.eu"}, Count: 1, External: true, Message: "We report a breach."}, nil
	}}
	other := &fakeAction{name: "fake.slack"}
	r := newRig(t, ext, other)
	r.eng.Yes = true
	r.eng.Env.Evidence = func() (*evidence.Store, error) { return evidence.Open(r.inc.Dir(), evidence.Meta{}) }
	return r, ext, other
}

func drafts(t *testing.T, r *rig) []string {
	t.Helper()
	entries, err := evidence.ReadManifest(r.inc.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name, "notices/") {
			out = append(out, e.Name)
		}
	}
	return out
}

func TestExternalNoticeAsksEvenUnderYes(t *testing.T) {
	r, ext, other := externalRig(t)
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if len(r.p.asked) != 1 || ext.applied != 1 || other.applied != 1 {
		t.Errorf("asked %v, applied %d and %d; want one question (under --yes) and both applied", r.p.asked, ext.applied, other.applied)
	}
	if d := drafts(t, r); len(d) != 1 {
		t.Errorf("drafts in the evidence: %v, want 1", d)
	}
	if !strings.Contains(r.out.String(), "We report a breach.") {
		t.Errorf("the draft should be shown:\n%s", r.out)
	}
}

func TestExternalNoticeDeclinedIsNotSentAndTheOthersGo(t *testing.T) {
	r, ext, other := externalRig(t)
	r.p.answer = false
	_, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Partial {
		t.Fatalf("err %v, want exit 4", err)
	}
	if ext.applied != 0 || other.applied != 1 {
		t.Errorf("applied %d and %d; want the notice not sent and the other step applied", ext.applied, other.applied)
	}
}

func TestExternalNoticeWithoutTerminalIsDraftedOnly(t *testing.T) {
	r, ext, other := externalRig(t)
	r.p.terminal = false
	rep, err := r.eng.RunPhase(context.Background(), "contain")
	if exitcode.Code(err) != exitcode.Partial || !strings.Contains(err.Error(), "fake.notice drafted") {
		t.Fatalf("err %v, want exit 4 naming the draft", err)
	}
	if ext.applied != 0 || other.applied != 1 || len(r.p.asked) != 0 {
		t.Errorf("applied %d and %d, asked %v", ext.applied, other.applied, r.p.asked)
	}
	if rep.Steps[0].Status != "drafted" || !slices.Equal(r.kinds("fake.notice"), []string{incident.KindDrafted}) {
		t.Errorf("status %s, journal %v", rep.Steps[0].Status, r.kinds("fake.notice"))
	}
	if d := drafts(t, r); len(d) != 1 {
		t.Errorf("drafts in the evidence: %v, want 1", d)
	}
	// Drafted again by a second run: the same draft is not stored twice.
	_, _ = r.eng.RunPhase(context.Background(), "contain")
	if d := drafts(t, r); len(d) != 1 {
		t.Errorf("drafts after a second run: %v, want still 1", d)
	}
}

func TestAllowExternalSendsWithoutAsking(t *testing.T) {
	r, ext, _ := externalRig(t)
	r.p.terminal = false
	r.eng.AllowExternal = true
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if ext.applied != 1 || len(r.p.asked) != 0 {
		t.Errorf("applied %d, asked %v; want sent without a question", ext.applied, r.p.asked)
	}
}

// Sent keys are journaled only when really sent, and Env.Sent finds them
// with the record's time and seq; a server dry run records none.
func TestSentKeysAreJournaledAndFound(t *testing.T) {
	var seen *action.Env
	a := &fakeAction{name: "fake.slack", apply: func(context.Context) (*action.Result, error) {
		return &action.Result{Summary: "sent", Changed: 1, Sent: []string{"slack:k1"}}, nil
	}}
	r := newRig(t, a)
	a.plan = func(context.Context) (*action.Plan, error) { return &action.Plan{Summary: "send", Count: 1}, nil }
	env := r.eng.stepEnv(r.eng.Runbook.Phases["contain"][0])
	seen = env
	r.eng.Env.DryRun = action.DryRunServer
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := seen.Sent("slack:k1"); ok {
		t.Fatal("a server dry run recorded a sent key")
	}
	r.eng.Env.DryRun = action.DryRunNone
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	at, seq, ok := seen.Sent("slack:k1")
	if last := r.last(); !ok || seq != last.Seq || !at.Equal(last.Time) || !slices.Equal(last.Sent, []string{"slack:k1"}) {
		t.Errorf("Sent: %v %d %v; last record %+v", at, seq, ok, last)
	}
	if seen.Step != "contain/fake.slack" {
		t.Errorf("step %q", seen.Step)
	}
}

// The incident as notifications tell it: status from the phases done,
// counts per phase, what is next; notifications themselves left out.
func TestIncidentInfoFromTheJournal(t *testing.T) {
	a := &fakeAction{name: "fake.label"}
	r := newRig(t, a)
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	_, _ = r.eng.Journal.Append(incident.Record{Kind: incident.KindOutcome, Phase: "notify", Step: "slack", Action: "notify.slack", DryRun: "none", Changed: intp(1)})
	info, err := r.eng.incidentInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != "Contained" || len(info.Done) != 1 || info.Done[0].Phase != "contain" || info.Done[0].Changed != 2 || len(info.Next) != 0 {
		t.Errorf("info %+v", info)
	}
	if info.ID != r.inc.ID || info.Severity != "P1" || info.Title != "engine test" {
		t.Errorf("declared metadata: %+v", info)
	}
}

// Secrets an action reads at plan time are redacted from the journal.
func TestSecretsAddedByAnActionAreRedacted(t *testing.T) {
	a := &fakeAction{name: "fake.slack"}
	r := newRig(t, a)
	var added []string
	r.eng.Env.AddSecrets = func(v ...string) { added = append(added, v...) }
	a.plan = func(context.Context) (*action.Plan, error) {
		return &action.Plan{Summary: "post to https://hooks.example/T0/SECRETPATH", Count: 1}, nil
	}
	env := r.eng.stepEnv(r.eng.Runbook.Phases["contain"][0])
	env.Secret("https://hooks.example/T0/SECRETPATH")
	if _, err := r.eng.RunPhase(context.Background(), "contain"); err != nil {
		t.Fatal(err)
	}
	for _, rec := range r.journal() {
		if strings.Contains(rec.Plan, "SECRETPATH") {
			t.Errorf("journal record %d shows the secret: %q", rec.Seq, rec.Plan)
		}
	}
	if len(added) != 1 {
		t.Errorf("the outer hook got %v", added)
	}
}
