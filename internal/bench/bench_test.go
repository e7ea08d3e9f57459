// Package bench times irctl side by side with the tools a responder would
// otherwise use (kubectl, psql), on the same sandbox servers in the same
// run. Run it with `make bench`; it asserts no timings, it reports them.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// BenchmarkQuarantine2000 labels 2,000 pods quarantine=true three ways,
// each in a fresh namespace of 2,000 seeded pods, deleted after the run:
//   - "irctl": the built irctl binary, `irctl contain --yes` of a one-step
//     k8s.label runbook, timed as a whole process (start-up, responder lock,
//     permission preflight, plan, apply, journal): what a responder waits for;
//   - "irctl-action": the k8s.label action in this process (plan + apply as
//     the engine runs them), which shows what the process around it costs;
//   - "kubectl": `kubectl label pods -l app=orchestrator quarantine=true`.
//
// The tools run in the order irctl, irctl-action, kubectl, kubectl,
// irctl-action, irctl, each reported as the mean of its two runs, so that
// drift in the server (etcd's history growing, other load on the machine)
// falls on all alike. The ratio reported is kubectl's time over irctl's.
// quarantineRunbook's contain phase is the quarantine label alone.
const quarantineRunbook = `apiVersion: irctl/v1
kind: Runbook
name: bench-quarantine
description: label the orchestrator pods quarantine=true, for the quarantine benchmark
params:
  namespace:
    required: true
    description: namespace of the pods
phases:
  contain:
    - name: quarantine-pods
      action: k8s.label
      with:
        namespace: "{{ .namespace }}"
        selector: app=orchestrator
        labels:
          quarantine: "true"
`

// build builds the command pkg into dir and returns its path.
func build(b *testing.B, dir, pkg string) string {
	b.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		b.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func BenchmarkQuarantine2000(b *testing.B) {
	const pods = 2000
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		b.Skip("kubectl is not on PATH")
	}
	sb := sandboxtest.Get(b)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(sb.RESTConfig)
	if err != nil {
		b.Fatal(err)
	}
	clients, err := kube.NewClients(sb.RESTConfig, "irctl-bench")
	if err != nil {
		b.Fatal(err)
	}
	env := &action.Env{
		Kube:     func() (*kube.Clients, error) { return clients, nil },
		DryRun:   action.DryRunNone,
		Log:      zerolog.Nop(),
		Now:      time.Now,
		Incident: "SEC-BENCH",
	}

	work := b.TempDir()
	irctlBin := build(b, work, "irctl.dev/irctl/cmd/irctl")
	rbPath := filepath.Join(work, "quarantine.yaml")
	if err := os.WriteFile(rbPath, []byte(quarantineRunbook), 0o600); err != nil {
		b.Fatal(err)
	}
	// irctlArgs are the next irctl run's flags, its incident declared
	// (untimed) by prepare.
	var irctlArgs []string
	runs := 0
	prepare := func(tool string) error {
		if tool != "irctl" {
			return nil
		}
		runs++
		state := filepath.Join(work, fmt.Sprintf("state-%d", runs))
		irctlArgs = []string{"--state-dir", state, "--kubeconfig", sb.KubeconfigPath, "-f", rbPath}
		id, err := exec.Command(irctlBin, append(irctlArgs, "declare", "--severity", "P4", "--title", "quarantine benchmark")...).Output()
		if err != nil {
			return fmt.Errorf("declare: %v", err)
		}
		irctlArgs = append(irctlArgs, "--incident", strings.TrimSpace(string(id)))
		return nil
	}
	quarantine := map[string]func(ns string) error{
		"irctl": func(ns string) error {
			args := irctlArgs
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, irctlBin, append(args, "--set", "namespace="+ns, "contain", "--yes")...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("irctl contain: %v\n%s", err, out.String())
			}
			return nil
		},
		"irctl-action": func(ns string) error {
			p := kubeaction.Label{}.Spec().MustBind(map[string]any{"namespace": ns, "selector": "app=orchestrator", "labels": map[string]string{"quarantine": "true"}})
			plan, err := kubeaction.Label{}.Plan(ctx, env, p)
			if err != nil {
				return err
			}
			res, err := kubeaction.Label{}.Apply(ctx, env, p, plan)
			if err != nil {
				return err
			}
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d pods failed, first %s: %s", len(res.Failed), res.Failed[0].Target, res.Failed[0].Error)
			}
			return nil
		},
		"kubectl": func(ns string) error {
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, kubectl, "label", "pods", "-l", "app=orchestrator", "quarantine=true",
				"-n", ns, "--kubeconfig", sb.KubeconfigPath)
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%v: %s", err, stderr.String())
			}
			return nil
		},
	}
	order := []string{"irctl", "irctl-action", "kubectl", "kubectl", "irctl-action", "irctl"}

	total := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, tool := range order {
			b.StopTimer()
			ns := fmt.Sprintf("bench-%s-%s", tool, randHex(3))
			if err := sandbox.SeedPods(ctx, cs, ns, pods, map[string]string{"app": "orchestrator"}); err != nil {
				b.Fatal(err)
			}
			if err := prepare(tool); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := quarantine[tool](ns); err != nil {
				b.Fatalf("%s: %v", tool, err)
			}
			total[tool] += time.Since(start)
			b.StopTimer()
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "quarantine=true"})
			if err != nil {
				b.Fatal(err)
			}
			if len(list.Items) != pods {
				b.Fatalf("%s quarantined %d of %d pods", tool, len(list.Items), pods)
			}
			// Each tool meets the same server: 2,000 live bench pods, not
			// the leftovers of the runs before it.
			if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	n := float64(b.N * 2)
	irctlSec, actionSec, kubectlSec := total["irctl"].Seconds()/n, total["irctl-action"].Seconds()/n, total["kubectl"].Seconds()/n
	b.ReportMetric(irctlSec, "irctl-s/op")
	b.ReportMetric(actionSec, "irctl-action-s/op")
	b.ReportMetric(kubectlSec, "kubectl-s/op")
	b.ReportMetric(kubectlSec/irctlSec, "speedup")
	fmt.Printf("quarantine %d pods: irctl contain (whole process) %.2f s, k8s.label action alone %.2f s, kubectl label %.2f s; kubectl/irctl %.1f× (action alone %.1f×; target >= 3×)\n",
		pods, irctlSec, actionSec, kubectlSec, kubectlSec/irctlSec, kubectlSec/actionSec)
}
