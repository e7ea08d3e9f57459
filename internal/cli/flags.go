package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/action"
)

// outputFormat is -o, parsed once when the flag is set.
type outputFormat string

const (
	outputText outputFormat = "text"
	outputJSON outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "text|json" }
func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputText, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("--output=%s: want text or json", s)
}

// dryRunFlag is --dry-run, parsed once into the action's type.
type dryRunFlag struct{ v *action.DryRun }

func (d dryRunFlag) String() string { return string(*d.v) }
func (d dryRunFlag) Type() string   { return "none|client|server" }
func (d dryRunFlag) Set(s string) error {
	v, err := parseDryRun(s)
	if err != nil {
		return err
	}
	*d.v = v
	return nil
}

func parseDryRun(s string) (action.DryRun, error) {
	switch action.DryRun(s) {
	case action.DryRunNone, action.DryRunClient, action.DryRunServer:
		return action.DryRun(s), nil
	}
	return "", fmt.Errorf("--dry-run=%s: want none, client or server", s)
}

// addRunFlags gives a command that runs a runbook's steps (a phase, run,
// resume) the flags only such commands use: the runbook and its params,
// dry run and consent. Other commands do not offer them, so `irctl version
// --help` does not suggest a --dry-run it would ignore.
func addRunFlags(f *factory, cmd *cobra.Command) {
	addRunbookFlags(f, cmd)
	addSetStdinFlag(f, cmd)
	addConsentFlags(f, cmd)
	addExternalFlag(f, cmd)
}

// addExternalFlag gives a runner --allow-external: external notices
// (customers, regulators, law enforcement) ask even under --yes without it.
func addExternalFlag(f *factory, cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.allowExternal, "allow-external", false, "send external notices (customers, regulators, law enforcement) without asking; --yes alone does not")
}

// addSetStdinFlag gives a command that runs steps --set-stdin.
func addSetStdinFlag(f *factory, cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.setStdin, "set-stdin", nil, "read the secret runbook param `NAME` from stdin (repeatable): asked for without echo on a terminal, else one line per name, in order")
}

// addConsentFlags gives a command that changes things (undo, besides the
// runners) --dry-run and --yes.
func addConsentFlags(f *factory, cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Var(dryRunFlag{&f.dryRun}, "dry-run", "none: act; client: plan only, no server writes; server: send every write as a server dry run / rolled-back transaction")
	fl.Lookup("dry-run").NoOptDefVal = string(action.DryRunClient)
	fl.BoolVarP(&f.yes, "yes", "y", false, "apply destructive steps without asking (required without a terminal)")
}

// addRunbookFlags gives a command that loads a runbook -f and --set.
func addRunbookFlags(f *factory, cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.runbookPath, "runbook", "f", defaultRunbook, "runbook `FILE`, or the name of a shipped runbook (see irctl runbook list)")
	fl.StringArrayVar(&f.set, "set", nil, "runbook param as `key=value` (repeatable; lists are comma-separated)")
}
