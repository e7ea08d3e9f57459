// Package manual is the step a person does by hand (review the last week's
// commits, obtain new provider keys): irctl shows the instructions, waits
// for the operator to say it is done, and journals who said so and when.
package manual

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// Step is the `manual` action.
type Step struct{}

func (Step) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "manual",
		Description: "Something a person does by hand: show the instructions, wait for the operator to confirm it is done, and journal who confirmed when. With --yes (drills) nobody confirms: it is recorded as skipped, not done.",
		Manual:      true,
		Params: []runbook.ParamDef{
			{Name: "instructions", Type: runbook.String, Required: true, Description: "what to do, one step per line"},
			{Name: "done_when", Type: runbook.String, Description: "what the operator checks before confirming (shown with the question)"},
		},
		Validate: func(p runbook.Params) error {
			if strings.TrimSpace(p.String("instructions")) == "" {
				return errors.New("instructions are empty")
			}
			return nil
		},
	}
}

func (Step) Plan(_ context.Context, _ *action.Env, p runbook.Params) (*action.Plan, error) {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(p.String("instructions")), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	summary := fmt.Sprintf("by hand: %d instruction(s)", len(lines))
	if d := p.String("done_when"); d != "" {
		summary += "; done when " + d
	}
	return &action.Plan{Summary: summary, Targets: lines, Count: 1}, nil
}

// Apply is reached only once the operator confirmed; the engine records
// who did.
func (Step) Apply(_ context.Context, env *action.Env, _ runbook.Params, _ *action.Plan) (*action.Result, error) {
	return &action.Result{Summary: "confirmed done by the operator", Changed: 1}, nil
}
