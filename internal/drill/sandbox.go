package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/sandbox"
)

// ReadEnv reads a sandbox's env file (`export K='V'` lines, as
// `irctl sandbox up` writes them).
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, exitcode.New(exitcode.Precondition, "no sandbox: %v (start one with `irctl sandbox up`)", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		env[k] = v
	}
	return env, sc.Err()
}

// Settled returns a wait until the orchestrator stand-in runs the
// Deployment's current generation (its /health says which), as it does a
// moment after a rollout completes.
func Settled(kubeconfig, orchestratorURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		d, err := cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, "orchestrator", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var gen int64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, orchestratorURL+"/health", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			var h struct{ Generation int64 }
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if gen = h.Generation; gen >= d.Generation {
				return nil
			}
		}
		return fmt.Errorf("the service still runs generation %d of the Deployment, not %d", gen, d.Generation)
	}
}
