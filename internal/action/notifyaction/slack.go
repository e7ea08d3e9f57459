package notifyaction

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/slack-go/slack"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// Slack posts the message to a Slack channel: through an incoming webhook
// (webhook_url_env/_file), or with chat.postMessage and a bot token
// (token_env/_file and channel).
type Slack struct{}

func (Slack) Spec() runbook.Spec {
	params := append(commonParams(),
		runbook.ParamDef{Name: "channel", Type: runbook.String, Description: "channel, e.g. #security-incidents (required with a bot token; an incoming webhook posts to its own channel)"},
		runbook.ParamDef{Name: "api_url", Type: runbook.String, Default: slack.APIURL, Description: "Slack Web API base URL (bot token mode)"},
	)
	params = append(params, credentialParams("webhook_url", "the incoming webhook URL")...)
	params = append(params, credentialParams("token", "the bot token (xoxb-...)")...)
	return runbook.Spec{
		Name:        "notify.slack",
		Description: "Post the incident's message to Slack (incoming webhook, or chat.postMessage with a bot token); credentials from the environment or a file; never sent twice.",
		Params:      params,
		Timeout:     defaultTimeout,
		Validate: func(p runbook.Params) error {
			hook := p.String("webhook_url_env") != "" || p.String("webhook_url_file") != ""
			tok := p.String("token_env") != "" || p.String("token_file") != ""
			switch {
			case hook == tok:
				return errors.New("give either webhook_url_env/webhook_url_file (incoming webhook) or token_env/token_file (bot token)")
			case tok && p.String("channel") == "":
				return errors.New("a bot token needs channel")
			}
			return validateTemplates(p, "message")
		},
	}
}

func (Slack) Plan(_ context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	_, msg, _, err := texts(env, p, false)
	if err != nil {
		return nil, err
	}
	channel := p.String("channel")
	n := &notice{Message: msg}
	var how string
	if p.String("webhook_url_env") != "" || p.String("webhook_url_file") != "" {
		hook, err := credential(env, p, "webhook_url_env", "webhook_url_file", "the Slack webhook URL", true)
		if err != nil {
			return nil, err
		}
		how = "via incoming webhook"
		n.send = func(ctx context.Context, _ delivery) error {
			return slackErr(slack.PostWebhookContext(ctx, hook, &slack.WebhookMessage{Text: msg, Channel: channel}))
		}
		if channel == "" {
			channel = "(the webhook's own channel)"
		}
	} else {
		token, err := credential(env, p, "token_env", "token_file", "the Slack bot token", true)
		if err != nil {
			return nil, err
		}
		how = "with chat.postMessage"
		api := slack.New(token, slack.OptionAPIURL(strings.TrimSuffix(p.String("api_url"), "/")+"/"))
		n.send = func(ctx context.Context, _ delivery) error {
			_, _, err := api.PostMessageContext(ctx, channel, slack.MsgOptionText(msg, false))
			return slackErr(err)
		}
	}
	return plan(env, p, "slack", "a Slack message "+how, []string{"slack " + channel}, n), nil
}

// slackErr marks the errors retrying cannot fix: a client error from the
// webhook (bad URL, archived channel) or a Web API error such as
// channel_not_found; rate limits and server errors are retried.
func slackErr(err error) error {
	if err == nil {
		return nil
	}
	var se slack.StatusCodeError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout {
		return &Permanent{Err: fmt.Errorf("slack answered %d %s", se.Code, se.Status)}
	}
	var sr slack.SlackErrorResponse
	if errors.As(err, &sr) {
		return &Permanent{Err: fmt.Errorf("slack: %s", sr.Err)}
	}
	return err
}

func (Slack) Apply(ctx context.Context, env *action.Env, _ runbook.Params, pl *action.Plan) (*action.Result, error) {
	return apply(ctx, env, pl, "Slack message")
}
