package engine

import (
	"encoding/json"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/redact"
)

// secrets are the runbook's secret values and whatever else the
// environment knows to be secret (the DSN password, a kubeconfig token).
func (e *Engine) secrets() *redact.Set {
	var s []string
	if e.Runbook != nil { // undo works from the journal, without a runbook
		s = append(s, e.Runbook.Secrets...)
	}
	e.secretMu.Lock()
	s = append(s, e.Env.Secrets...)
	e.secretMu.Unlock()
	return redact.New(s...)
}

// redactRecord removes secrets from every free text of a journal record
// before it is written: plans, results, errors (an error can quote a
// value, a URL with its password, a server's message) and failures.
func (e *Engine) redactRecord(r *incident.Record) {
	red := e.secrets()
	r.Plan, r.Result, r.Error, r.Irreversible = red.String(r.Plan), red.String(r.Result), red.String(r.Error), red.String(r.Irreversible)
	if len(r.Failed) > 0 {
		var fs []map[string]any
		if json.Unmarshal(r.Failed, &fs) == nil {
			for i := range fs {
				fs[i] = red.Value(map[string]any(fs[i])).(map[string]any)
			}
			if b, err := json.Marshal(fs); err == nil {
				r.Failed = b
			}
		}
	}
}
