package notifyaction

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// Email sends the message by SMTP, one message per recipient (so each is
// delivered, retried and deduplicated on its own), with STARTTLS by
// default and the password from the environment or a file.
type Email struct{}

// tlsModes are the smtp_tls values.
var tlsModes = map[string]string{
	"starttls":      "STARTTLS required",
	"opportunistic": "STARTTLS when offered",
	"tls":           "implicit TLS",
	"none":          "no TLS",
}

func (Email) Spec() runbook.Spec {
	params := append(commonParams(),
		runbook.ParamDef{Name: "to", Type: runbook.Strings, Required: true, Description: "recipient addresses; each gets its own message"},
		runbook.ParamDef{Name: "from", Type: runbook.String, Required: true, Description: "sender address"},
		runbook.ParamDef{Name: "subject", Type: runbook.String, Description: "subject template ([[ ]] over the incident); default: severity, ID, status and title"},
		runbook.ParamDef{Name: "smtp_host", Type: runbook.String, Required: true, Description: "SMTP server"},
		runbook.ParamDef{Name: "smtp_port", Type: runbook.Int, Default: int64(587), Description: "SMTP port"},
		runbook.ParamDef{Name: "smtp_tls", Type: runbook.String, Default: "starttls", Description: "starttls (required), opportunistic, tls (implicit, port 465) or none (then a password crosses the network in clear: loopback relays only)"},
		runbook.ParamDef{Name: "username", Type: runbook.String, Description: "SMTP user; with it the password is required"},
	)
	params = append(params, credentialParams("password", "the SMTP password")...)
	return runbook.Spec{
		Name:        "notify.email",
		Description: "Email the incident's message by SMTP (STARTTLS or TLS, optional auth) to each recipient; password from the environment or a file; never sent twice.",
		Params:      params,
		Timeout:     defaultTimeout,
		Validate: func(p runbook.Params) error {
			if _, ok := tlsModes[p.String("smtp_tls")]; !ok {
				return fmt.Errorf("smtp_tls %q: want starttls, opportunistic, tls or none", p.String("smtp_tls"))
			}
			if n := p.Int("smtp_port"); n < 1 || n > 65535 {
				return fmt.Errorf("smtp_port %d: want 1 to 65535", n)
			}
			if _, err := mail.ParseAddress(p.String("from")); err != nil && !strings.Contains(p.String("from"), "{{") {
				return fmt.Errorf("from %q: %v", p.String("from"), err)
			}
			for _, to := range p.Strings("to") {
				if _, err := mail.ParseAddress(to); err != nil {
					return fmt.Errorf("to %q: %v", to, err)
				}
			}
			hasPass := p.String("password_env") != "" || p.String("password_file") != ""
			if (p.String("username") != "") != hasPass {
				return errors.New("username and password_env/password_file go together")
			}
			return validateTemplates(p, "message", "subject")
		},
	}
}

func (Email) Plan(_ context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	_, msg, subj, err := texts(env, p, true)
	if err != nil {
		return nil, err
	}
	subj = strings.Join(strings.Fields(subj), " ") // one header line
	pass, err := credential(env, p, "password_env", "password_file", "the SMTP password", p.String("username") != "")
	if err != nil {
		return nil, err
	}
	opts := []gomail.Option{gomail.WithPort(int(p.Int("smtp_port"))), gomail.WithTimeout(30 * time.Second)}
	switch p.String("smtp_tls") {
	case "starttls":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case "tls":
		opts = append(opts, gomail.WithSSL())
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if u := p.String("username"); u != "" {
		// Without TLS only PLAIN-NOENC sends the password at all: the
		// operator chose smtp_tls none (a relay on loopback, say).
		auth := gomail.SMTPAuthAutoDiscover
		if p.String("smtp_tls") == "none" {
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(u), gomail.WithPassword(pass))
	}
	server := fmt.Sprintf("%s:%d", p.String("smtp_host"), p.Int("smtp_port"))
	n := &notice{Subject: subj, Message: msg}
	from := p.String("from")
	n.send = func(ctx context.Context, d delivery) error {
		c, err := gomail.NewClient(p.String("smtp_host"), opts...)
		if err != nil {
			return &Permanent{Err: err}
		}
		m := gomail.NewMsg()
		if err := m.From(from); err != nil {
			return &Permanent{Err: err}
		}
		if err := m.To(d.Recipient); err != nil {
			return &Permanent{Err: err}
		}
		m.Subject(subj)
		m.SetBodyString(gomail.TypeTextPlain, msg)
		// The key as Message-ID: the same notice, should it be sent
		// again by hand, is recognisably the same.
		m.SetMessageIDWithValue(strings.ReplaceAll(d.Key, ":", ".") + "@irctl")
		m.SetDate()
		if err := c.DialAndSendWithContext(ctx, m); err != nil {
			return fmt.Errorf("SMTP %s: %w", server, err)
		}
		return nil
	}
	return plan(env, p, "email", fmt.Sprintf("an email via %s (%s)", server, tlsModes[p.String("smtp_tls")]), p.Strings("to"), n), nil
}

func (Email) Apply(ctx context.Context, env *action.Env, _ runbook.Params, pl *action.Plan) (*action.Result, error) {
	return apply(ctx, env, pl, "email")
}
