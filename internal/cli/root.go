// Package cli is irctl's command line: cobra commands that turn flags into
// options and call the engine. No business logic lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
)

// version is set at build time with -ldflags "-X irctl.dev/irctl/internal/cli.version=...".
var version = ""

// Version returns irctl's version: the ldflags value, else the module
// version or VCS revision from the build info, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

// IOStreams are the process's streams, passed in so tests can capture them.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Main runs irctl with os.Args and returns the process exit code.
func Main() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := handleSignals(cancel)
	defer stop()
	code := Run(ctx, os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	return signalExitCode(ctx, code)
}

// Run executes irctl with args and returns the exit code; errors are
// printed to ErrOut as one line.
func Run(ctx context.Context, args []string, io IOStreams) int {
	f := newFactory(io)
	root := newRootCmd(f)
	root.SetArgs(args)
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	err := root.ExecuteContext(ctx)
	f.close()
	if err == nil {
		return exitcode.OK
	}
	code := exitcode.Code(err)
	if !f.started && code == exitcode.Error {
		// cobra's own errors (unknown command, bad flag, wrong arguments)
		// happen before any RunE starts: they are usage errors.
		code = exitcode.Usage
	}
	// Errors carry what servers under attack said: one line, no escapes.
	fmt.Fprintf(io.ErrOut, "irctl: %s\n", f.secrets.String(oneLine(err.Error())))
	return code
}

// oneLine puts s on one line with terminal escapes neutralised.
func oneLine(s string) string { return engine.Clean(s) }

func newRootCmd(f *factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "irctl",
		Short: "Run security incident-response runbooks against Kubernetes and PostgreSQL",
		Long: `irctl executes security incident-response runbooks for real: it contains a
breach, assesses it, preserves evidence, eradicates the threat, recovers the
service and notifies people, acting on a Kubernetes cluster and the
platform's PostgreSQL database.

Every step is planned against the live servers and shown before it acts;
destructive steps ask first (or need --yes without a terminal); every intent
and outcome is recorded in the incident's journal. Rehearse with
--dry-run=server: the servers report what would change, nothing changes.
An interrupted or killed run continues with ` + "`irctl resume`" + `.

Exit codes: 0 ok; 1 error; 2 usage or invalid runbook; 3 declined (or a
destructive step without a terminal and without --yes); 4 partial (some
targets failed); 5 precondition (permission, lock, drift); 130 interrupted
by SIGINT (Ctrl-C), 143 by SIGTERM, 129 by SIGHUP. A second signal exits at
once.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       Version(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			f.started = true
			return f.complete(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitcode.Wrap(exitcode.Usage, err)
	})
	pf := root.PersistentFlags()
	f.kubeFlags = kube.NewConfigFlags()
	f.kubeFlags.AddFlags(pf)
	pf.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL URL (env IRCTL_DATABASE_URL; else libpq's PG* variables)")
	pf.StringVar(&f.incidentID, "incident", "", "incident ID, e.g. SEC-20261122-001 (env IRCTL_INCIDENT)")
	pf.StringVar(&f.stateDir, "state-dir", "", "directory holding incidents (env IRCTL_STATE_DIR; default ./incidents)")
	pf.StringVar(&f.lockNamespace, "lock-namespace", "", "namespace of the responder lock's Lease, the same for every responder (env "+lock.NamespaceEnv+"; default "+lock.DefaultNamespace+")")
	pf.VarP(&f.output, "output", "o", "output format: text or json")
	pf.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	pf.StringVar(&f.logFormat, "log-format", "console", "log format on stderr: console or json")

	root.AddCommand(
		newDeclareCmd(f),
		newRunCmd(f),
		newRunbookCmd(f),
		newActionsCmd(f),
		newSandboxCmd(f),
		newDrillCmd(f),
		newStatusCmd(f),
		newCloseCmd(f),
		newUndoCmd(f),
		newResumeCmd(f),
		newEvidenceCmd(f),
		newNoteCmd(f),
		newReportCmd(f),
		newVersionCmd(),
	)
	for _, c := range newPhaseCmds(f) {
		root.AddCommand(c)
	}
	return root
}

// usage marks err as a usage error (exit 2).
func usage(format string, args ...any) error {
	return exitcode.New(exitcode.Usage, format, args...)
}

var errNoIncident = errors.New("no incident given: declare one with `irctl declare --severity P1 --title ...`, then pass --incident ID or set IRCTL_INCIDENT")
