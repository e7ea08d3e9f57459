package db

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrParamsLogged refuses to bind a secret where the server would log it.
type ErrParamsLogged struct{ Role, Setting string }

func (e *ErrParamsLogged) Error() string {
	return fmt.Sprintf("this step binds a secret value, and the server logs statements with their bound parameters (%s) "+
		"while role %s may not turn that off for its own transaction: have a superuser run "+
		"`GRANT SET ON PARAMETER log_parameter_max_length, log_min_messages TO %s` (PostgreSQL 15+) or `ALTER SYSTEM SET log_parameter_max_length = 0`; nothing was run",
		e.Setting, e.Role, e.Role)
}

// HideSecretParams keeps the server from logging the values bound in the
// rest of tx, for a step whose args carry a secret: with log_statement=all
// (or a duration log) PostgreSQL writes "parameters: $1 = '...'" after
// each statement, and on an error too; and an error message can quote a
// value itself (invalid input syntax for type integer: "..."). Any role
// may set log_parameter_max_length_on_error. log_parameter_max_length and
// log_min_messages need a superuser or a role granted SET on them
// (PostgreSQL 15+): log_min_messages=log drops ERROR and WARNING messages
// from the log but keeps the statements log_statement logs (they are at
// LOG level). When log_parameter_max_length cannot be set and the server
// would log this transaction's statements, the step is refused: a secret
// in the server log is a leak.
func HideSecretParams(ctx context.Context, tx pgx.Tx, write bool) error {
	if _, err := tx.Exec(ctx, "SELECT set_config('log_parameter_max_length_on_error', '0', true)"); err != nil {
		return err
	}
	may := func(param string) string {
		m := "current_setting('is_superuser') = 'on'"
		if v, _ := strconv.Atoi(strings.SplitN(tx.Conn().PgConn().ParameterStatus("server_version"), ".", 2)[0]); v >= 15 {
			m += " OR has_parameter_privilege('" + param + "', 'SET')"
		}
		return m
	}
	var role, stmt, minDur, maxLen, minMsg string
	err := tx.QueryRow(ctx, `SELECT current_user, current_setting('log_statement'), current_setting('log_min_duration_statement'),
		CASE WHEN `+may("log_parameter_max_length")+` THEN set_config('log_parameter_max_length', '0', true) ELSE current_setting('log_parameter_max_length') END,
		CASE WHEN `+may("log_min_messages")+` THEN set_config('log_min_messages', 'log', true) ELSE current_setting('log_min_messages') END`).
		Scan(&role, &stmt, &minDur, &maxLen, &minMsg)
	if err != nil {
		return err
	}
	if maxLen == "0" {
		return nil
	}
	switch {
	case stmt == "all" || (stmt == "mod" && write):
		return &ErrParamsLogged{Role: role, Setting: "log_statement=" + stmt}
	case minDur != "-1":
		return &ErrParamsLogged{Role: role, Setting: "log_min_duration_statement=" + minDur}
	}
	return nil
}
