package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"irctl.dev/irctl/internal/drill"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/sandbox"
)

func newDrillCmd(f *factory) *cobra.Command {
	var scenario, runbookArg, junit, report, sandboxDir, binDir string
	var keep bool
	cmd := &cobra.Command{
		Use:   "drill [--scenario NAME|FILE] [--runbook NAME|FILE] [--junit FILE] [--report FILE] [--sandbox-dir DIR] [--keep]",
		Short: "Run a scored incident drill on the sandbox while an attacker keeps using what was stolen",
		Long: `Runs a scenario (testdata/scenarios/NAME.yaml; shipped: ` + strings.Join(drill.Names(), ", ") + `):
brings up a sandbox (or uses the running one in --sandbox-dir), starts an
attacker that calls the orchestrator API with the stolen credentials every
~200ms from the attacker's addresses, declares an incident and runs the
scenario's phases in order as ` + "`irctl PHASE --yes`" + ` would (manual steps are
recorded as skipped), then scores it: per credential the time from the
declaration to its last successful request and the requests that got in
after contain finished (goal 0); each phase's time against the runbook's
window; validation checks passed; evidence verified; notifications
delivered; steps failed or partial. --junit writes the score as JUnit XML
(one test case per credential, phase, step and check); --report writes the
incident report (` + "`irctl report`" + `) before the evidence is verified.

A sandbox the drill started is torn down afterwards unless --keep; one given
with --sandbox-dir is left running (the runbook changed it for good). The
incident's journal and evidence stay in --state-dir (default ./incidents).
Exit 0 only when every check passes and the attacker is locked out; else 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := drill.Find(scenario)
			if err != nil {
				return err
			}
			if runbookArg != "" {
				// The same attack against another runbook (a team's own
				// version of the shipped one): the score says what it misses.
				sc.Runbook = runbookArg
			}
			ctx := cmd.Context()
			dir := sandboxDir
			if dir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				if dir, err = os.MkdirTemp("", "irctl-drill-"); err != nil {
					return err
				}
				o := sandbox.Options{BinDir: binDir, Dir: dir, Seed: true, Log: f.io.ErrOut}
				if err := sandbox.Up(ctx, exe, o, 3*time.Minute); err != nil {
					os.RemoveAll(dir)
					return err
				}
				if keep {
					fmt.Fprintf(f.io.ErrOut, "sandbox kept: source %s (stop it with `irctl sandbox down --dir %s`)\n", filepath.Join(dir, "env"), dir)
				} else {
					defer func() {
						if err := sandbox.Down(dir, time.Minute); err != nil {
							fmt.Fprintf(f.io.ErrOut, "irctl: tearing down the sandbox in %s: %v\n", dir, err)
						}
						os.RemoveAll(dir)
					}()
				}
			}
			env, err := drill.ReadEnv(filepath.Join(dir, "env"))
			if err != nil {
				return err
			}
			// As sourcing DIR/env would: the notify steps read their
			// webhook URLs and keys from the environment.
			for k, v := range env {
				if err := os.Setenv(k, v); err != nil {
					return err
				}
			}
			// The incident (journal, evidence) goes where every command
			// puts it, and outlives the sandbox for review.
			base := []string{"--kubeconfig", env["KUBECONFIG"], "--database-url", env["IRCTL_DATABASE_URL"], "--state-dir", f.stateDir}
			run := func(ctx context.Context, args []string, stdin string) (int, string, string) {
				var out, errb bytes.Buffer
				code := Run(ctx, append(append([]string{}, base...), args...), IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
				return code, out.String(), errb.String()
			}
			kube, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
			if err != nil {
				return exitcode.Wrap(exitcode.Precondition, fmt.Errorf("the sandbox's kubeconfig: %w", err))
			}
			score, err := drill.Run(ctx, drill.Options{
				Scenario: sc, Env: env, Irctl: run, Log: f.io.ErrOut, Kube: kube, Report: report,
			})
			if err != nil {
				return err
			}
			if junit != "" {
				var b bytes.Buffer
				if err := score.WriteJUnit(&b); err != nil {
					return err
				}
				if err := os.WriteFile(junit, b.Bytes(), 0o644); err != nil {
					return err
				}
			}
			if f.jsonOutput() {
				if err := f.printJSON(score); err != nil {
					return err
				}
			} else {
				score.WriteText(f.io.Out)
			}
			if !score.Passed {
				return exitcode.New(exitcode.Error, "drill %s failed: the score card says what", sc.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&scenario, "scenario", "leaked-api-keys", "scenario name, or a scenario file")
	cmd.Flags().StringVar(&runbookArg, "runbook", "", "run this runbook (shipped name or file) instead of the scenario's")
	cmd.Flags().StringVar(&junit, "junit", "", "write the score as JUnit XML to FILE")
	cmd.Flags().StringVar(&report, "report", "", "write the incident report (Markdown, the scenario as its summary) to FILE; it is saved as evidence too")
	cmd.Flags().StringVar(&sandboxDir, "sandbox-dir", "", "use the running sandbox in DIR (DIR/env, from `irctl sandbox up --dir DIR`) instead of starting one")
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory with the sandbox's server binaries (default: IRCTL_SANDBOX_BINS or ./bin)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the sandbox the drill started running")
	return cmd
}
