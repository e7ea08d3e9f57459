package sandbox

// What irctl's notify actions deliver to on the sandbox: Mailpit (a real
// SMTP server, built into bin/ by `make sandbox-bins`, whose HTTP API
// tests read to see what arrived) and, in the sandbox's own process, a
// receiver that records Slack incoming-webhook posts (answering "ok" as
// Slack does), Slack chat.postMessage calls and generic webhook posts
// (recording headers and body, checking nothing), and lists them at
// GET /received.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// notifyBins are the sandbox's notification servers.
var notifyBins = []string{"mailpit"}

// Received is one request the receiver recorded.
type Received struct {
	Time    time.Time           `json:"time"`
	Kind    string              `json:"kind"` // slack-webhook, slack-api, webhook
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

// notifyReceiver is the in-process receiver.
type notifyReceiver struct {
	URL string
	srv *http.Server

	mu  sync.Mutex
	got []Received
}

func startNotifyReceiver() (*notifyReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &notifyReceiver{URL: "http://" + ln.Addr().String()}
	r.srv = &http.Server{Handler: r.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *notifyReceiver) handler() http.Handler {
	mux := http.NewServeMux()
	rec := func(kind string, req *http.Request) (Received, error) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			return Received{}, err
		}
		got := Received{Time: time.Now().UTC(), Kind: kind, Path: req.URL.Path, Headers: req.Header.Clone(), Body: string(body)}
		r.mu.Lock()
		r.got = append(r.got, got)
		r.mu.Unlock()
		return got, nil
	}
	mux.HandleFunc("POST /slack/api/chat.postMessage", func(w http.ResponseWriter, req *http.Request) {
		got, err := rec("slack-api", req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		channel := "C000"
		if err := req.ParseForm(); err == nil && req.Form.Get("channel") != "" {
			channel = req.Form.Get("channel")
		} else if v := formValue(got.Body, "channel"); v != "" {
			channel = v
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": channel, "ts": strconv.FormatInt(got.Time.UnixMicro(), 10)})
	})
	mux.HandleFunc("POST /slack/", func(w http.ResponseWriter, req *http.Request) {
		if _, err := rec("slack-webhook", req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /webhook/", func(w http.ResponseWriter, req *http.Request) {
		if _, err := rec("webhook", req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.received())
	})
	return mux
}

// formValue reads key from an url-encoded body already consumed.
func formValue(body, key string) string {
	for _, kv := range strings.Split(body, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k == key {
			return v
		}
	}
	return ""
}

func (r *notifyReceiver) received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received{}, r.got...)
}

func (r *notifyReceiver) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

// Received returns what the receiver got so far (tests in this process;
// others GET NotifyReceiverURL + "/received").
func (s *Sandbox) Received() []Received {
	if s.receiver == nil {
		return nil
	}
	return s.receiver.received()
}

// startNotify starts Mailpit and the receiver and sets their URLs.
func (s *Sandbox) startNotify(ctx context.Context, binDir string) error {
	smtpPort, err := freePort()
	if err != nil {
		return err
	}
	httpPort, err := freePort()
	if err != nil {
		return err
	}
	args := []string{
		"--smtp=127.0.0.1:" + strconv.Itoa(smtpPort),
		"--listen=127.0.0.1:" + strconv.Itoa(httpPort),
		"--database=" + filepath.Join(s.kubeDir, "mailpit.db"),
		// Any user and password, over plain SMTP on loopback, so that
		// notify.email's auth is exercised without a certificate.
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		"--disable-version-check", "--quiet",
	}
	comp, err := startComponent("mailpit", filepath.Join(binDir, "mailpit"), args, s.kubeDir)
	if err != nil {
		return err
	}
	s.cluster.comps = append(s.cluster.comps, comp)
	s.record("mailpit", comp.cmd.Process.Pid, comp.cmd.Path)
	s.MailpitSMTPHost, s.MailpitSMTPPort = "127.0.0.1", smtpPort
	s.MailpitURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := waitMailpit(ctx, comp, s.MailpitURL); err != nil {
		return err
	}
	if s.receiver, err = startNotifyReceiver(); err != nil {
		return err
	}
	s.NotifyReceiverURL = s.receiver.URL
	s.SlackWebhookURL = s.receiver.URL + "/slack/services/T0SANDBOX/B0SANDBOX/" + randomHex(12)
	s.WebhookURL = s.receiver.URL + "/webhook/status-page"
	s.WebhookSecret = randomHex(16)
	return nil
}

// waitMailpit waits until Mailpit's API answers (or it exits).
func waitMailpit(ctx context.Context, comp *component, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if err := comp.running(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/info", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mailpit did not answer at %s: %w", base, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notifyEnv is the env file's notification part.
func (s *Sandbox) notifyEnv() string {
	if s.MailpitURL == "" {
		return ""
	}
	return fmt.Sprintf("# notifications: Mailpit (SMTP, and its API and UI) and the webhook receiver (GET $NOTIFY_RECEIVER_URL/received)\n"+
		"export MAILPIT_URL=%s\nexport MAILPIT_SMTP_HOST=%s\nexport MAILPIT_SMTP_PORT=%s\nexport NOTIFY_RECEIVER_URL=%s\n"+
		"export IRCTL_SLACK_WEBHOOK=%s\nexport IRCTL_STATUS_WEBHOOK=%s\nexport IRCTL_STATUS_WEBHOOK_SECRET=%s\n",
		shellQuote(s.MailpitURL), shellQuote(s.MailpitSMTPHost), shellQuote(strconv.Itoa(s.MailpitSMTPPort)), shellQuote(s.NotifyReceiverURL),
		shellQuote(s.SlackWebhookURL), shellQuote(s.WebhookURL), shellQuote(s.WebhookSecret))
}
