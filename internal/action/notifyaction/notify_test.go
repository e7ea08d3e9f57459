package notifyaction

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/runbook"
)

func TestValidateRefusesBadStepsAtLoadTime(t *testing.T) {
	for _, c := range []struct {
		spec runbook.Spec
		with map[string]any
		want string
	}{
		{Slack{}.Spec(), map[string]any{}, "either webhook_url_env"},
		{Slack{}.Spec(), map[string]any{"webhook_url_env": "A", "token_env": "B"}, "either webhook_url_env"},
		{Slack{}.Spec(), map[string]any{"token_env": "B"}, "needs channel"},
		{Slack{}.Spec(), map[string]any{"webhook_url_env": "A", "message": "[[.ID"}, "bad template"},
		{Email{}.Spec(), map[string]any{"to": []any{"not an address"}, "from": "a@example.com", "smtp_host": "h"}, `to "not an address"`},
		{Email{}.Spec(), map[string]any{"to": []any{"b@example.com"}, "from": "a@example.com", "smtp_host": "h", "smtp_tls": "ssl"}, "smtp_tls"},
		{Email{}.Spec(), map[string]any{"to": []any{"b@example.com"}, "from": "a@example.com", "smtp_host": "h", "username": "u"}, "go together"},
		{Webhook{}.Spec(), map[string]any{}, "url_env or url_file"},
	} {
		err := c.spec.Validate(c.spec.MustBind(c.with))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.spec.Name, c.with, err, c.want)
		}
	}
}

func TestDefaultMessageTellsTheIncident(t *testing.T) {
	in := &action.IncidentInfo{ID: "SEC-20261122-001", Title: "API keys leaked", Severity: "P0", Status: "Contained",
		DeclaredAt: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), DeclaredBy: "ana@host",
		Done: []action.PhaseDone{{Phase: "contain", Steps: []action.StepDone{{Step: "a"}, {Step: "b"}}, Changed: 7, Failed: 1}},
		Next: []string{"eradicate", "recover"}}
	msg, err := render("message", "", DefaultMessage, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SEC-20261122-001 (P0, Contained): API keys leaked", "2026-11-22T09:00:00Z", "- contain: 2 step(s), 7 change(s), 1 failed target(s)", "Next: eradicate, recover"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	subj, err := render("subject", "", DefaultSubject, in)
	if err != nil || subj != "[P0] SEC-20261122-001 Contained: API keys leaked" {
		t.Errorf("subject %q, %v", subj, err)
	}
}

func TestKeyDependsOnStepRecipientAndText(t *testing.T) {
	k := Key("notify/a", "email", "x@example.com", "s", "m")
	if k != Key("notify/a", "email", "x@example.com", "s", "m") {
		t.Fatal("the same notification keys differently")
	}
	for _, other := range []string{
		Key("notify/b", "email", "x@example.com", "s", "m"),
		Key("notify/a", "email", "y@example.com", "s", "m"),
		Key("notify/a", "email", "x@example.com", "s2", "m"),
		Key("notify/a", "email", "x@example.com", "s", "m2"),
		Key("notify/a", "email", "x@example.co", "ms", "m"), // fields do not run together
	} {
		if other == k {
			t.Errorf("%s collides", other)
		}
	}
}

// Planning reads the credential from the environment and hands it to the
// redaction hook; a missing variable is a precondition (exit 5).
func TestCredentialsComeFromTheEnvironmentAndAreRedacted(t *testing.T) {
	var redacted []string
	env := &action.Env{DryRun: action.DryRunClient, Incident: "SEC-20261122-001", AddSecrets: func(v ...string) { redacted = append(redacted, v...) }}
	p := Slack{}.Spec().MustBind(map[string]any{"webhook_url_env": "IRCTL_TEST_HOOK"})
	t.Setenv("IRCTL_TEST_HOOK", "")
	if _, err := (Slack{}).Plan(context.Background(), env, p); exitcode.Code(err) != exitcode.Precondition || !strings.Contains(err.Error(), "IRCTL_TEST_HOOK is not set") {
		t.Fatalf("missing variable: %v", err)
	}
	t.Setenv("IRCTL_TEST_HOOK", "https://hooks.example/T0/B0/secret")
	pl, err := (Slack{}).Plan(context.Background(), env, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(redacted) != 1 || redacted[0] != "https://hooks.example/T0/B0/secret" || strings.Contains(pl.Summary+strings.Join(pl.Targets, " "), "secret") {
		t.Errorf("redacted %v, plan %+v", redacted, pl)
	}
}

// Sent before: the recipient is named with when and where, and a notice
// sent to everyone before is a noop.
func TestPlanSkipsWhatWasSentBefore(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 5, 0, 0, time.UTC)
	sent := map[string]bool{}
	env := &action.Env{Step: "notify/mail", Sent: func(k string) (time.Time, int, bool) { return at, 12, sent[k] }}
	n := &notice{Subject: "s", Message: "m"}
	p := Email{}.Spec().MustBind(map[string]any{"to": []any{"a@example.com", "b@example.com"}, "from": "x@example.com", "smtp_host": "h"})
	sent[Key("notify/mail", "email", "a@example.com", "s", "m")] = true
	pl := plan(env, p, "email", "an email", []string{"a@example.com", "b@example.com"}, n)
	if pl.Count != 1 || pl.Noop || !strings.Contains(pl.Targets[0], "already sent at 2026-11-22T09:05:00Z (journal record 12)") {
		t.Errorf("plan %+v", pl)
	}
	sent[Key("notify/mail", "email", "b@example.com", "s", "m")] = true
	if pl := plan(env, p, "email", "an email", []string{"a@example.com", "b@example.com"}, &notice{Subject: "s", Message: "m"}); !pl.Noop {
		t.Errorf("everything sent before, yet %+v", pl)
	}
}

func TestRetryBacksOffStopsOnPermanentAndAtTheDeadline(t *testing.T) {
	backoff, maxBackoff = time.Millisecond, 4*time.Millisecond
	defer func() { backoff, maxBackoff = 500*time.Millisecond, 8*time.Second }()
	calls := 0
	err := retry(context.Background(), 3, func() error { calls++; return errors.New("connection refused") })
	if calls != 3 || err == nil || !strings.Contains(err.Error(), "after 3 tries") {
		t.Errorf("%d calls, %v", calls, err)
	}
	calls = 0
	err = retry(context.Background(), 3, func() error { calls++; return &Permanent{Err: errors.New("404")} })
	if calls != 1 || err == nil {
		t.Errorf("a permanent error was retried: %d calls, %v", calls, err)
	}
	calls = 0
	if err := retry(context.Background(), 5, func() error {
		calls++
		if calls < 3 {
			return errors.New("503")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("%d calls, %v", calls, err)
	}
	backoff = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	calls = 0
	err = retry(ctx, 5, func() error { calls++; return errors.New("timeout") })
	if calls != 1 || err == nil || !strings.Contains(err.Error(), "gave up after 1 tries") {
		t.Errorf("past the deadline: %d calls, %v", calls, err)
	}
}

func TestSignIsHMACSHA256OfTheBody(t *testing.T) {
	// RFC 4231 test case 2.
	got := Sign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if got != "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Errorf("got %s", got)
	}
}
