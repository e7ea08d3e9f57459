package sqlaction

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/runbook"
)

// clientPlan plans a write under --dry-run=client without running it: the
// rolled-back run a server dry run makes would still take row locks and
// wait on the application's. The statement is only parsed (its
// placeholders checked against args), in a READ ONLY transaction, and the
// rows are counted by count_sql when the step has one.
func (Exec) clientPlan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	args, err := BindArgs(p.Any("args"))
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return nil, err
	}
	what := p.String("summary")
	if what == "" {
		what = oneLine(p.String("sql"))
	}
	var rows int64
	counted := p.String("count_sql") != ""
	err = readOnlyTx(ctx, pool, pgx.ReadCommitted, timeoutOf(p), func(tx pgx.Tx) error {
		sd, err := tx.Conn().PgConn().Prepare(ctx, "", p.String("sql"), nil)
		if err != nil {
			return fmt.Errorf("sql: %s", db.Describe(err))
		}
		if len(sd.ParamOIDs) != len(args) {
			return fmt.Errorf("sql has %d placeholder(s) but args gives %d value(s)", len(sd.ParamOIDs), len(args))
		}
		if !counted {
			return nil
		}
		if bindsSecret(env.Secrets, args) {
			if err := db.HideSecretParams(ctx, tx, false); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, p.String("count_sql"), args...).Scan(&rows); err != nil {
			return fmt.Errorf("count_sql: %s", db.Describe(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !counted {
		return &action.Plan{Summary: fmt.Sprintf("%s: rows not counted (a client dry run never runs the write, and the step has no count_sql; --dry-run=server counts them)", what)}, nil
	}
	return &action.Plan{
		Summary: fmt.Sprintf("%s: %d rows (counted by count_sql; the write did not run)", what, rows),
		Count:   int(rows),
		Noop:    rows == 0,
	}, nil
}
