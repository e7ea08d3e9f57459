package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// The sandbox's notification servers: Mailpit's API answers at the
// exported URL, the receiver answers a Slack webhook post "ok" as Slack
// does and records it and a webhook post with its headers, and the env
// file exports where they are.
func TestSandboxServesMailpitAndTheNotifyReceiver(t *testing.T) {
	s := sandboxtest.Get(t)
	env, err := os.ReadFile(filepath.Join(filepath.Dir(s.KubeconfigPath), "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export MAILPIT_URL='" + s.MailpitURL + "'\n",
		"export MAILPIT_SMTP_PORT='" + strconv.Itoa(s.MailpitSMTPPort) + "'\n",
		"export IRCTL_SLACK_WEBHOOK='" + s.SlackWebhookURL + "'\n",
		"export IRCTL_STATUS_WEBHOOK='" + s.WebhookURL + "'\n",
		"export IRCTL_STATUS_WEBHOOK_SECRET='" + s.WebhookSecret + "'\n",
		"export NOTIFY_RECEIVER_URL='" + s.NotifyReceiverURL + "'\n",
	} {
		if !strings.Contains(string(env), want) {
			t.Errorf("env lacks %q", want)
		}
	}
	resp, err := http.Get(s.MailpitURL + "/api/v1/info")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Mailpit API: %v %v", resp, err)
	}
	var info struct{ Version string }
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	t.Logf("Mailpit %s", info.Version)

	marker := "receiver-test-" + strconv.Itoa(os.Getpid())
	resp, err = http.Post(s.SlackWebhookURL, "application/json", strings.NewReader(`{"text":"`+marker+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("Slack webhook answered %d %q, want 200 ok", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.WebhookURL, strings.NewReader(`{"message":"`+marker+`"}`))
	req.Header.Set("X-Irctl-Signature", "sha256=abc")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var got []sandbox.Received
	resp, err = http.Get(s.NotifyReceiverURL + "/received")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	kinds := map[string]sandbox.Received{}
	for _, r := range got {
		if strings.Contains(r.Body, marker) {
			kinds[r.Kind] = r
		}
	}
	if len(kinds) != 2 || http.Header(kinds["webhook"].Headers).Get("X-Irctl-Signature") != "sha256=abc" {
		t.Errorf("received %+v", kinds)
	}
	if len(s.Received()) != len(got) {
		t.Errorf("Received() has %d, the API %d", len(s.Received()), len(got))
	}
}
