// Package action defines what a runbook step does: an Action plans against
// the live servers, then applies. Actions never print, prompt or read flags;
// the engine does that around them.
package action

import (
	"context"
	"encoding/json"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

// DryRun is the --dry-run strategy.
type DryRun string

// Dry-run strategies, as kubectl names them.
const (
	DryRunNone   DryRun = "none"
	DryRunClient DryRun = "client" // plan only, no server writes
	DryRunServer DryRun = "server" // writes sent with dryRun=All, SQL rolled back
)

// Env is what an action may use. Clients are constructed lazily so that
// a runbook using only SQL never needs a kubeconfig, and vice versa.
type Env struct {
	Kube     func() (*kube.Clients, error)
	DB       func(ctx context.Context) (*pgxpool.Pool, error)
	DryRun   DryRun
	Log      zerolog.Logger
	Now      func() time.Time
	Incident string
	// Declared returns when the incident was declared (checks of what
	// happened since, such as k8s.secrets-rotated); nil outside an
	// incident.
	Declared func() (time.Time, error)
	// Secrets are the values of the runbook's secret params: whatever an
	// action records (evidence manifests, results) shows them redacted.
	Secrets []string
	// FingerprintKey returns the incident's key for fingerprints of secret
	// values (see redact.Fingerprint); nil means a key for this process
	// only.
	FingerprintKey func() ([]byte, error)
	// Evidence opens the incident's evidence store on first use; it fails
	// under --dry-run=client, which writes nothing.
	Evidence func() (*evidence.Store, error)
	// Progress is how a long step says how far it is (pods labelled, rows
	// exported); the engine draws it on a terminal. It may be nil: its
	// methods then do nothing, so actions report unconditionally.
	Progress *progress.Counter
	// Files is the runbook's directory, where a step's relative paths
	// (k8s.apply's manifests) resolve: the directory of a runbook file on
	// disk, or the shipped runbooks' embedded directory. Nil when the
	// runbook is not known (undo reads the journal only).
	Files fs.FS
	// Step names the step being planned or applied ("phase/step"): notify
	// actions key what they send by it.
	Step string
	// AddSecrets adds values an action read from the environment or a
	// file (a webhook URL, a token) to what output, journal and evidence
	// redact; nil adds nowhere. Use Env.Secret.
	AddSecrets func(values ...string)
	// Sent reports whether a notification with this key was delivered by
	// an earlier run: when, and the journal record that says so. Nil
	// knows nothing (tests, undo).
	Sent func(key string) (at time.Time, seq int, ok bool)
	// Info describes the incident so far (declared metadata, what each
	// phase did, what is next), from the journal; nil means unknown.
	Info func() (*IncidentInfo, error)
}

// Secret redacts values from here on (see AddSecrets).
func (e *Env) Secret(values ...string) {
	if e.AddSecrets != nil {
		e.AddSecrets(values...)
	}
}

// Plan is what a step will do, resolved against the live servers.
type Plan struct {
	Summary  string   `json:"summary"`
	Targets  []string `json:"targets,omitempty"`
	Count    int      `json:"count"` // objects or rows that will change
	Noop     bool     `json:"noop,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Diff is a multi-line detail of the plan (k8s.apply's per-object
	// diff), one line an entry, shown with its indentation kept.
	Diff []string `json:"diff,omitempty"`
	// Message is the text a notification will send, shown under the plan.
	Message string `json:"message,omitempty"`
	// External marks a notice to people outside the organisation
	// (customers, regulators, law enforcement): the engine saves Message
	// as evidence and asks before applying even under --yes, unless
	// --allow-external is given.
	External bool `json:"external,omitempty"`
	// State carries what Apply needs from planning (never serialised).
	State any `json:"-"`
}

// Failure is one target that did not get done.
type Failure struct {
	Target string `json:"target"`
	Error  string `json:"error"`
}

// Result is what a step did.
type Result struct {
	Summary string    `json:"summary"`
	Changed int       `json:"changed"`
	Failed  []Failure `json:"failed,omitempty"`
	// Undo is the action's own record of what it changed, enough for Undo
	// to reverse it; recorded in the journal.
	Undo json.RawMessage `json:"undo,omitempty"`
	// Irreversible says why this change cannot be undone, when it cannot.
	Irreversible string `json:"irreversible,omitempty"`
	// Table is tabular output (query results) the engine shows.
	Table *Table `json:"table,omitempty"`
	// Sent are the keys of the notifications delivered (see Env.Sent);
	// the engine journals them, only when not a dry run.
	Sent []string `json:"sent,omitempty"`
}

// Table is a result's rows as text. Total counts every row of the result
// when Rows holds only the first of them.
type Table struct {
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Total   int        `json:"total"`
}

// Action is one kind of step.
type Action interface {
	Spec() runbook.Spec
	// Plan resolves targets and counts what will change. It must not change
	// anything (a rolled-back transaction or a dryRun=All request is fine).
	Plan(ctx context.Context, env *Env, p runbook.Params) (*Plan, error)
	// Apply makes the change planned, honouring env.DryRun == DryRunServer.
	Apply(ctx context.Context, env *Env, p runbook.Params, plan *Plan) (*Result, error)
}

// Permissioned actions declare the Kubernetes permissions they need, so the
// engine can check them all before the first write.
type Permissioned interface {
	Permissions(p runbook.Params) []kube.Permission
}

// FilePermissioned actions learn the permissions they need from files the
// runbook names (k8s.apply's manifests: their kinds), read from env.Files.
// A file that cannot be read is an error of the preflight, before any write.
type FilePermissioned interface {
	PermissionsIn(env *Env, p runbook.Params) ([]kube.Permission, error)
}

// Undoer actions can reverse what a Result recorded.
type Undoer interface {
	Undo(ctx context.Context, env *Env, undo json.RawMessage) (*Result, error)
}

// Fingerprint identifies a secret value without revealing it, keyed with
// the incident's fingerprint key.
func (e *Env) Fingerprint(value []byte) (string, error) {
	key := redact.ProcessKey()
	if e.FingerprintKey != nil {
		k, err := e.FingerprintKey()
		if err != nil {
			return "", err
		}
		key = k
	}
	return redact.Fingerprint(key, value), nil
}
