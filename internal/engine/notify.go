package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// stepEnv is the environment step s plans and applies in: e.Env naming
// the step, with the journal's sent notifications and the incident so far
// at hand, and a hook that adds credentials an action read to the secrets.
func (e *Engine) stepEnv(s runbook.Step) *action.Env {
	env := new(action.Env)
	*env = *e.Env
	env.Step = s.Phase + "/" + s.Name
	outer := e.Env.AddSecrets
	env.AddSecrets = func(values ...string) {
		e.secretMu.Lock()
		e.Env.Secrets = append(e.Env.Secrets, values...)
		e.secretMu.Unlock()
		if outer != nil {
			outer(values...)
		}
	}
	if e.Incident != nil {
		env.Sent = e.sent
		env.Info = e.incidentInfo
	}
	return env
}

// sent finds key among the notifications the journal records as delivered.
func (e *Engine) sent(key string) (time.Time, int, bool) {
	recs, err := incident.ReadJournal(e.Incident.JournalPath())
	if err != nil {
		// An unreadable journal stops the run at the next append anyway.
		return time.Time{}, 0, false
	}
	for _, r := range recs {
		if r.DryRun != string(action.DryRunNone) {
			continue
		}
		for _, k := range r.Sent {
			if k == key {
				return r.Time, r.Seq, true
			}
		}
	}
	return time.Time{}, 0, false
}

// incidentInfo is what a notification says about the incident: its
// declared metadata and what the journal records each phase did
// (clocks.Read, shared with `irctl status`). Dry runs and notifications
// themselves are left out, so the message (and the key it is deduplicated
// by) stays the same when only notify runs again.
func (e *Engine) incidentInfo() (*action.IncidentInfo, error) {
	recs, err := incident.ReadJournal(e.Incident.JournalPath())
	if err != nil {
		return nil, err
	}
	return IncidentInfo(e.Incident, e.Runbook, recs), nil
}

// IncidentInfo is the incident as the journal records recs tell it, for
// the runbook rb: its status, what each phase did and what is next.
// Notifications use it, and so does `irctl report`.
func IncidentInfo(inc *incident.Incident, rb *runbook.Runbook, recs []incident.Record) *action.IncidentInfo {
	prog := clocks.Read(recs, rb)
	info := &action.IncidentInfo{
		ID: inc.ID, Title: inc.Title, Severity: inc.Severity,
		DeclaredAt: inc.DeclaredAt, DeclaredBy: inc.DeclaredBy, Status: prog.Status(),
	}
	if rb != nil {
		info.Runbook = rb.Name
	}
	for _, ph := range prog.Phases {
		pd := action.PhaseDone{Phase: ph.Phase}
		for _, s := range ph.Steps {
			if !s.Applied || strings.HasPrefix(s.Action, "notify.") {
				continue
			}
			pd.Steps = append(pd.Steps, action.StepDone{Step: s.Step, Action: s.Action, Result: s.Result, Changed: s.Changed, Failed: s.Failed, Time: s.Time})
			pd.Changed += s.Changed
			pd.Failed += s.Failed
		}
		if len(pd.Steps) > 0 {
			info.Done = append(info.Done, pd)
		}
		if !ph.Complete && ph.Phase != "notify" {
			info.Next = append(info.Next, ph.Phase)
		}
	}
	return info
}

// externalNotice decides whether an external notice (customers,
// regulators, law enforcement) goes: its draft is saved as evidence and
// shown first; it is sent only once confirmed, even under --yes, unless
// --allow-external was given. With nobody to ask it is recorded as
// drafted, and the phase goes on with its other steps (exit 4 at the
// end). ok says whether to apply; otherwise sr and err are the step's.
func (e *Engine) externalNotice(ctx context.Context, s runbook.Step, a action.Action, plan *action.Plan, planRec incident.Record, sr StepReport) (bool, StepReport, error) {
	if plan.Message != "" {
		draft := fmt.Sprintf("Incident: %s\nStep: %s/%s (%s)\nPlan: %s\nRecipients: %s\n\n%s", e.Incident.ID, s.Phase, s.Name, s.Action, plan.Summary, strings.Join(plan.Targets, "; "), plan.Message)
		name, err := e.saveDraft(s, draft)
		if err != nil {
			return false, sr, fmt.Errorf("step %s: saving the draft notice as evidence: %w", s.Name, err)
		}
		e.printf("  external notice: draft saved as evidence %s\n", name)
	}
	if e.Env.DryRun != action.DryRunNone || e.AllowExternal {
		return true, sr, nil
	}
	if !e.Prompter.CanConfirm() {
		planRec.Kind = incident.KindDrafted
		planRec.Error = "external notice drafted, not sent: nobody to confirm it (confirm on a terminal, or rerun with --allow-external)"
		if err := e.record(planRec, s, a); err != nil {
			return false, sr, err
		}
		e.printf("  drafted, not sent: an external notice needs confirmation (a terminal) or --allow-external\n")
		sr.Status, sr.Error = "drafted", planRec.Error
		return false, sr, nil
	}
	ok, err := e.confirmStep(ctx, s, plan, &sr)
	if ok {
		return true, sr, nil
	}
	planRec.Kind, planRec.Error = incident.KindDeclined, "external notice declined by operator"
	if err != nil {
		return false, sr, err
	}
	if jerr := e.record(planRec, s, a); jerr != nil {
		return false, sr, jerr
	}
	e.printf("  declined: the notice was not sent (its draft is in the evidence)\n")
	sr.Status, sr.Error = "declined", planRec.Error
	return false, sr, nil
}

// saveDraft stores an external notice's text as evidence, once per text:
// the same draft planned again is already there.
func (e *Engine) saveDraft(s runbook.Step, draft string) (string, error) {
	draft = e.secrets().String(draft)
	sum := sha256.Sum256([]byte(draft))
	name := fmt.Sprintf("notices/%s-%s-%s.txt", evidence.SafeName(s.Phase), evidence.SafeName(s.Name), hex.EncodeToString(sum[:6]))
	if e.Env.Evidence == nil {
		return "", fmt.Errorf("no evidence store")
	}
	store, err := e.Env.Evidence()
	if err != nil {
		return "", err
	}
	entries, err := evidence.ReadManifest(e.Incident.Dir())
	if err != nil {
		return "", err
	}
	for _, en := range entries {
		if en.Name == name {
			return name, nil
		}
	}
	_, err = store.WriteFile(name, evidence.Source{Kind: "notice", Note: "external notice drafted by step " + s.Phase + "/" + s.Name}, []byte(draft), evidence.Extra{})
	return name, err
}
