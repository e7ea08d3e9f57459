package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"irctl.dev/irctl/internal/sandbox"
)

func newSandboxCmd(f *factory) *cobra.Command {
	var dir, binDir string
	var seed bool
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local sandbox of real servers (etcd, kube-apiserver, PostgreSQL) with a demo platform",
		Long: `The sandbox is a throwaway etcd + kube-apiserver + PostgreSQL on free
loopback ports, seeded with the demo LLM-orchestrator platform (namespace
llm-orchestrator, pods, nodes, secrets; tables users, api_keys, audit_events
with a simulated attack). It has no kubelet: pods never run. Each seeded node
has a stand-in kubelet log endpoint instead, so that logs read through the
API server show the platform's traffic and the attack, and a stand-in
snapshot controller readies VolumeSnapshots of the sandbox's CSI volumes.

The server binaries come from ` + "`make sandbox-bins`" + ` (./bin, or --bin-dir, or
IRCTL_SANDBOX_BINS).`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", ".sandbox", "sandbox state directory (kubeconfig, env, logs)")
	cmd.PersistentFlags().StringVar(&binDir, "bin-dir", "", "directory with kube-apiserver and etcd (default: IRCTL_SANDBOX_BINS or ./bin)")

	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox in the background and write DIR/kubeconfig and DIR/env",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(dir)
			o := sandbox.Options{BinDir: binDir, Dir: abs, Seed: seed, Log: f.io.ErrOut}
			if err := sandbox.Up(cmd.Context(), exe, o, 3*time.Minute); err != nil {
				return err
			}
			fmt.Fprintf(f.io.Out, "sandbox running; to use it:\n  source %s\n", filepath.Join(abs, "env"))
			return nil
		},
	}
	up.Flags().BoolVar(&seed, "seed", true, "seed the demo platform")

	serve := &cobra.Command{
		Use:    "serve",
		Short:  "Run the sandbox in the foreground until SIGTERM (used by `sandbox up`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, _ := filepath.Abs(dir)
			return sandbox.Serve(cmd.Context(), sandbox.Options{BinDir: binDir, Dir: abs, Seed: seed, Log: f.io.ErrOut})
		},
	}
	serve.Flags().BoolVar(&seed, "seed", true, "seed the demo platform")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the sandbox started by `sandbox up` and remove its data",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := sandbox.Down(dir, time.Minute); err != nil {
				return err
			}
			fmt.Fprintf(f.io.Out, "sandbox in %s stopped\n", dir)
			return nil
		},
	}
	cmd.AddCommand(up, serve, down)
	return cmd
}
