// Package sqlaction holds the PostgreSQL actions. Every user value reaches
// SQL as a bound parameter over the extended protocol; statements come only
// from the runbook.
package sqlaction

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/runbook"
)

// Exec runs one parameterised write (UPDATE/DELETE/INSERT) in a transaction.
type Exec struct{}

func (Exec) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "sql.exec",
		Description: "Run a parameterised SQL write in a transaction, planned by a rolled-back run that reports the row count; an optional guard query must return true before COMMIT.",
		Destructive: true,
		Uses:        []string{runbook.UsesPostgres},
		Params: []runbook.ParamDef{
			{Name: "sql", Type: runbook.String, Required: true, Description: "the statement, with $1, $2... placeholders"},
			{Name: "args", Type: runbook.Any, Description: "values bound to $1, $2...: runbook params keep their types (ints, strings, cidrs, ips)"},
			{Name: "summary", Type: runbook.String, Description: "what the write does, for plans and the journal"},
			{Name: "guard", Type: runbook.String, Description: "a query returning one boolean, run in the same transaction after the write; false aborts and rolls back"},
			{Name: "guard_args", Type: runbook.Any, Description: "values bound to the guard's placeholders"},
			{Name: "guard_message", Type: runbook.String, Default: "guard query returned false", Description: "what a false guard means, for the error"},
			{Name: "max_rows", Type: runbook.Int, Description: "refuse (roll back) when more rows than this would change"},
			{Name: "irreversible", Type: runbook.String, Default: "SQL writes are not reversed by irctl undo", Description: "why irctl undo cannot reverse this write"},
		},
	}
}

type execState struct{ rows int64 }

func (e Exec) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	rows, err := e.run(ctx, env, p, false)
	if err != nil {
		return nil, err
	}
	what := p.String("summary")
	if what == "" {
		what = oneLine(p.String("sql"))
	}
	return &action.Plan{
		Summary: fmt.Sprintf("%s: %d rows", what, rows),
		Count:   int(rows),
		Noop:    rows == 0,
		State:   execState{rows: rows},
	}, nil
}

func (e Exec) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	rows, err := e.run(ctx, env, p, env.DryRun == action.DryRunNone)
	if err != nil {
		return nil, err
	}
	what := p.String("summary")
	if what == "" {
		what = "rows changed"
	}
	summary := fmt.Sprintf("%s: %d rows", what, rows)
	if planned := plan.State.(execState).rows; planned != rows {
		summary += fmt.Sprintf(" (planned %d: the data changed in between)", planned)
	}
	return &action.Result{Summary: summary, Changed: int(rows), Irreversible: p.String("irreversible")}, nil
}

// run executes the statement and the guard in one transaction, committing
// only when commit is true and the guard holds.
func (Exec) run(ctx context.Context, env *action.Env, p runbook.Params, commit bool) (int64, error) {
	args, err := BindArgs(p.Any("args"))
	if err != nil {
		return 0, fmt.Errorf("args: %w", err)
	}
	gargs, err := BindArgs(p.Any("guard_args"))
	if err != nil {
		return 0, fmt.Errorf("guard_args: %w", err)
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return 0, err
	}
	var rows int64
	err = db.InTx(ctx, pool, commit, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, p.String("sql"), args...)
		if err != nil {
			return fmt.Errorf("sql: %s", db.Describe(err))
		}
		rows = tag.RowsAffected()
		if max := p.Int("max_rows"); p.Has("max_rows") && rows > max {
			return fmt.Errorf("would change %d rows, more than max_rows %d; rolled back", rows, max)
		}
		if g := p.String("guard"); g != "" {
			var ok bool
			if err := tx.QueryRow(ctx, g, gargs...).Scan(&ok); err != nil {
				return fmt.Errorf("guard: %s", db.Describe(err))
			}
			if !ok {
				return fmt.Errorf("guard failed: %s; rolled back, nothing changed", p.String("guard_message"))
			}
		}
		return nil
	})
	return rows, err
}

// BindArgs turns a runbook value into pgx arguments. Typed runbook params
// (lists of ints, strings, prefixes, addresses) pass through unchanged, so
// pgx encodes them as arrays of the right type; nothing is ever spliced
// into SQL text.
func BindArgs(v any) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of values for $1, $2..., got %T", v)
	}
	out := make([]any, len(list))
	for i, a := range list {
		switch x := a.(type) {
		case nil, string, int, int64, bool, float64, []string, []int64, []netip.Prefix, []netip.Addr:
			out[i] = x
		case []any:
			ss := make([]string, len(x))
			for j, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("$%d: mixed list; use a typed runbook param (ints, strings, cidrs, ips)", i+1)
				}
				ss[j] = s
			}
			out[i] = ss
		default:
			b, _ := json.Marshal(x)
			return nil, fmt.Errorf("$%d: unsupported value %s", i+1, b)
		}
	}
	return out, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
