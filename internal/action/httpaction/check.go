// Package httpaction holds the HTTP actions: health checks of the service
// under attack (the runbooks check the orchestrator API's /health).
package httpaction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// Check is a health check: GET a URL until it answers the expected status
// (and, optionally, a body matching a regexp), or the retries run out.
type Check struct {
	// Client is the HTTP client; nil means a client without redirects
	// followed, so a 302 to a login page is not taken for a 200.
	Client *http.Client
}

const (
	defaultStatus   = http.StatusOK
	defaultTimeout  = 10 * time.Second
	defaultInterval = 2 * time.Second
	// maxBody bounds what is read of a response to match the regexp.
	maxBody = 1 << 20
)

func (Check) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "http.check",
		Description: "Health check: GET a URL (optionally with headers or a bearer token, never shown) and expect a status (default 200) " +
			"and optionally a body matching a regexp, retrying at an interval; fails when no attempt passes. Changes nothing. " +
			"With status 401 it checks that a credential is refused.",
		Params: []runbook.ParamDef{
			// Secret: the URL may carry user:password@, so the journal shows
			// it redacted; plans and results show it without the userinfo.
			{Name: "url", Type: runbook.String, Required: true, Secret: true, Description: "http(s) URL to GET; user:password@ in it is never shown"},
			{Name: "status", Type: runbook.Int, Default: int64(defaultStatus), Description: "expected HTTP status"},
			{Name: "body", Type: runbook.String, Description: "regexp the response body must match (RE2, first 1 MiB)"},
			{Name: "timeout", Type: runbook.Duration, Default: defaultTimeout, Description: "timeout of each attempt"},
			{Name: "retries", Type: runbook.Int, Description: "further attempts after a failed one"},
			{Name: "interval", Type: runbook.Duration, Default: defaultInterval, Description: "wait between attempts"},
			// Secret: headers carry credentials (the check that a leaked key
			// is refused sends it); plans show their names only.
			{Name: "headers", Type: runbook.Map, Secret: true, Description: "request headers, e.g. {X-API-Key: \"{{ .leaked_key }}\"}; only their names are ever shown"},
			{Name: "bearer", Type: runbook.String, Secret: true, Description: "a token sent as Authorization: Bearer; never shown"},
		},
		Validate: func(p runbook.Params) error {
			_, err := params(p)
			return err
		},
	}
}

// checkParams are the params, read and checked in one place.
type checkParams struct {
	url      *url.URL
	status   int
	body     *regexp.Regexp
	timeout  time.Duration
	retries  int
	interval time.Duration
	header   http.Header
}

func params(p runbook.Params) (checkParams, error) {
	c := checkParams{status: int(p.Int("status")), timeout: p.Duration("timeout"), interval: p.Duration("interval")}
	u, err := url.Parse(p.String("url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("url %q: want http(s)://host[:port][/path]", Redact(p.String("url")))
	}
	c.url = u
	if c.status < 100 || c.status > 599 {
		return c, fmt.Errorf("status %d: want an HTTP status, 100 to 599", c.status)
	}
	if p.String("body") != "" {
		if c.body, err = regexp.Compile(p.String("body")); err != nil {
			return c, fmt.Errorf("body %q: %v", p.String("body"), err)
		}
	}
	if c.timeout <= 0 {
		return c, fmt.Errorf("timeout %s: want more than 0", c.timeout)
	}
	if n := p.Int("retries"); n < 0 || n > 1000 {
		return c, fmt.Errorf("retries %d: want 0 to 1000", n)
	}
	c.retries = int(p.Int("retries"))
	if c.interval < 0 {
		return c, fmt.Errorf("interval %s: want 0 or more", c.interval)
	}
	c.header = http.Header{}
	for k, v := range p.Map("headers") {
		if !validHeaderName(k) {
			return c, fmt.Errorf("headers: %q is not a header name", k)
		}
		// The value is a secret: say what is wrong, never what it is.
		if strings.ContainsAny(v, "\r\n\x00") {
			return c, fmt.Errorf("headers: the value of %s has a line break or NUL", k)
		}
		c.header.Set(k, v)
	}
	// An empty token sends no Authorization header, and a check that a
	// credential is refused would pass on "missing credentials".
	if p.Has("bearer") && p.String("bearer") == "" {
		return c, fmt.Errorf("bearer is empty: the check would send no credential at all")
	}
	if b := p.String("bearer"); b != "" {
		if c.header.Get("Authorization") != "" {
			return c, fmt.Errorf("give bearer or an Authorization header, not both")
		}
		if strings.ContainsAny(b, "\r\n\x00 ") {
			return c, fmt.Errorf("bearer: the token has a space, line break or NUL")
		}
		c.header.Set("Authorization", "Bearer "+b)
	}
	return c, nil
}

// validHeaderName is RFC 9110's token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Redact drops the userinfo of a URL (user and password both: a user
// name can be a token too), for anything shown or recorded.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "[unparseable URL]"
	}
	u.User = nil
	return u.String()
}

func (c checkParams) what() string {
	s := fmt.Sprintf("GET %s", Redact(c.url.String()))
	if len(c.header) > 0 {
		names := make([]string, 0, len(c.header))
		for k := range c.header {
			names = append(names, k)
		}
		sort.Strings(names)
		s += " with " + strings.Join(names, ", ")
	}
	s += fmt.Sprintf(" expecting %d", c.status)
	if c.body != nil {
		s += fmt.Sprintf(" and a body matching %q", c.body.String())
	}
	return s
}

func (Check) Plan(_ context.Context, _ *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := params(p)
	if err != nil {
		return nil, err
	}
	summary := c.what()
	if c.retries > 0 {
		summary += fmt.Sprintf(", up to %d attempts %s apart", c.retries+1, c.interval)
	}
	return &action.Plan{Summary: summary, Targets: []string{Redact(c.url.String())}}, nil
}

// Apply runs the check, under every dry-run mode too: it only reads.
func (h Check) Apply(ctx context.Context, _ *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	c, err := params(p)
	if err != nil {
		return nil, err
	}
	client := h.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	var last error
	for attempt := 1; attempt <= c.retries+1; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: interrupted after %d attempts; last: %v", c.what(), attempt-1, last)
			case <-time.After(c.interval):
			}
		}
		if last = c.attempt(ctx, client); last == nil {
			return &action.Result{Summary: fmt.Sprintf("%s: passed on attempt %d of %d", c.what(), attempt, c.retries+1)}, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s: failed after %d attempts; last: %v", c.what(), c.retries+1, last)
}

func (c checkParams) attempt(ctx context.Context, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url.String(), nil)
	if err != nil {
		return errors.New("bad request")
	}
	req.Header = c.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error repeats the URL; say only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", c.timeout)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != c.status {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		return fmt.Errorf("reading the body: %v", err)
	}
	if c.body != nil && !c.body.Match(body) {
		return fmt.Errorf("status %d but the body does not match %q", resp.StatusCode, c.body.String())
	}
	return nil
}
