// Package notifyaction holds the notify actions: Slack, email and signed
// webhooks. What they share lives here: credentials read from the
// environment or a file (never the runbook), messages rendered from the
// incident, one delivery per recipient keyed by step, recipient and
// message so that a rerun sends nothing twice, and retries with backoff
// within the step's deadline.
package notifyaction

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/runbook"
)

// DefaultMessage is the message of a step without `message:`. Incident
// fields use [[ ]] so that {{ }} stays the runbook's own params.
const DefaultMessage = `[[.ID]] ([[.Severity]], [[.Status]]): [[.Title]]
Declared [[utc .DeclaredAt]] by [[.DeclaredBy]][[if .Runbook]]; runbook: [[.Runbook]][[end]]
[[if .Done]]Done so far:
[[range .Done]]- [[.Phase]]: [[len .Steps]] step(s), [[.Changed]] change(s)[[if .Failed]], [[.Failed]] failed target(s)[[end]]
[[end]][[else]]Nothing applied yet.
[[end]][[if .Next]]Next: [[join ", " .Next]][[else]]Next: post-incident review[[end]]
`

// DefaultSubject is the subject (email) or title (webhook) by default.
const DefaultSubject = `[[printf "[%s]" .Severity]] [[.ID]] [[.Status]]: [[.Title]]`

// defaultTimeout bounds a notify step, retries included: a channel that
// is down should not hold the phase for the engine's 10 minutes.
const defaultTimeout = 2 * time.Minute

// commonParams are the params every notify action takes.
func commonParams() []runbook.ParamDef {
	return []runbook.ParamDef{
		{Name: "message", Type: runbook.String, Description: "message template over the incident, with [[ ]] delimiters: [[.ID]] [[.Title]] [[.Severity]] [[.Status]] [[.DeclaredAt]] [[.Done]] (phase, steps, changed, failed) [[.Next]]; default: a summary of the incident"},
		{Name: "external", Type: runbook.Bool, Description: "a notice to people outside the organisation (customers, regulators, law enforcement): drafted and saved as evidence, sent only when confirmed, even under --yes, unless --allow-external"},
		{Name: "attempts", Type: runbook.Int, Default: int64(5), Description: "tries per recipient, with backoff (0.5s doubling), within the step's deadline"},
	}
}

var templateFuncs = template.FuncMap{
	"join": func(sep string, v []string) string { return strings.Join(v, sep) },
	"utc":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// parseTemplate checks a message template at load time.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Delims("[[", "]]").Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: bad template: %s", name, strings.TrimPrefix(err.Error(), "template: "+name+":"))
	}
	return t, nil
}

func validateTemplates(p runbook.Params, names ...string) error {
	for _, n := range names {
		if s := p.String(n); s != "" {
			if _, err := parseTemplate(n, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// info is the incident as the engine tells it, or only its ID.
func info(env *action.Env) (*action.IncidentInfo, error) {
	if env.Info == nil {
		return &action.IncidentInfo{ID: env.Incident, Status: "Declared"}, nil
	}
	return env.Info()
}

// texts renders a notice's message and, for the channels that have one,
// its subject, over the incident (returned too, for the channels that
// send its fields).
func texts(env *action.Env, p runbook.Params, subject bool) (in *action.IncidentInfo, msg, subj string, err error) {
	if in, err = info(env); err != nil {
		return nil, "", "", err
	}
	if msg, err = render("message", p.String("message"), DefaultMessage, in); err != nil {
		return nil, "", "", err
	}
	if subject {
		if subj, err = render("subject", p.String("subject"), DefaultSubject, in); err != nil {
			return nil, "", "", err
		}
	}
	return in, msg, subj, nil
}

// render executes the template text (or def when empty) over the incident.
func render(name, text, def string, in *action.IncidentInfo) (string, error) {
	if text == "" {
		text = def
	}
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, in); err != nil {
		return "", fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "template: "+name+":"))
	}
	return b.String(), nil
}

// credential reads a secret from the environment variable named by
// p[envParam] or the file named by p[fileParam], and redacts it from here
// on. Neither given: "" (when optional).
func credential(env *action.Env, p runbook.Params, envParam, fileParam, what string, required bool) (string, error) {
	var v string
	switch {
	case p.String(envParam) != "":
		name := p.String(envParam)
		v = os.Getenv(name)
		if v == "" {
			return "", exitcode.New(exitcode.Precondition, "%s: environment variable %s is not set (%s comes from the environment or a file, never from the runbook); nothing was sent", envParam, name, what)
		}
	case fileParam != "" && p.String(fileParam) != "":
		b, err := os.ReadFile(p.String(fileParam))
		if err != nil {
			return "", exitcode.New(exitcode.Precondition, "%s: %v; nothing was sent", fileParam, err)
		}
		v = strings.TrimSpace(string(b))
		if v == "" {
			return "", exitcode.New(exitcode.Precondition, "%s: %s is empty; nothing was sent", fileParam, p.String(fileParam))
		}
	case required:
		return "", fmt.Errorf("%s needs %s or %s (the name of an environment variable or a file holding it)", what, envParam, fileParam)
	}
	env.Secret(v)
	return v, nil
}

// credentialParams declares the env/file pair of a credential.
func credentialParams(prefix, what string) []runbook.ParamDef {
	return []runbook.ParamDef{
		{Name: prefix + "_env", Type: runbook.String, Description: "name of the environment variable holding " + what},
		{Name: prefix + "_file", Type: runbook.String, Description: "file holding " + what + " (trailing whitespace ignored)"},
	}
}

// delivery is one message to one recipient.
type delivery struct {
	Recipient string // shown: a channel, an address, a webhook's name
	Key       string
	Done      bool // sent by an earlier run
}

// notice is what a notify plan resolved: the rendered text and the
// deliveries; Apply sends it with send.
type notice struct {
	Subject, Message string
	Deliveries       []delivery
	Attempts         int
	send             func(ctx context.Context, d delivery) error
}

// Key identifies a notification: the step, the channel and recipient,
// and the exact text sent.
func Key(step, channel, recipient, subject, message string) string {
	h := sha256.New()
	for _, s := range []string{step, channel, recipient, subject, message} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return channel + ":" + hex.EncodeToString(h.Sum(nil))[:32]
}

// plan builds the plan of a notice: one target per recipient, those sent
// before named with when and where the journal says so.
func plan(env *action.Env, p runbook.Params, channel, summary string, recipients []string, n *notice) *action.Plan {
	pl := &action.Plan{Message: n.Message, External: p.Bool("external"), State: n}
	n.Attempts = int(p.Int("attempts"))
	for _, r := range recipients {
		d := delivery{Recipient: r, Key: Key(env.Step, channel, r, n.Subject, n.Message)}
		if env.Sent != nil {
			if at, seq, ok := env.Sent(d.Key); ok {
				d.Done = true
				pl.Targets = append(pl.Targets, fmt.Sprintf("%s: already sent at %s (journal record %d); not sent again", r, at.UTC().Format(time.RFC3339), seq))
			}
		}
		if !d.Done {
			pl.Count++
			pl.Targets = append(pl.Targets, r)
		}
		n.Deliveries = append(n.Deliveries, d)
	}
	pl.Noop = pl.Count == 0
	pl.Summary = fmt.Sprintf("send %s to %d recipient(s)", summary, pl.Count)
	if len(recipients) == 0 {
		pl.Summary = fmt.Sprintf("no recipients set: %s goes to nobody", summary)
	}
	if pl.External {
		pl.Summary = "EXTERNAL notice: " + pl.Summary
	}
	if n.Subject != "" {
		pl.Summary += fmt.Sprintf(", subject %q", n.Subject)
	}
	if sent := len(recipients) - pl.Count; sent > 0 {
		pl.Summary += fmt.Sprintf(" (%d sent before)", sent)
	}
	return pl
}

// Permanent marks an error retrying cannot fix (a 4xx, a refused
// recipient).
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// backoff is the first wait between tries; it doubles up to maxBackoff.
var backoff, maxBackoff = 500 * time.Millisecond, 8 * time.Second

// apply sends every delivery not sent before, each retried with backoff
// within ctx; one recipient failing does not stop the others.
func apply(ctx context.Context, env *action.Env, pl *action.Plan, channel string) (*action.Result, error) {
	n := pl.State.(*notice)
	res := &action.Result{Irreversible: "a sent notification cannot be recalled"}
	var sent []string
	for _, d := range n.Deliveries {
		if d.Done {
			continue
		}
		if env.DryRun != action.DryRunNone {
			sent = append(sent, d.Recipient)
			continue
		}
		if err := retry(ctx, n.Attempts, func() error { return n.send(ctx, d) }); err != nil {
			res.Failed = append(res.Failed, action.Failure{Target: d.Recipient, Error: err.Error()})
			continue
		}
		res.Changed++
		res.Sent = append(res.Sent, d.Key)
		sent = append(sent, d.Recipient)
	}
	switch {
	case env.DryRun != action.DryRunNone:
		res.Irreversible = ""
		res.Summary = fmt.Sprintf("dry run: would send %s to %s; nothing sent", channel, strings.Join(sent, ", "))
	case len(sent) > 0:
		res.Summary = fmt.Sprintf("sent %s to %s", channel, strings.Join(sent, ", "))
	default:
		res.Irreversible = ""
		res.Summary = fmt.Sprintf("%s: nothing delivered", channel)
	}
	if len(res.Failed) > 0 {
		res.Summary += fmt.Sprintf("; %d recipient(s) failed", len(res.Failed))
	}
	if err := ctx.Err(); err != nil && len(res.Failed) > 0 {
		// Out of time: the engine reports the deadline, with what was sent.
		return res, err
	}
	return res, nil
}

// retry calls fn up to attempts times, waiting backoff (doubling) between
// tries, while ctx lasts; a Permanent error is not retried.
func retry(ctx context.Context, attempts int, fn func() error) error {
	wait := backoff
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if i > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (gave up after %d tries: %v)", err, i, context.Cause(ctx))
			case <-t.C:
			}
			wait = min(2*wait, maxBackoff)
		}
		if err = fn(); err == nil {
			return nil
		}
		var perm *Permanent
		if errors.As(err, &perm) {
			return err
		}
	}
	if attempts > 1 {
		return fmt.Errorf("%w (after %d tries)", err, attempts)
	}
	return err
}
