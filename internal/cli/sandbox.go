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
	var latency time.Duration
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local sandbox of real servers (a small Kubernetes cluster, PostgreSQL) with a demo platform",
		Long: `The sandbox is a throwaway Kubernetes cluster - etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok's simulated kubelets - and a
PostgreSQL server, on free loopback ports, seeded with the demo
LLM-orchestrator platform (namespace llm-orchestrator: the orchestrator
Deployment, the postgres StatefulSet, a forensics pod; tables users,
api_keys, audit_events with a simulated attack) and what the attack left in
the cluster. Pods are scheduled, become Running and Ready, roll out and are
replaced as in a real cluster, but no container runs: a stand-in kubelet log
endpoint on each seeded node serves the platform's logs, and a stand-in
snapshot controller readies VolumeSnapshots of the sandbox's CSI volumes.

When seeded, it also serves a stand-in of the orchestrator's API on
127.0.0.1 (ORCHESTRATOR_URL in DIR/env): it accepts the database's API keys
(not revoked) and JWTs signed with the key the orchestrator's running pods
were started with, refuses disabled users, writes an audit_events row per
request (the caller's address from X-Forwarded-For) and answers /health.
Every API request is also a line of one Ready orchestrator pod's log, so
` + "`kubectl logs -f`" + ` and k8s.log-watch see it as it happens.

--api-latency puts a proxy delaying traffic in each direction between the
clients of DIR/kubeconfig and kube-apiserver, as a remote control plane.

The server binaries come from ` + "`make sandbox-bins`" + ` (./bin, or --bin-dir, or
IRCTL_SANDBOX_BINS).`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", ".sandbox", "sandbox state directory (kubeconfig, env, logs)")
	cmd.PersistentFlags().StringVar(&binDir, "bin-dir", "", "directory with the sandbox's server binaries (default: IRCTL_SANDBOX_BINS or ./bin)")

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
			o := sandbox.Options{BinDir: binDir, Dir: abs, Seed: seed, Log: f.io.ErrOut, APILatency: latency}
			if err := sandbox.Up(cmd.Context(), exe, o, 3*time.Minute); err != nil {
				return err
			}
			fmt.Fprintf(f.io.Out, "sandbox running; to use it:\n  source %s\n", filepath.Join(abs, "env"))
			return nil
		},
	}
	up.Flags().BoolVar(&seed, "seed", true, "seed the demo platform")
	up.Flags().DurationVar(&latency, "api-latency", 0, "delay added in each direction between the written kubeconfig's clients and kube-apiserver, as to a remote control plane (e.g. 1ms)")

	serve := &cobra.Command{
		Use:    "serve",
		Short:  "Run the sandbox in the foreground until SIGTERM (used by `sandbox up`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, _ := filepath.Abs(dir)
			return sandbox.Serve(cmd.Context(), sandbox.Options{BinDir: binDir, Dir: abs, Seed: seed, Log: f.io.ErrOut, APILatency: latency})
		},
	}
	serve.Flags().BoolVar(&seed, "seed", true, "seed the demo platform")
	serve.Flags().DurationVar(&latency, "api-latency", 0, "delay added in each direction in front of kube-apiserver")

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
