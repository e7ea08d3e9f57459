package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
		switch {
		case c.CronJob != "":
			if kube == nil {
				return nil, exitcode.New(exitcode.Precondition, "credential %s: no kubeconfig to reach kube-apiserver", c.Name)
			}
			cs, err := kubernetes.NewForConfig(kube)
			if err != nil {
				return nil, err
			}
			ns, name, _ := strings.Cut(c.CronJob, "/")
			u.fire = fireCronJob(cs, ns, name)
			out = append(out, u)
			continue
		}
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

// fireCronJob is the CronJob's schedule coming due, as the CronJob
// controller would act on it (with its own rights, not the attacker's): a
// Job from the CronJob's template, owned by it. The Job is created with
// dryRun=All, so admission judges it but nothing runs: 201 while the
// CronJob exists unsuspended, 404 once it is deleted, 409 while suspended.
func fireCronJob(cs kubernetes.Interface, ns, name string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		cj, err := cs.BatchV1().CronJobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return apiStatus(err)
		}
		if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
			return http.StatusConflict, errors.New("the CronJob is suspended")
		}
		tmpl := cj.Spec.JobTemplate
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: name + "-", Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))},
			},
			Spec: tmpl.Spec,
		}
		if _, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			return apiStatus(err)
		}
		return http.StatusCreated, nil
	}
}

// apiStatus turns the API server's refusal into its HTTP status; an error
// that never reached it stays an error (status 0).
func apiStatus(err error) (int, error) {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return int(st.Status().Code), err
	}
	return 0, err
}

func pathOr(p, def string) string {
	if p == "" {
		return def
	}
	return p
}
