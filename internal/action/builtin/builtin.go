// Package builtin assembles the registry of every action irctl ships.
package builtin

import (
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/credaction"
	"irctl.dev/irctl/internal/action/httpaction"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/action/manual"
	"irctl.dev/irctl/internal/action/notifyaction"
	"irctl.dev/irctl/internal/action/promaction"
	"irctl.dev/irctl/internal/action/sqlaction"
)

// Registry returns a registry of all built-in actions.
func Registry() *action.Registry {
	return action.NewRegistry(
		kubeaction.Label{},
		kubeaction.Isolate{},
		kubeaction.Cordon{},
		kubeaction.Drain{},
		kubeaction.SecretRotate{},
		kubeaction.SecretSet{},
		sqlaction.Exec{},
		sqlaction.Query{},
		sqlaction.Export{},
		kubeaction.Logs{},
		kubeaction.LogScan{},
		kubeaction.LogWatch{},
		kubeaction.Dump{},
		kubeaction.Snapshot{},
		kubeaction.DebugCopy{},
		promaction.Query{},
		httpaction.Check{},
		credaction.RotatePassword{},
		kubeaction.RevokeIdentity{},
		kubeaction.Job{},
		kubeaction.SetImage{},
		kubeaction.RolloutRestart{},
		kubeaction.Scale{},
		kubeaction.Delete{},
		kubeaction.Find{},
		manual.Step{},
		kubeaction.Apply{},
		kubeaction.SecretsRotated{},
		notifyaction.Slack{},
		notifyaction.Email{},
		notifyaction.Webhook{},
	)
}
