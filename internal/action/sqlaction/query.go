package sqlaction

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

// Query runs a parameterised read-only query, shows its rows and keeps all
// of them as evidence.
type Query struct{}

// DefaultKeepRows is how many rows a query result keeps in memory for the
// table shown (and -o json); every row goes to the evidence file.
const DefaultKeepRows = 1000

func (Query) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "sql.query",
		Timeout:     15 * time.Minute, // the step's default deadline
		Description: "Run a parameterised query in a READ ONLY transaction; show the rows and save them all as evidence (JSON lines or CSV) with the SQL, params and row count.",
		Uses:        []string{runbook.UsesPostgres},
		Table:       true, // `expect:` judges its rows
		Params: []runbook.ParamDef{
			{Name: "sql", Type: runbook.String, Required: true, SQL: true, Description: "the query, with $1, $2... placeholders (no templates: bind values with args)"},
			{Name: "args", Type: runbook.Any, Description: "values bound to $1, $2...: runbook params keep their types (ints, strings, cidrs, ips, durations)"},
			{Name: "summary", Type: runbook.String, Description: "what the query finds, for plans and the journal"},
			{Name: "name", Type: runbook.String, Description: "evidence file name without extension (unset: made from the summary)"},
			{Name: "format", Type: runbook.String, Default: "jsonl", Description: "evidence format: jsonl or csv"},
			{Name: "keep_rows", Type: runbook.Int, Default: int64(DefaultKeepRows), Description: "rows kept for display and -o json; the evidence has them all"},
			{Name: "timeout", Type: runbook.Duration, Default: 5 * time.Minute, Description: "statement timeout"},
		},
		Validate: func(p runbook.Params) error {
			switch p.String("format") {
			case "jsonl", "csv":
			default:
				return fmt.Errorf("format %q: want jsonl or csv", p.String("format"))
			}
			if _, err := bindQueryArgs(p.Any("args")); err != nil {
				return fmt.Errorf("args: %w", err)
			}
			return nil
		},
	}
}

func (q Query) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	what := describeQuery(p)
	args, err := bindQueryArgs(p.Any("args"))
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return nil, err
	}
	// Parse and describe without executing: a bad query fails here, even
	// under --dry-run=client.
	var sd *pgconn.StatementDescription
	err = withConn(ctx, pool, func(c *pgx.Conn) error {
		sd, err = c.PgConn().Prepare(ctx, "", p.String("sql"), nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sql: %s", db.Describe(err))
	}
	if len(sd.ParamOIDs) != len(args) {
		return nil, fmt.Errorf("sql has %d placeholder(s) but args gives %d value(s)", len(sd.ParamOIDs), len(args))
	}
	cols := make([]string, len(sd.Fields))
	for i, f := range sd.Fields {
		cols[i] = f.Name
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("sql returns no columns: sql.query is for SELECT queries (use sql.exec for writes)")
	}
	return &action.Plan{
		Summary: fmt.Sprintf("%s: read-only query returning %d column(s) (%s), rows saved as evidence %s%s",
			what, len(cols), strings.Join(cols, ", "), queryEvidenceName(p, env.Secrets), collectNote(env)),
	}, nil
}

func (q Query) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	args, err := bindQueryArgs(p.Any("args"))
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return nil, err
	}
	store, err := env.Evidence()
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	keep := int(p.Int("keep_rows"))
	src := evidence.Source{
		Kind: evidence.KindSQL, Server: db.Where(pool.Config().ConnConfig),
		SQL: p.String("sql"), Params: p.Display(q.Spec(), env.Secrets)["args"],
	}
	w, err := store.Create(queryEvidenceName(p, env.Secrets), src)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	enc := newRowEncoder(w, p.String("format"))
	table := &action.Table{}
	var n int64
	secret := bindsSecret(env.Secrets, args)
	err = readOnlyTx(ctx, pool, pgx.ReadCommitted, timeoutOf(p), func(tx pgx.Tx) error {
		if secret {
			if err := db.HideSecretParams(ctx, tx, false); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, p.String("sql"), append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		fields := rows.FieldDescriptions()
		for _, f := range fields {
			table.Columns = append(table.Columns, f.Name)
		}
		if err := enc.header(fields); err != nil {
			return err
		}
		for rows.Next() {
			raw := rows.RawValues()
			if err := enc.row(raw); err != nil {
				return err
			}
			if int(n) < keep {
				table.Rows = append(table.Rows, displayRow(raw))
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return enc.flush()
	})
	if err != nil {
		return nil, fmt.Errorf("sql: %s", db.Describe(err))
	}
	e, err := w.Commit(evidence.Extra{Rows: &n})
	if err != nil {
		return nil, err
	}
	table.Total = int(n)
	return &action.Result{
		Summary: fmt.Sprintf("%s: %d row(s); saved as evidence %s (sha256 %s)%s", describeQuery(p), n, e.Name, e.SHA256[:12], collectNote(env)),
		Table:   table,
	}, nil
}

func describeQuery(p runbook.Params) string {
	if s := p.String("summary"); s != "" {
		return s
	}
	return oneLine(p.String("sql"))
}

// queryEvidenceName names the evidence file; a name taken from a summary
// that templates a secret is redacted first.
func queryEvidenceName(p runbook.Params, secrets []string) string {
	base := p.String("name")
	if base == "" {
		base = redact.New(secrets...).String(p.String("summary"))
	}
	if base == "" {
		base = "query"
	}
	ext := ".jsonl"
	if p.String("format") == "csv" {
		ext = ".csv"
	}
	return "sql/" + evidence.SafeName(base) + ext
}

// collectNote tells a server dry run that evidence is still collected.
func collectNote(env *action.Env) string {
	if env.DryRun == action.DryRunServer {
		return " (collected under --dry-run=server too: collecting evidence is a read)"
	}
	return ""
}

func timeoutOf(p runbook.Params) time.Duration { return p.Duration("timeout") }

// bindQueryArgs is BindArgs plus durations, which pgx binds as intervals.
func bindQueryArgs(v any) ([]any, error) {
	list, ok := v.([]any)
	if !ok {
		return BindArgs(v)
	}
	rest := make([]any, len(list))
	for i, a := range list {
		if _, isDur := a.(time.Duration); !isDur {
			rest[i] = a
		}
	}
	out, err := BindArgs(rest)
	if err != nil {
		return nil, err
	}
	for i, a := range list {
		if d, isDur := a.(time.Duration); isDur {
			out[i] = d
		}
	}
	return out, nil
}

func withConn(ctx context.Context, pool *pgxpool.Pool, fn func(*pgx.Conn) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return fn(c.Conn())
}

// TxBeginner begins transactions: a pool or a connection.
type TxBeginner interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}

// readOnlyTx runs fn in a READ ONLY transaction at the given isolation,
// with times rendered in UTC and a statement timeout (0: none; sooner when
// ctx's deadline is). It always
// rolls back: there is nothing to commit.
func readOnlyTx(ctx context.Context, b TxBeginner, iso pgx.TxIsoLevel, timeout time.Duration, fn func(pgx.Tx) error) error {
	tx, err := b.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Values rendered by irctl (an integer), never user text.
	if _, err := tx.Exec(ctx, "SET LOCAL TimeZone = 'UTC'"); err != nil {
		return err
	}
	if err := db.SetStatementTimeout(ctx, tx, timeout); err != nil {
		return err
	}
	return fn(tx)
}

// displayRow turns text-format values into table cells.
func displayRow(raw [][]byte) []string {
	out := make([]string, len(raw))
	for i, v := range raw {
		if v == nil {
			out[i] = "NULL"
		} else {
			out[i] = string(v)
		}
	}
	return out
}

// rowEncoder writes text-format rows as JSON lines (typed where the column
// type allows: numbers, booleans, json) or as neutralised CSV.
type rowEncoder struct {
	w      io.Writer
	csv    *csv.Writer
	fields []pgconn.FieldDescription
	names  [][]byte // JSON-encoded column names
	buf    bytes.Buffer
}

func newRowEncoder(w io.Writer, format string) *rowEncoder {
	e := &rowEncoder{w: w}
	if format == "csv" {
		e.csv = csv.NewWriter(w)
	}
	return e
}

func (e *rowEncoder) header(fields []pgconn.FieldDescription) error {
	e.fields = fields
	if e.csv != nil {
		cells := make([]string, len(fields))
		for i, f := range fields {
			cells[i] = NeutraliseCell(f.Name)
		}
		return e.csv.Write(cells)
	}
	for _, f := range fields {
		b, _ := json.Marshal(f.Name)
		e.names = append(e.names, b)
	}
	return nil
}

func (e *rowEncoder) row(raw [][]byte) error {
	if e.csv != nil {
		cells := make([]string, len(raw))
		for i, v := range raw {
			cells[i] = NeutraliseCell(string(v)) // NULL and "" both export as empty, as COPY's CSV does
		}
		return e.csv.Write(cells)
	}
	e.buf.Reset()
	e.buf.WriteByte('{')
	for i, v := range raw {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.buf.Write(e.names[i])
		e.buf.WriteByte(':')
		e.buf.Write(jsonValue(e.fields[i].DataTypeOID, v))
	}
	e.buf.WriteString("}\n")
	_, err := e.w.Write(e.buf.Bytes())
	return err
}

func (e *rowEncoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		return e.csv.Error()
	}
	return nil
}

// jsonValue renders a text-format value as JSON: numbers, booleans and
// json stay typed, everything else (times, addresses, text) is a string
// exactly as PostgreSQL printed it.
func jsonValue(oid uint32, v []byte) []byte {
	if v == nil {
		return []byte("null")
	}
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		if json.Valid(v) && v[0] != '"' {
			return v
		}
	case pgtype.BoolOID:
		switch string(v) {
		case "t":
			return []byte("true")
		case "f":
			return []byte("false")
		}
	case pgtype.JSONOID, pgtype.JSONBOID:
		if json.Valid(v) {
			return v
		}
	}
	b, _ := json.Marshal(string(v))
	return b
}
