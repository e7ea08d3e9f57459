package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/exitcode"
)

func newResumeCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Continue the incident's last run from its journal",
		Long: `Continues the last run of the incident (a phase, or ` + "`irctl run`" + `) where it
stopped: interrupted, killed, declined or failed. The journal says what was
run (phases, runbook, --set values, dry-run mode); steps that finished are
not repeated. A step whose intent was recorded without an outcome (irctl
died while applying it) is planned again against the servers, never applied
blindly: what already changed shows as nothing to change. (What a killed
step changed has no undo data in the journal, so ` + "`irctl undo`" + ` cannot reverse
it; a step stopped by a signal records its undo data and can be.)

The runbook must be the one the run used (same sha256). Secret params are
not kept in the journal: pass them again with --set or --set-stdin. Other
--set values override the recorded ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inc, recs, err := f.incidentJournal()
			if err != nil {
				return err
			}
			last, err := engine.FindLastRun(recs)
			if errors.Is(err, engine.ErrNoRun) {
				return exitcode.New(exitcode.Precondition, "incident %s: %v (start one with a phase command or `irctl run`)", inc.ID, err)
			}
			if err != nil {
				return err
			}
			run := last.Run
			recorded := action.DryRun(run.DryRun)
			if recorded == "" {
				recorded = action.DryRunNone
			}
			if f.dryRun != action.DryRunNone && f.dryRun != recorded {
				return usage("the last run used --dry-run=%s; resume continues it that way (drop --dry-run=%s)", run.DryRun, f.dryRun)
			}
			f.dryRun = recorded
			if err := f.readSetStdin(cmd.Context(), run.RunbookRef); err != nil {
				return err
			}
			pinned := map[string]string{}
			for k, v := range last.Inputs {
				pinned[k] = v
			}
			for k, v := range run.Set {
				pinned[k] = v
			}
			set, err := resumeSet(pinned, f.setValues())
			if err != nil {
				return err
			}
			f.runbookPath, f.set = run.RunbookRef, set
			rb, err := f.loadRunbook(run.RunbookRef)
			if err != nil {
				return err
			}
			if rb.Hash != run.RunbookHash {
				return exitcode.New(exitcode.Precondition, "runbook %s changed since the run at journal record %d (sha256 %.12s, now %.12s); resume needs the runbook it started with", rb.File, run.Seq, run.RunbookHash, rb.Hash)
			}
			fmt.Fprintf(f.io.ErrOut, "resuming %s of incident %s (journal record %d, runbook %s%s): %d step(s) done, %d to plan again\n",
				run.Command, inc.ID, run.Seq, rb.File, dryRunNote(run.DryRun), len(last.Done), len(last.Replan))
			return f.runEngine(cmd.Context(), rb, engine.RunOptions{
				Command: run.Command, Phases: run.Phases, SkipEmpty: run.Command == "run",
				RunbookRef: run.RunbookRef, Set: setMap(set),
				Resumes: run.Seq, Done: last.Done, Replan: last.Replan,
			})
		},
	}
	// resume runs the recorded runbook: --set (secrets again, overrides),
	// --dry-run and --yes, but no -f.
	addConsentFlags(f, cmd)
	addExternalFlag(f, cmd)
	cmd.Flags().StringArrayVar(&f.set, "set", nil, "runbook param as `key=value`: secret params again, or values overriding the recorded ones")
	addSetStdinFlag(f, cmd)
	return cmd
}

func dryRunNote(mode string) string {
	if mode == "" || mode == "none" {
		return ""
	}
	return ", --dry-run=" + mode
}

// resumeSet merges the recorded --set values with the ones given now (which
// win). A secret value is not in the journal: it must be given again.
func resumeSet(recorded, given map[string]string) ([]string, error) {
	var missing []string
	merged := map[string]string{}
	for k, v := range recorded {
		merged[k] = v
	}
	for k, v := range given {
		merged[k] = v
	}
	for k, v := range merged {
		if v == "[redacted]" {
			missing = append(missing, "--set "+k+"=... or --set-stdin "+k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, usage("the last run set secret param(s) the journal does not keep: pass them again (%s)", strings.Join(missing, " "))
	}
	out := make([]string, 0, len(merged))
	for k, v := range merged {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// setValues is --set as a map (the last value of a key wins); malformed
// pairs are left for loadRunbook to report.
func (f *factory) setValues() map[string]string {
	m := map[string]string{}
	for _, kv := range f.set {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

func setMap(kvs []string) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}
