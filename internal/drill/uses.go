package drill

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"irctl.dev/irctl/internal/exitcode"
)

// uses prepares each credential's requests. A ServiceAccount's token is
// minted now with the admin's kubeconfig: it is the token the attacker
// stole, bound to the ServiceAccount, so removing its bindings (or the
// account) is what stops it.
func uses(ctx context.Context, creds []Credential, orchestratorURL string, kube *rest.Config) ([]use, error) {
	plain := &http.Client{Timeout: 2 * time.Second}
	var out []use
	for _, c := range creds {
		u := use{name: c.Name, header: c.Header, value: c.Value, client: plain}
		switch c.Target {
		case "", TargetOrchestrator:
			if orchestratorURL == "" {
				return nil, exitcode.New(exitcode.Precondition, "the sandbox has no ORCHESTRATOR_URL (was it seeded?): credential %s has nothing to attack", c.Name)
			}
			u.url = orchestratorURL + pathOr(c.Path, "/v1/me")
		case TargetKube:
			if kube == nil {
				return nil, exitcode.New(exitcode.Precondition, "credential %s: no kubeconfig to reach kube-apiserver", c.Name)
			}
			// The attacker's client trusts the cluster's CA and presents
			// nothing but the stolen token.
			cfg := rest.AnonymousClientConfig(kube)
			cfg.Timeout = 2 * time.Second
			client, err := rest.HTTPClientFor(cfg)
			if err != nil {
				return nil, err
			}
			u.client = client
			u.url = strings.TrimSuffix(kube.Host, "/") + pathOr(c.Path, "/api/v1/namespaces/kube-system/secrets")
		}
		if c.ServiceAccount != "" {
			ns, name, _ := strings.Cut(c.ServiceAccount, "/")
			cs, err := kubernetes.NewForConfig(kube)
			if err != nil {
				return nil, err
			}
			tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("credential %s: minting the ServiceAccount's token: %w", c.Name, err)
			}
			u.header, u.value = "Authorization", "Bearer "+tr.Status.Token
		}
		out = append(out, u)
	}
	return out, nil
}

func pathOr(p, def string) string {
	if p == "" {
		return def
	}
	return p
}
