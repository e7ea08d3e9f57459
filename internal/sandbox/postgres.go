package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl"
)

// PostgreSQL settings of the sandbox's application database.
const (
	dbName = "orchestrator"
	dbRole = "orchestrator"
	// responderRole is who irctl connects as: it reads every table and
	// writes revoked_at/disabled_at, and with CREATEROLE may set the
	// application role's password (sql.rotate-password), without owning
	// anything or being a superuser.
	responderRole = "irctl_responder"
)

// EnvPGBin names the directory holding initdb and postgres, overriding the
// search described at pgBinDir.
const EnvPGBin = "IRCTL_PG_BIN"

// postgresServer is a throwaway PostgreSQL cluster listening on 127.0.0.1.
type postgresServer struct {
	dir           string // temporary: data/ and postgres.log
	port          int
	adminPassword string
	cmd           *exec.Cmd
	exited        chan struct{} // closed once cmd has exited
}

// osUser is the account PostgreSQL runs as when we are root.
type osUser struct{ uid, gid int }

// pgBinDir finds PostgreSQL's server binaries: $IRCTL_PG_BIN, else the newest
// Debian/Ubuntu /usr/lib/postgresql/N/bin, else the directory of `postgres`
// on PATH (distributions other than Debian install it there).
func pgBinDir() (string, error) {
	if d := os.Getenv(EnvPGBin); d != "" {
		if err := hasPGBins(d); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvPGBin, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if hasPGBins(d) == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on PATH: " +
		"install PostgreSQL (e.g. `apt-get install postgresql-15`) or set $" + EnvPGBin)
}

func hasPGBins(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		if err := checkExecutable(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// pgUser returns the account to run PostgreSQL as: nil (ourselves) unless we
// are root, which initdb and postgres refuse to run as.
func pgUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user to run it as: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return &osUser{uid: uid, gid: gid}, nil
}

// startPostgres creates a cluster in a new temporary directory and starts it
// on a free port of 127.0.0.1, with no Unix socket. The superuser `postgres`
// authenticates with a random password (scram-sha-256).
func startPostgres(ctx context.Context) (_ *postgresServer, err error) {
	binDir, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	runUser, err := pgUser()
	if err != nil {
		return nil, err
	}
	// The directory is created by us, in the system temp dir, and handed to
	// the postgres user: the caller's own directories may not be traversable
	// by that user.
	dir, err := os.MkdirTemp("", "irctl-pg-")
	if err != nil {
		return nil, err
	}
	p := &postgresServer{dir: dir, adminPassword: randomHex(16)}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if runUser != nil {
		if err := os.Chown(dir, runUser.uid, runUser.gid); err != nil {
			return nil, err
		}
	}
	if err := p.initdb(ctx, binDir, runUser); err != nil {
		return nil, err
	}
	// Between picking a free port and postgres binding it another process
	// may take it; retry with a new port then.
	for attempt := 1; ; attempt++ {
		err = p.run(ctx, binDir, runUser)
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *postgresServer) initdb(ctx context.Context, binDir string, runUser *osUser) error {
	pwfile := filepath.Join(p.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.adminPassword+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if runUser != nil {
		if err := os.Chown(pwfile, runUser.uid, runUser.gid); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata", filepath.Join(p.dir, "data"),
		"--username", "postgres",
		"--pwfile", pwfile,
		"--auth-host", "scram-sha-256",
		"--auth-local", "peer",
		"--encoding", "UTF8",
		"--locale", "C",
		"--no-sync", // a throwaway cluster needs no durability
	)
	// initdb fails if it cannot resolve its working directory, which the
	// postgres user may not be allowed to enter.
	cmd.Dir = p.dir
	runAs(cmd, runUser)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tail(out, 20))
	}
	return nil
}

var errPortTaken = errors.New("port already in use")

// run starts postgres and waits until the superuser can log in.
func (p *postgresServer) run(ctx context.Context, binDir string, runUser *osUser) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logPath := p.logPath()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(filepath.Join(binDir, "postgres"),
		"-D", filepath.Join(p.dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		// Durability is pointless for a sandbox and costs seconds of fsync.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	ownProcessGroup(cmd)
	runAs(cmd, runUser)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	p.cmd, p.port, p.exited = cmd, port, make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(p.exited)
	}()

	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		if err := p.ping(ctx); err == nil {
			return nil
		}
		select {
		case <-p.exited:
			log, _ := os.ReadFile(logPath)
			if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("postgres exited before accepting connections (%v):\n%s", waitErr, tail(log, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not accept connections within 60s:\n%s", tail(log, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *postgresServer) logPath() string { return filepath.Join(p.dir, "postgres.log") }

func (p *postgresServer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.adminURL())
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func (p *postgresServer) adminURL() string {
	return pgURL("postgres", p.adminPassword, p.port, "postgres")
}

func pgURL(role, password string, port int, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(role, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// stop shuts postgres down with a fast shutdown (SIGINT: roll back open
// transactions, disconnect clients) and deletes the cluster. It is safe to
// call more than once.
func (p *postgresServer) stop() error {
	var err error
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			_ = interrupt(p.cmd.Process)
			select {
			case <-p.exited:
			case <-time.After(30 * time.Second):
				killGroup(p.cmd.Process.Pid)
				<-p.exited
				err = errors.New("postgres did not shut down within 30s; killed it")
			}
		}
	}
	if rmErr := os.RemoveAll(p.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// createAppDatabase creates the application role with password and its
// database, then applies schema.sql and, if seed, seed.sql as that role, so
// that it owns every table.
func createAppDatabase(ctx context.Context, adminURL, appURL, password, responderPassword string, seed bool) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", dbRole, strings.ReplaceAll(password, "'", "''")),
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'", responderRole, strings.ReplaceAll(responderPassword, "'", "''")),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", dbName, dbRole),
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(s, " PASSWORD", 2)[0], err)
		}
	}

	app, err := pgx.Connect(ctx, appURL)
	if err != nil {
		return err
	}
	defer app.Close(ctx)
	files := []string{"schema.sql"}
	if seed {
		files = append(files, "seed.sql")
	}
	for _, f := range files {
		if err := ExecSQLFile(ctx, app, f); err != nil {
			return err
		}
	}
	// The responder reads everything (assess, preserve, validate) and
	// writes only what containment and eradication change.
	grants := []string{
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + responderRole,
		"GRANT UPDATE (revoked_at) ON api_keys TO " + responderRole,
		"GRANT UPDATE (disabled_at) ON users TO " + responderRole,
	}
	for _, g := range grants {
		if _, err := app.Exec(ctx, g); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
	}
	return nil
}

// ExecSQLFile runs testdata/sandbox/<name> from irctl.SandboxSeed on conn.
// The file is sent as one simple-protocol query, so it may hold many
// statements, which PostgreSQL runs in one implicit transaction.
func ExecSQLFile(ctx context.Context, conn *pgx.Conn, name string) error {
	sql, err := irctl.SandboxSeed.ReadFile("testdata/sandbox/" + name)
	if err != nil {
		return err
	}
	if _, err := conn.PgConn().Exec(ctx, string(sql)).ReadAll(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
