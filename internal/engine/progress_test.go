package engine

import (
	"bytes"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/runbook"
)

func TestApplyEnvDrawsTheStepsProgressAndClearsIt(t *testing.T) {
	var term bytes.Buffer
	shared := &action.Env{}
	e := &Engine{Env: shared, Bars: func(label string) *progress.Bar { return progress.NewBar(&term, label, false) }}
	env, done := e.applyEnv(runbook.Step{Name: "quarantine-pods"})
	env.Progress.Start(3, "pods labelled")
	env.Progress.Add(3)
	done()
	if out := term.String(); !strings.Contains(out, "  quarantine-pods  3/3 pods labelled  100%") || !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("drawn %q", out)
	}
	if shared.Progress != nil {
		t.Error("the step's counter leaked into the shared environment")
	}

	// Without bars (stderr not a terminal, or -o json) the action's
	// reports go nowhere.
	e.Bars = nil
	env, done = e.applyEnv(runbook.Step{Name: "x"})
	env.Progress.Start(3, "pods")
	done()
	if env.Progress != nil || env.Step != "/x" {
		t.Error("no bars should mean the shared environment, naming the step, without a counter")
	}
}
