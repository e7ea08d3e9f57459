package cli

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
	"irctl.dev/irctl/internal/progress"
	"irctl.dev/irctl/internal/prompt"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

const defaultRunbook = "security-incident"

// factory holds parsed global flags and builds clients lazily, so --help,
// `runbook validate` and --dry-run=client never connect to what they don't
// need.
type factory struct {
	io        IOStreams
	kubeFlags *kube.ConfigFlags

	databaseURL, runbookPath, incidentID, stateDir string
	lockNamespace                                  string
	logLevel, logFormat                            string
	set                                            []string
	yes                                            bool
	// setStdin names secret params whose values are read from stdin
	// (setstdin.go), once: stdinDone.
	setStdin      []string
	stdinDone     bool
	allowExternal bool
	// Parsed once, when the flags are set.
	dryRun action.DryRun
	output outputFormat

	// prompter asks before destructive steps; nil means prompt.New on the
	// process's streams. Tests set it to answer for the operator.
	prompter prompt.Prompter

	started  bool
	log      zerolog.Logger
	registry *action.Registry

	kubeOnce sync.Once
	kube     *kube.Clients
	kubeErr  error

	dbMu sync.Mutex
	pool *pgxpool.Pool

	// secrets are every secret value known so far (runbook secret params,
	// the database password, the kubeconfig's token or password): output,
	// logs and the journal are redacted with them.
	secrets *redact.Set

	runbookHash string         // of the runbook last loaded, for evidence
	runbookDir  fs.FS          // the directory of the runbook last loaded, for its steps' relative paths
	evidence    evidenceOpener // the incident's evidence store, opened lazily (evidence.go)
}

func newFactory(io IOStreams) *factory {
	return &factory{io: io, log: zerolog.Nop(), registry: builtin.Registry(), dryRun: action.DryRunNone, output: outputText, secrets: redact.New()}
}

// complete validates global flags and applies environment defaults.
func (f *factory) complete(cmd *cobra.Command) error {
	if f.databaseURL == "" {
		f.databaseURL = os.Getenv("IRCTL_DATABASE_URL")
	}
	if f.incidentID == "" {
		f.incidentID = os.Getenv("IRCTL_INCIDENT")
	}
	if f.stateDir == "" {
		f.stateDir = os.Getenv("IRCTL_STATE_DIR")
	}
	if f.stateDir == "" {
		f.stateDir = "incidents"
	}
	if f.lockNamespace == "" {
		f.lockNamespace = os.Getenv(lock.NamespaceEnv)
	}
	if f.lockNamespace == "" {
		f.lockNamespace = lock.DefaultNamespace
	}
	lvl, err := zerolog.ParseLevel(f.logLevel)
	if err != nil || f.logLevel == "" {
		return usage("--log-level=%s: want debug, info, warn or error", f.logLevel)
	}
	f.collectConnectionSecrets()
	var w = f.secrets.Writer(f.io.ErrOut)
	switch f.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: !progress.Color(f.io.ErrOut), TimeFormat: time.RFC3339}
	default:
		return usage("--log-format=%s: want console or json", f.logFormat)
	}
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	f.log = zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	return nil
}

func (f *factory) close() {
	if f.pool != nil {
		f.pool.Close()
	}
}

// kubeClients builds and pings the Kubernetes clients once.
func (f *factory) kubeClients() (*kube.Clients, error) {
	f.kubeOnce.Do(func() {
		cfg, err := f.kubeFlags.ToRESTConfig()
		if err != nil {
			f.kubeErr = exitcode.Wrap(exitcode.Error, err)
			return
		}
		f.collectKubeSecrets(cfg)
		c, err := kube.NewClients(cfg, "irctl/"+Version())
		if err != nil {
			f.kubeErr = err
			return
		}
		if err := c.Ping(context.Background()); err != nil {
			f.kubeErr = err
			return
		}
		f.log.Debug().Str("server", cfg.Host).Msg("kubernetes connected")
		f.kube = c
	})
	return f.kube, f.kubeErr
}

// database opens the pool on first use.
func (f *factory) database(ctx context.Context) (*pgxpool.Pool, error) {
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	if f.pool != nil {
		return f.pool, nil
	}
	p, err := db.Open(ctx, f.databaseURL, "irctl", f.log)
	if err != nil {
		return nil, err
	}
	f.pool = p
	return p, nil
}

// prompt returns the prompter destructive steps ask through.
func (f *factory) prompt() prompt.Prompter {
	if f.prompter == nil {
		f.prompter = prompt.New(f.io.In, f.io.ErrOut)
	}
	return redactingPrompter{f.prompter, f.secrets}
}

// jsonOutput reports -o json.
func (f *factory) jsonOutput() bool { return f.output == outputJSON }

func (f *factory) env() (*action.Env, error) {
	return &action.Env{
		Kube:     f.kubeClients,
		DB:       f.database,
		DryRun:   f.dryRun,
		Log:      f.log,
		Now:      time.Now,
		Incident: f.incidentID,
		Evidence: f.evidenceStore,
		Files:    f.runbookDir,
		Declared: func() (time.Time, error) {
			inc, err := f.openIncident()
			if err != nil {
				return time.Time{}, err
			}
			return inc.DeclaredAt, nil
		},
		// Credentials an action reads (a webhook URL, an SMTP password)
		// are redacted from everything printed from then on.
		AddSecrets: f.secrets.Add,
		FingerprintKey: func() ([]byte, error) {
			inc, err := f.openIncident()
			if err != nil {
				return nil, err
			}
			return redact.LoadKey(inc.Dir())
		},
	}, nil
}

// readRunbook returns the runbook's display name and bytes: a path on disk,
// or the name of a shipped runbook.
func (f *factory) readRunbook(name string) (string, []byte, error) {
	if !strings.ContainsAny(name, `/\`) && !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
		b, err := irctl.Runbooks.ReadFile(path.Join("runbooks", name+".yaml"))
		if err != nil {
			return "", nil, usage("no shipped runbook named %q (see `irctl runbook list`), and no file by that name", name)
		}
		f.runbookDir = irctl.RunbookDir()
		return "runbooks/" + name + ".yaml", b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", nil, usage("runbook %s: %v", name, unwrapPathErr(err))
	}
	f.runbookDir = os.DirFS(filepath.Dir(name))
	return filepath.ToSlash(name), b, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// loadRunbook reads and validates the runbook with --set applied.
func (f *factory) loadRunbook(name string) (*runbook.Runbook, error) {
	file, data, err := f.readRunbook(name)
	if err != nil {
		return nil, err
	}
	set := map[string]string{}
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usage("--set %q: want key=value", kv)
		}
		set[k] = v
	}
	rb, err := runbook.Load(file, data, runbook.Options{Catalog: f.registry, Set: set, Incident: f.incidentID, Results: f.results()})
	if err != nil {
		return rb, exitcode.Wrap(exitcode.Usage, err)
	}
	f.runbookHash = rb.Hash
	f.secrets.Add(rb.Secrets...)
	return rb, nil
}

// incidentJournal opens the incident named by --incident and reads its
// journal.
func (f *factory) incidentJournal() (*incident.Incident, []incident.Record, error) {
	inc, err := f.openIncident()
	if err != nil {
		return nil, nil, err
	}
	recs, err := incident.ReadJournal(inc.JournalPath())
	return inc, recs, err
}

// openIncident opens the incident named by --incident / IRCTL_INCIDENT.
func (f *factory) openIncident() (*incident.Incident, error) {
	if f.incidentID == "" {
		return nil, exitcode.Wrap(exitcode.Usage, errNoIncident)
	}
	inc, err := incident.Open(f.stateDir, f.incidentID)
	if err != nil {
		return nil, exitcode.Wrap(exitcode.Usage, err)
	}
	return inc, nil
}

// lockLeaseDuration is the Lease's duration (0: lock.LeaseDuration); tests
// shorten it to see a lost lock noticed within seconds.
var lockLeaseDuration time.Duration

// lockIncident takes the responder lock for a run that may change things:
// a Lease (in --lock-namespace, the same for every responder) when the
// steps use Kubernetes, an advisory lock when they use PostgreSQL. Dry
// runs change nothing and take no lock, so they neither wait for a real
// run nor disturb its lock; they say so. The caller stops the run when
// the lock is lost (lk.Context) and exits with lk.Err().
func (f *factory) lockIncident(ctx context.Context, uses map[string]bool) (*lock.Lock, error) {
	if f.dryRun != action.DryRunNone {
		fmt.Fprintf(f.io.ErrOut, "note: --dry-run=%s takes no responder lock: it changes nothing, so it neither waits for nor disturbs a real run\n", f.dryRun)
		return nil, nil
	}
	o := lock.Options{Incident: f.incidentID, Holder: fmt.Sprintf("%s (pid %d)", incident.Operator(), os.Getpid()), LeaseDuration: lockLeaseDuration}
	if uses[runbook.UsesKubernetes] {
		c, err := f.kubeClients()
		if err != nil {
			return nil, err
		}
		o.Kube, o.Namespace = c, f.lockNamespace
	}
	if uses[runbook.UsesPostgres] {
		p, err := f.database(ctx)
		if err != nil {
			return nil, err
		}
		o.DB = p
	}
	l, err := lock.Acquire(ctx, o)
	if lock.IsHeld(err) {
		return nil, exitcode.Wrap(exitcode.Precondition, err)
	}
	return l, err
}

// collectConnectionSecrets adds the database password (from the URL or
// $PGPASSWORD) to the secrets, so that no error or log line quoting it is
// shown in clear. A URL that does not parse is left to fail where it is
// used.
func (f *factory) collectConnectionSecrets() {
	f.secrets.Add(os.Getenv("PGPASSWORD"))
	if cfg, err := pgconn.ParseConfig(f.databaseURL); err == nil {
		f.secrets.Add(cfg.Password)
	}
}

// collectKubeSecrets adds the kubeconfig's credentials to the secrets,
// once the kubeconfig is loaded for use.
func (f *factory) collectKubeSecrets(cfg *rest.Config) {
	f.secrets.Add(cfg.BearerToken, cfg.Password)
	if cfg.BearerTokenFile != "" {
		if b, err := os.ReadFile(cfg.BearerTokenFile); err == nil {
			f.secrets.Add(strings.TrimSpace(string(b)))
		}
	}
}

// redactingPrompter redacts secrets from what a confirmation shows (a
// plan's summary can quote a templated secret), since the prompt writes to
// the terminal itself.
type redactingPrompter struct {
	p       prompt.Prompter
	secrets *redact.Set
}

func (r redactingPrompter) Confirm(ctx context.Context, title, detail string) (bool, error) {
	return r.p.Confirm(ctx, r.secrets.String(title), r.secrets.String(detail))
}

func (r redactingPrompter) CanConfirm() bool { return r.p.CanConfirm() }

// results reads earlier steps' recorded results in the incident's journal
// for params with from:; none without an incident.
func (f *factory) results() runbook.Results {
	if f.incidentID == "" {
		return nil
	}
	inc, err := incident.Open(f.stateDir, f.incidentID)
	if err != nil {
		return nil
	}
	return engine.JournalResults{Dir: inc.Dir()}
}
