package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action/notifyaction"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// mailpitMessage is what Mailpit's search API says of a message.
type mailpitMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// mailTo lists the messages Mailpit holds for address, with their text.
func mailTo(t *testing.T, sb *sandbox.Sandbox, address string) (msgs []mailpitMessage, texts []string) {
	t.Helper()
	var res struct {
		Messages []mailpitMessage `json:"messages"`
	}
	sandboxtest.GetJSON(t, sb.MailpitURL+"/api/v1/search?query="+url.QueryEscape(`to:"`+address+`"`), &res)
	for _, m := range res.Messages {
		var full struct {
			Text string `json:"Text"`
		}
		sandboxtest.GetJSON(t, sb.MailpitURL+"/api/v1/message/"+m.ID, &full)
		texts = append(texts, full.Text)
	}
	return res.Messages, texts
}

// receivedWith lists what the sandbox's receiver got whose body mentions
// marker, by kind, through its HTTP API.
func receivedWith(t *testing.T, sb *sandbox.Sandbox, marker string) map[string][]sandbox.Received {
	t.Helper()
	var all []sandbox.Received
	sandboxtest.GetJSON(t, sb.NotifyReceiverURL+"/received", &all)
	out := map[string][]sandbox.Received{}
	for _, r := range all {
		if strings.Contains(r.Body, marker) {
			out[r.Kind] = append(out[r.Kind], r)
		}
	}
	return out
}

// notifyEnv points the runbooks' credential variables at the sandbox.
func notifyEnv(t *testing.T, sb *sandbox.Sandbox) {
	t.Setenv("IRCTL_SLACK_WEBHOOK", sb.SlackWebhookURL)
	t.Setenv("IRCTL_STATUS_WEBHOOK", sb.WebhookURL)
	t.Setenv("IRCTL_STATUS_WEBHOOK_SECRET", sb.WebhookSecret)
}

// The shipped runbook's notify phase against the sandbox's Mailpit and
// receiver: dry runs send nothing; a run sends the internal notices and
// only drafts the external ones (no terminal, no --allow-external: exit
// 4, drafts in the evidence); `resume --allow-external` sends those and
// nothing twice; a rerun sends nothing new. Everything is checked through
// Mailpit's and the receiver's APIs.
func TestNotifyDeliversOnceDryRunsSendNothingExternalNeedsConsent(t *testing.T) {
	h := newHarness(t, 0)
	notifyEnv(t, h.sb)
	tag := randHex(4)
	internal := []string{"security+" + tag + "@example.com", "legal+" + tag + "@example.com", "executives+" + tag + "@example.com"}
	customer := "customer+" + tag + "@example.net"
	args := []string{"-f", "security-incident",
		"--set", "smtp_host=" + h.sb.MailpitSMTPHost, "--set", "smtp_port=" + strconv.Itoa(h.sb.MailpitSMTPPort), "--set", "smtp_tls=none",
		"--set", "internal_emails=" + strings.Join(internal, ","), "--set", "customer_emails=" + customer}
	notify := func(extra ...string) result {
		return h.run(append(append([]string{"notify"}, extra...), args...)...)
	}
	count := func() (mails int, slack, hooks []sandbox.Received) {
		for _, a := range append(internal, customer) {
			m, _ := mailTo(t, h.sb, a)
			mails += len(m)
		}
		got := receivedWith(t, h.sb, h.incident)
		return mails, got["slack-webhook"], got["webhook"]
	}

	for _, dry := range []string{"--dry-run", "--dry-run=server"} {
		r := notify(dry, "--yes")
		if r.code != 0 {
			t.Fatalf("notify %s: exit %d\n%s\n%s", dry, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "message:") || !strings.Contains(r.stdout, h.incident) || !strings.Contains(r.stdout, internal[1]) {
			t.Errorf("notify %s: the plan should show the message and its recipients:\n%s", dry, r.stdout)
		}
		if m, s, w := count(); m+len(s)+len(w) != 0 {
			t.Fatalf("notify %s sent %d mail(s), %d Slack and %d webhook post(s)", dry, m, len(s), len(w))
		}
	}

	r := notify("--yes")
	if r.code != 4 || !strings.Contains(r.stderr, "drafted") {
		t.Fatalf("notify --yes without a terminal: exit %d, want 4 (external notices drafted)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, a := range internal {
		msgs, texts := mailTo(t, h.sb, a)
		if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, h.incident) || !strings.Contains(texts[0], "Declared") {
			t.Errorf("Mailpit holds %d message(s) for %s, want 1 about %s: %+v %q", len(msgs), a, h.incident, msgs, texts)
		}
	}
	if m, _ := mailTo(t, h.sb, customer); len(m) != 0 {
		t.Errorf("the customer notice went without consent: %+v", m)
	}
	_, slack, hooks := count()
	if len(slack) != 1 || !strings.Contains(slack[0].Body, "#security-incidents") || len(hooks) != 0 {
		t.Fatalf("receiver: %d Slack post(s), %d webhook post(s); want 1 Slack post to #security-incidents and no status page post", len(slack), len(hooks))
	}
	inc, err := incident.Open(h.stateDir, h.incident)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := evidence.ReadManifest(inc.Dir())
	if err != nil {
		t.Fatal(err)
	}
	drafts := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name, "notices/") {
			drafts++
			b, err := os.ReadFile(filepath.Join(evidence.Dir(inc.Dir()), e.Name))
			if err != nil || !strings.Contains(string(b), h.incident) {
				t.Errorf("draft %s: %v %q", e.Name, err, b)
			}
		}
	}
	if drafts != 2 {
		t.Errorf("%d drafts in the evidence, want 2 (customer email, status page)", drafts)
	}

	// resume sends the drafts, not what went already.
	r = h.run("resume", "--yes", "--allow-external")
	if r.code != 0 {
		t.Fatalf("resume --allow-external: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	mails, slack, hooks := count()
	if mails != 4 || len(slack) != 1 || len(hooks) != 1 {
		t.Fatalf("after --allow-external: %d mails (want 4), %d Slack (want 1), %d webhook (want 1)", mails, len(slack), len(hooks))
	}
	sig := http.Header(hooks[0].Headers).Get(notifyaction.SignatureHeader)
	if want := notifyaction.Sign([]byte(h.sb.WebhookSecret), []byte(hooks[0].Body)); sig != want {
		t.Errorf("status page signature %q, want %q", sig, want)
	}
	var body notifyaction.WebhookBody
	if err := json.Unmarshal([]byte(hooks[0].Body), &body); err != nil || body.Incident != h.incident || !body.External {
		t.Errorf("status page body %q: %v", hooks[0].Body, err)
	}

	r = notify("--yes", "--allow-external")
	if r.code != 0 || strings.Count(r.stdout, "already sent at") != 6 {
		t.Fatalf("rerun: exit %d, want 0 and 6 recipients already sent\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if m2, s2, w2 := count(); m2 != mails || len(s2) != 1 || len(w2) != 1 {
		t.Errorf("the rerun sent again: %d mails, %d Slack, %d webhook", m2, len(s2), len(w2))
	}
	sent := 0
	for _, rec := range h.journal() {
		sent += len(rec.Sent)
	}
	if sent != 6 {
		t.Errorf("the journal records %d sent notifications, want 6 (3 internal mails, Slack, customer mail, status page)", sent)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// One channel failing does not hide the others: an email step whose SMTP
// server does not answer is retried, then reported per recipient, and the
// Slack step after it still posts; the phase exits 4. `irctl resume`, with
// the SMTP port fixed, sends the mail and not the Slack message again; a
// rerun then sends nothing.
func TestNotifyPartialFailureStillDeliversTheOtherChannelsAndResumeSendsTheRest(t *testing.T) {
	h := newHarness(t, 0)
	notifyEnv(t, h.sb)
	tag := randHex(4)
	rb := filepath.Join(t.TempDir(), "notify.yaml")
	if err := os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: notify-test
params:
  namespace: {default: x}
  smtp_port: {type: int, required: true}
  to: {type: strings, required: true}
phases:
  notify:
    - name: mail
      action: notify.email
      with: {to: "{{ .to }}", from: irctl@example.com, smtp_host: 127.0.0.1, smtp_port: "{{ .smtp_port }}", smtp_tls: none, attempts: 2}
    - name: slack
      action: notify.slack
      with: {webhook_url_env: IRCTL_SLACK_WEBHOOK, message: "[[.ID]] partial-`+tag+`"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	to := []string{"a+" + tag + "@example.com", "b+" + tag + "@example.com"}
	slackPosts := func() int { return len(receivedWith(t, h.sb, h.incident+" partial-"+tag)["slack-webhook"]) }
	mails := func() (n int) {
		for _, a := range to {
			m, _ := mailTo(t, h.sb, a)
			n += len(m)
		}
		return n
	}
	r := h.run("notify", "-f", rb, "--yes", "--set", "to="+strings.Join(to, ","), "--set", "smtp_port="+strconv.Itoa(closedPort(t)))
	if r.code != 4 {
		t.Fatalf("exit %d, want 4\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "failed: "+to[0]) || !strings.Contains(r.stdout, "failed: "+to[1]) || !strings.Contains(r.stdout, "after 2 tries") {
		t.Errorf("each recipient's failure should be reported, after the retries:\n%s", r.stdout)
	}
	if n := slackPosts(); n != 1 {
		t.Fatalf("Slack got %d post(s), want 1", n)
	}
	if n := mails(); n != 0 {
		t.Fatalf("Mailpit got %d mail(s) from a step pointed elsewhere", n)
	}

	r = h.run("resume", "--yes", "--set", "smtp_port="+strconv.Itoa(h.sb.MailpitSMTPPort))
	if r.code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := mails(); n != 2 {
		t.Errorf("after resume Mailpit holds %d mail(s), want 2", n)
	}
	if n := slackPosts(); n != 1 {
		t.Errorf("resume posted to Slack again: %d posts", n)
	}

	r = h.run("notify", "-f", rb, "--yes", "--set", "to="+strings.Join(to, ","), "--set", "smtp_port="+strconv.Itoa(h.sb.MailpitSMTPPort))
	if r.code != 0 || strings.Count(r.stdout, "already sent at") != 3 {
		t.Errorf("rerun: exit %d, want 0 with 3 recipients already sent\n%s", r.code, r.stdout)
	}
	if mails() != 2 || slackPosts() != 1 {
		t.Errorf("the rerun sent again")
	}
}

// Slack with a bot token (chat.postMessage, the receiver answering as
// Slack's Web API does), and an email step requiring STARTTLS from a
// server that offers none: refused, nothing sent, the phase exit 4.
func TestNotifySlackBotTokenAndMandatoryStartTLS(t *testing.T) {
	h := newHarness(t, 0)
	tag := randHex(4)
	t.Setenv("IRCTL_TEST_SLACK_TOKEN", "xoxb-"+randHex(8))
	rb := filepath.Join(t.TempDir(), "notify.yaml")
	if err := os.WriteFile(rb, []byte(fmt.Sprintf(`apiVersion: irctl/v1
kind: Runbook
name: notify-test
params:
  namespace: {default: x}
phases:
  notify:
    - name: slack
      action: notify.slack
      with: {token_env: IRCTL_TEST_SLACK_TOKEN, channel: "#sec-%s", api_url: %s/slack/api/, message: "[[.ID]] bot-%s"}
    - name: mail
      action: notify.email
      with: {to: [tls+%s@example.com], from: irctl@example.com, smtp_host: %s, smtp_port: %d, attempts: 1}
`, tag, h.sb.NotifyReceiverURL, tag, tag, h.sb.MailpitSMTPHost, h.sb.MailpitSMTPPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.run("notify", "-f", rb, "--yes")
	if r.code != 4 || !strings.Contains(r.stdout, "STARTTLS required") {
		t.Fatalf("exit %d, want 4\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := receivedWith(t, h.sb, "bot-"+tag)["slack-api"]
	if len(got) != 1 || !strings.Contains(got[0].Body, "sec-"+tag) || !strings.Contains(got[0].Body, "token=xoxb-") {
		t.Errorf("chat.postMessage calls: %+v", got)
	}
	if m, _ := mailTo(t, h.sb, "tls+"+tag+"@example.com"); len(m) != 0 {
		t.Errorf("mail went without the STARTTLS the step requires: %+v", m)
	}
}
