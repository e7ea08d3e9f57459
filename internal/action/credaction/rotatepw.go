// Package credaction holds the actions that rotate a credential on a
// server and hand it to the workloads that use it: they touch PostgreSQL
// and Kubernetes in one step, so that the two never disagree for longer
// than a rollout.
package credaction

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// RotatePassword rotates a PostgreSQL role's password. The new password is
// generated here; the server only ever gets its SCRAM-SHA-256 verifier.
type RotatePassword struct{}

func (RotatePassword) Spec() runbook.Spec {
	return runbook.Spec{
		Name: "sql.rotate-password",
		Description: "Rotate a PostgreSQL role's password: generate it (crypto/rand), send only its SCRAM-SHA-256 verifier " +
			"(ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'), write it into the Secret key the consumers read, restart the " +
			"consumer Deployments and wait for their rollout, then prove it by connecting as the role. Cannot be undone.",
		Destructive: true,
		Uses:        []string{runbook.UsesPostgres, runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "role", Type: runbook.String, Required: true, Description: "the PostgreSQL role (must exist and be able to log in)"},
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the Secret and the consumers"},
			{Name: "secret", Type: runbook.String, Required: true, Description: "the Secret the consumers read the password from (must exist)"},
			{Name: "key", Type: runbook.String, Required: true, Description: "its data key holding the password"},
			{Name: "deployments", Type: runbook.Strings, Description: "Deployments to restart so they read the new password; without any, the plan warns"},
			{Name: "timeout", Type: runbook.Duration, Default: 5 * time.Minute, Description: "how long each rollout may take"},
			{Name: "once_per_incident", Type: runbook.Bool, Default: true, Description: "skip when the Secret was already rotated for this incident"},
		},
		Validate: func(p runbook.Params) error { _, err := rotateParams(p); return err },
	}
}

type rpParams struct {
	role, ns, secret, key string
	deployments           []string
	timeout               time.Duration
	once                  bool
}

// rotateParams reads and checks the params in one place.
func rotateParams(p runbook.Params) (rpParams, error) {
	r := rpParams{role: p.String("role"), ns: p.String("namespace"), secret: p.String("secret"), key: p.String("key"),
		deployments: p.Strings("deployments"), timeout: p.Duration("timeout"), once: p.Bool("once_per_incident")}
	if r.role == "" {
		return r, fmt.Errorf("role is empty")
	}
	if errs := validation.IsDNS1123Subdomain(r.secret); len(errs) > 0 {
		return r, fmt.Errorf("secret %q: %s", r.secret, errs[0])
	}
	if errs := validation.IsConfigMapKey(r.key); len(errs) > 0 {
		return r, fmt.Errorf("key %q: %s", r.key, errs[0])
	}
	for _, d := range r.deployments {
		if errs := validation.IsDNS1123Subdomain(d); len(errs) > 0 {
			return r, fmt.Errorf("deployments: %q: %s", d, errs[0])
		}
	}
	if r.timeout <= 0 {
		return r, fmt.Errorf("timeout %s: want more than 0", r.timeout)
	}
	return r, nil
}

func (RotatePassword) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	perms := []kube.Permission{
		{Verb: "get", Resource: "secrets", Namespace: ns},
		{Verb: "update", Resource: "secrets", Namespace: ns},
		{Verb: "patch", Resource: "secrets", Namespace: ns},
	}
	if len(p.Strings("deployments")) > 0 {
		perms = append(perms,
			kube.Permission{Verb: "get", Group: "apps", Resource: "deployments", Namespace: ns},
			kube.Permission{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: ns})
	}
	return perms
}

func (a RotatePassword) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	r, err := rotateParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	where := r.ns + "/" + r.secret
	s, err := c.Core.CoreV1().Secrets(r.ns).Get(ctx, r.secret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Secret %s: %s", where, kube.Short(err))
	}
	if s.Immutable != nil && *s.Immutable {
		return nil, fmt.Errorf("Secret %s is immutable: the consumers could not be given the new password", where)
	}
	if r.once && env.Incident != "" && s.Annotations[kubeaction.RotatedForIncident] == env.Incident {
		return &action.Plan{Summary: fmt.Sprintf("the password of role %q in Secret %s was already rotated for incident %s", r.role, where, env.Incident), Noop: true}, nil
	}
	// A rolled-back ALTER ROLE proves the role exists and that we may
	// change its password, without changing it.
	if err := alterRole(ctx, env, r.role, false); err != nil {
		return nil, err
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("set a new password for PostgreSQL role %q (only its SCRAM-SHA-256 verifier is sent), write it into key %q of Secret %s, restart %d Deployment(s) and connect with it",
			r.role, r.key, where, len(r.deployments)),
		Targets: []string{"role/" + r.role, "secret/" + where},
		Count:   2 + len(r.deployments),
	}
	for _, name := range r.deployments {
		d, err := c.Core.AppsV1().Deployments(r.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get Deployment %s/%s: %s", r.ns, name, kube.Short(err))
		}
		plan.Targets = append(plan.Targets, "deployment/"+r.ns+"/"+name)
		if !readsSecretKey(d.Spec.Template.Spec, r.secret, r.key) {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("Deployment %s/%s does not read key %q of Secret %s: restarting it will not give it the new password", r.ns, name, r.key, r.secret))
		}
	}
	if len(r.deployments) == 0 {
		plan.Warnings = append(plan.Warnings, "no consumer Deployments given: workloads that read the Secret keep the old password, which stops working now")
	}
	plan.Warnings = append(plan.Warnings, "sessions already open as the role stay open: a password change does not end them (pg_terminate_backend does)")
	return plan, nil
}

// readsSecretKey reports whether a pod template takes the key from the
// Secret (env valueFrom, envFrom, or a volume).
func readsSecretKey(spec corev1.PodSpec, secret, key string) bool {
	for _, ctr := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range ctr.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name == secret && ref.SecretKeyRef.Key == key {
				return true
			}
		}
		for _, e := range ctr.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == secret {
				return true
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			return true
		}
	}
	return false
}

// alterRole sets a throwaway password's verifier (see setPassword).
func alterRole(ctx context.Context, env *action.Env, role string, commit bool) error {
	_, err := setPassword(ctx, env, role, newPassword(), commit)
	return err
}

// setPassword looks the role up in pg_roles and sets the password's
// verifier, in a transaction committed only when commit is true.
func setPassword(ctx context.Context, env *action.Env, role, password string, commit bool) (string, error) {
	pool, err := env.DB(ctx)
	if err != nil {
		return "", err
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return "", err
	}
	err = db.InTx(ctx, pool, commit, time.Minute, func(tx pgx.Tx) error {
		var name string
		var login bool
		err := tx.QueryRow(ctx, "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = $1", role).Scan(&name, &login)
		if err == pgx.ErrNoRows {
			return fmt.Errorf("role %q: no such role in pg_roles", role)
		}
		if err != nil {
			return fmt.Errorf("looking up role %q: %s", role, db.Describe(err))
		}
		if !login {
			return fmt.Errorf("role %q cannot log in (NOLOGIN): it has no password to rotate", role)
		}
		// ALTER ROLE takes no bind parameters: the name is quoted as an
		// identifier, the verifier is ours (base64 and '$:' only).
		if strings.ContainsAny(verifier, `'\`) {
			return fmt.Errorf("internal error: unexpected character in the verifier")
		}
		if _, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{name}.Sanitize()+" PASSWORD '"+verifier+"'"); err != nil {
			return fmt.Errorf("ALTER ROLE %q: %s", role, db.Describe(err))
		}
		return nil
	})
	return password, err
}

func (a RotatePassword) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	r, err := rotateParams(p)
	if err != nil {
		return nil, err
	}
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	dry := env.DryRun == action.DryRunServer
	where := r.ns + "/" + r.secret
	password := newPassword()
	fp, err := env.Fingerprint([]byte(password))
	if err != nil {
		return nil, err
	}
	irr := "the old password is not kept: it cannot be restored"

	// The Secret first: if ALTER ROLE then fails, running pods still have
	// the old password, which still works, and the new one is not lost.
	if err := writeSecret(ctx, c, r, password, dry); err != nil {
		return nil, fmt.Errorf("write key %q of Secret %s: %s; nothing changed in the database", r.key, where, kube.Short(err))
	}
	if _, err := setPassword(ctx, env, r.role, password, !dry); err != nil {
		return nil, fmt.Errorf("%v; Secret %s already holds the new password (%s), which does not work yet: run the step again", err, where, fp)
	}
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	if env.Incident != "" {
		ann := map[string]string{kubeaction.RotatedForIncident: env.Incident, kubeaction.RotatedAt: now.UTC().Format(time.RFC3339Nano)}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
		if _, err := c.Core.CoreV1().Secrets(r.ns).Patch(ctx, r.secret, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)}); err != nil {
			return nil, fmt.Errorf("the password of role %q is rotated (%s) but annotating Secret %s failed: %s", r.role, fp, where, kube.Short(err))
		}
	}
	res := &action.Result{Changed: 2, Irreversible: irr}
	for _, name := range r.deployments {
		if err := kubeaction.RestartDeployment(ctx, c, r.ns, name, now, dry); err != nil {
			res.Failed = append(res.Failed, action.Failure{Target: "deployment/" + r.ns + "/" + name, Error: "restart: " + kube.Short(err)})
			continue
		}
		res.Changed++
	}
	if dry {
		res.Summary = fmt.Sprintf("would rotate the password of role %q (rolled back), write it into Secret %s and restart %d Deployment(s)", r.role, where, len(r.deployments))
		return res, nil
	}
	for _, name := range r.deployments {
		if err := kubeaction.WaitDeploymentRollout(ctx, env, c, r.ns, name, r.timeout); err != nil {
			res.Failed = append(res.Failed, action.Failure{Target: "deployment/" + r.ns + "/" + name, Error: err.Error()})
		}
	}
	if err := proveLogin(ctx, env, r.role, password); err != nil {
		res.Failed = append(res.Failed, action.Failure{Target: "role/" + r.role, Error: "connecting with the new password: " + err.Error()})
	}
	res.Summary = fmt.Sprintf("rotated the password of role %q (%s), wrote it into key %q of Secret %s, restarted %d Deployment(s)", r.role, fp, r.key, where, len(r.deployments))
	if len(res.Failed) == 0 {
		res.Summary += "; connected as the role with the new password"
	}
	return res, nil
}

// writeSecret sets the key, re-reading the Secret on a conflict.
func writeSecret(ctx context.Context, c *kube.Clients, r rpParams, password string, dry bool) error {
	secrets := c.Core.CoreV1().Secrets(r.ns)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := secrets.Get(ctx, r.secret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[r.key] = []byte(password)
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: kube.DryRunOpt(dry)})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the Secret was deleted meanwhile")
		}
		return err
	})
}

// proveLogin connects to the same server and database as irctl's own
// connection, as the role, with the new password.
func proveLogin(ctx context.Context, env *action.Env, role, password string) error {
	pool, err := env.DB(ctx)
	if err != nil {
		return err
	}
	cfg := pool.Config().ConnConfig.Copy()
	cfg.User, cfg.Password = role, password
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s", db.Describe(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
