package cli

import (
	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/runbook"
)

func newUndoCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "undo PHASE",
		Short: "Reverse what a phase changed, from the journal",
		Long: `Reverses, newest first, every change the journal records for PHASE that has
not been undone yet, including what a step changed before it failed or was
interrupted: labels go back to their previous values, policies are restored
or removed, nodes are uncordoned. Changes that cannot be reversed (revoked
keys, rotated secrets, evicted pods) are listed, not pretended. An undo that
leaves some targets behind is recorded as partial (exit 4) and the next
undo tries them again.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: runbook.Phases,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !runbook.IsPhase(args[0]) {
				return usage("unknown phase %q", args[0])
			}
			eng, err := f.newEngine(nil)
			if err != nil {
				return err
			}
			eng.Out = f.secrets.Writer(f.io.Out) // undo has no JSON report: its lines are the output
			ctx, done := f.withLock(cmd.Context(), eng)
			defer done()
			return eng.Undo(ctx, args[0])
		},
	}
	// undo reads the journal, not a runbook: no -f or --set.
	addConsentFlags(f, cmd)
	return cmd
}
