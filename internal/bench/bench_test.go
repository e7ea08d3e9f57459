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
	"os/exec"
	"testing"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// BenchmarkQuarantine2000 labels 2,000 pods quarantine=true with irctl's
// k8s.label action (plan + apply, as the engine runs it) and with
// `kubectl label`, each in a fresh namespace of 2,000 seeded pods, deleted
// after the run. The tools run in the order irctl, kubectl, kubectl, irctl
// and each is reported as the mean of its two runs, so that drift in the
// server (etcd's history growing, other load on the machine) falls on both
// alike.
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

	quarantine := map[string]func(ns string) error{
		"irctl": func(ns string) error {
			p := runbook.Params{"namespace": ns, "selector": "app=orchestrator", "labels": map[string]string{"quarantine": "true"}}
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
	order := []string{"irctl", "kubectl", "kubectl", "irctl"}

	total := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, tool := range order {
			b.StopTimer()
			ns := fmt.Sprintf("bench-%s-%s", tool, randHex(3))
			if err := sandbox.SeedPods(ctx, cs, ns, pods, map[string]string{"app": "orchestrator"}); err != nil {
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
	runs := float64(b.N * 2)
	irctlSec, kubectlSec := total["irctl"].Seconds()/runs, total["kubectl"].Seconds()/runs
	b.ReportMetric(irctlSec, "irctl-s/op")
	b.ReportMetric(kubectlSec, "kubectl-s/op")
	b.ReportMetric(kubectlSec/irctlSec, "speedup")
	fmt.Printf("quarantine %d pods: irctl %.2f s, kubectl %.2f s, ratio %.1f×\n", pods, irctlSec, kubectlSec, kubectlSec/irctlSec)
}
