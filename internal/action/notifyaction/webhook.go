package notifyaction

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// SignatureHeader carries the HMAC-SHA256 of the body, keyed with the
// step's secret, as "sha256=<hex>": the receiver checks it came from us.
const SignatureHeader = "X-Irctl-Signature"

// Webhook POSTs the incident's message as JSON to a status page or paging
// tool, signed with HMAC-SHA256 when a secret is given.
type Webhook struct {
	// Client is the HTTP client; nil means one that follows no redirects
	// (a signed body is for the URL given, not wherever it points).
	Client *http.Client
}

// WebhookBody is what the webhook receives.
type WebhookBody struct {
	Incident string `json:"incident"`
	Severity string `json:"severity"`
	Status   string `json:"status"`
	Title    string `json:"title"`
	Subject  string `json:"subject"`
	Message  string `json:"message"`
	External bool   `json:"external,omitempty"`
}

func (Webhook) Spec() runbook.Spec {
	params := append(commonParams(),
		runbook.ParamDef{Name: "name", Type: runbook.String, Description: "what the webhook is (\"status page\"), shown as the recipient; default: the URL's host"},
		runbook.ParamDef{Name: "subject", Type: runbook.String, Description: "title template ([[ ]] over the incident)"},
	)
	params = append(params, credentialParams("url", "the webhook URL (it often carries a token)")...)
	params = append(params, credentialParams("secret", "the HMAC-SHA256 signing key")...)
	return runbook.Spec{
		Name:        "notify.webhook",
		Description: "POST the incident's message as JSON to a webhook (status page, paging tool), signed with HMAC-SHA256 in " + SignatureHeader + "; URL and key from the environment or a file; never sent twice.",
		Params:      params,
		Timeout:     defaultTimeout,
		Validate: func(p runbook.Params) error {
			if p.String("url_env") == "" && p.String("url_file") == "" {
				return errors.New("give url_env or url_file (the webhook URL comes from the environment or a file)")
			}
			return validateTemplates(p, "message", "subject")
		},
	}
}

// Sign returns the signature header's value for body.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (w Webhook) Plan(_ context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	in, msg, subj, err := texts(env, p, true)
	if err != nil {
		return nil, err
	}
	raw, err := credential(env, p, "url_env", "url_file", "the webhook URL", true)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the webhook URL from %s%s is not an http(s) URL", p.String("url_env"), p.String("url_file"))
	}
	key, err := credential(env, p, "secret_env", "secret_file", "the signing key", false)
	if err != nil {
		return nil, err
	}
	name := p.String("name")
	if name == "" {
		name = u.Host
	}
	body, err := json.Marshal(WebhookBody{Incident: in.ID, Severity: in.Severity, Status: in.Status, Title: in.Title, Subject: subj, Message: msg, External: p.Bool("external")})
	if err != nil {
		return nil, err
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	n := &notice{Subject: subj, Message: msg}
	n.send = func(ctx context.Context, _ delivery) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
		if err != nil {
			return &Permanent{Err: err}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "irctl")
		if key != "" {
			req.Header.Set(SignatureHeader, Sign([]byte(key), body))
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("POST to %s: %w", name, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return nil
		}
		err = fmt.Errorf("%s answered %s", name, resp.Status)
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
			return &Permanent{Err: err}
		}
		return err
	}
	signed := "unsigned"
	if key != "" {
		signed = "signed with HMAC-SHA256"
	}
	return plan(env, p, "webhook", fmt.Sprintf("a JSON POST (%s)", signed), []string{"webhook " + name}, n), nil
}

func (Webhook) Apply(ctx context.Context, env *action.Env, _ runbook.Params, pl *action.Plan) (*action.Result, error) {
	return apply(ctx, env, pl, "webhook notice")
}
