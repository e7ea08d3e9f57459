package engine

import (
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
)

// applyEnv is the environment a step applies in: e.Env with a progress
// counter drawn by a bar of its own, when there are bars. done clears it.
func (e *Engine) applyEnv(s runbook.Step) (env *action.Env, done func()) {
	env = e.stepEnv(s)
	if e.Bars == nil {
		return env, func() {}
	}
	bar := e.Bars("  " + s.Name)
	env.Progress = bar.Counter()
	return env, bar.Close
}
