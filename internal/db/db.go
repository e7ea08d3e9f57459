// Package db opens irctl's PostgreSQL pool and runs writes in transactions
// that are committed, or rolled back for a server-side dry run.
package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/tracelog"
	"github.com/rs/zerolog"
)

// LockTimeout bounds how long an irctl write waits for a row lock held by
// the application, so a responder is told instead of hanging.
const LockTimeout = "10s"

// Open connects using url, or, when url is empty, libpq's PG* environment
// variables. It pings so that an unreachable server fails here, in one line
// that never contains the password. Statements are logged at debug level
// without their arguments, which may hold secrets.
func Open(ctx context.Context, url, appName string, log zerolog.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors redact the password, but keep ours shorter.
		return nil, fmt.Errorf("database URL: %s", lastPart(err.Error()))
	}
	if url == "" && os.Getenv("PGHOST") == "" && os.Getenv("PGDATABASE") == "" {
		return nil, errors.New("no database configured: pass --database-url or set IRCTL_DATABASE_URL (or libpq's PG* variables)")
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	PinExecMode(cfg.ConnConfig)
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	cfg.MaxConns = 8
	if log.GetLevel() <= zerolog.DebugLevel {
		cfg.ConnConfig.Tracer = &tracelog.TraceLog{
			Logger:   queryLogger(log),
			LogLevel: tracelog.LogLevelDebug,
			Config:   &tracelog.TraceLogConfig{TimeKey: "duration"},
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database %s: %s", Where(cfg.ConnConfig), lastPart(err.Error()))
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s is unreachable: %s", Where(cfg.ConnConfig), lastPart(err.Error()))
	}
	return pool, nil
}

// PinExecMode keeps every statement on the extended protocol with the
// parameter types described by the server, whatever the URL's
// default_query_exec_mode says: under simple_protocol pgx interpolates the
// values into the SQL text on the client, and exec guesses the types from
// Go values. cache_describe and describe_exec (the modes for transaction
// poolers such as PgBouncer) describe on the server too and are kept.
func PinExecMode(c *pgx.ConnConfig) {
	switch c.DefaultQueryExecMode {
	case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec:
	default:
		c.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	}
}

// queryLogger adapts pgx's tracelog to zerolog, dropping bound arguments:
// only their number is logged.
func queryLogger(log zerolog.Logger) tracelog.LoggerFunc {
	return func(_ context.Context, level tracelog.LogLevel, msg string, data map[string]any) {
		ev := log.WithLevel(zerolog.DebugLevel)
		if level <= tracelog.LogLevelError {
			ev = log.Warn()
		}
		for k, v := range data {
			if k == "args" {
				if args, ok := v.([]any); ok {
					ev = ev.Int("args", len(args))
				}
				continue
			}
			ev = ev.Interface(k, v)
		}
		ev.Msg("sql " + msg)
	}
}

// Where names a database without credentials: user@host:port/db.
func Where(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

func lastPart(msg string) string {
	if i := strings.LastIndex(msg, ": "); i > 0 {
		// Keep "dial error (...)" style tails but drop the nested prefixes.
		tail := msg[i+2:]
		if len(tail) > 12 {
			return tail
		}
	}
	return msg
}

// InTx runs fn in a transaction with a lock timeout and a statement
// timeout (see SetStatementTimeout). When commit is false (server-side dry
// run, or planning) the transaction is rolled back, so nothing changes but
// the counts are the server's own.
func InTx(ctx context.Context, pool *pgxpool.Pool, commit bool, timeout time.Duration, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	// Rollback after Commit is a no-op; it also ends the transaction when
	// fn fails or ctx is canceled, so no session is left idle in transaction.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", LockTimeout); err != nil {
		return err
	}
	if err := SetStatementTimeout(ctx, tx, timeout); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	if !commit {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// StatementTimeout is how long a statement of this step may run: the time
// left until ctx's deadline (the step's), or def when that is sooner or
// there is no deadline. Zero means no limit.
func StatementTimeout(ctx context.Context, def time.Duration) (time.Duration, error) {
	d := def
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		if d <= 0 || left < d {
			d = left
		}
	}
	return d, nil
}

// SetStatementTimeout sets statement_timeout for the rest of tx, so that
// the server itself cancels a runaway statement when the step's time is
// up, instead of working on after the client has given up.
func SetStatementTimeout(ctx context.Context, tx pgx.Tx, def time.Duration) error {
	d, err := StatementTimeout(ctx, def)
	if err != nil {
		return err
	}
	// Milliseconds, rounded up: 0 would mean no limit at all.
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if d > 0 && ms == 0 {
		ms = 1
	}
	_, err = tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", strconv.FormatInt(int64(ms), 10))
	return err
}

// Describe turns a PostgreSQL error into one line with its SQLSTATE.
func Describe(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		s := fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
		if pe.Position > 0 {
			s += fmt.Sprintf(" at character %d", pe.Position)
		}
		return s
	}
	return err.Error()
}
