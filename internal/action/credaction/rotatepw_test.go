package credaction

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/kubeaction"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type pwFixture struct {
	t        *testing.T
	clients  *kube.Clients
	pool     *pgxpool.Pool
	connCfg  *pgx.ConnConfig
	ns, role string
	incident string
	logs     bytes.Buffer
}

func (f *pwFixture) env(dry action.DryRun) *action.Env {
	return &action.Env{
		Kube:     func() (*kube.Clients, error) { return f.clients, nil },
		DB:       func(context.Context) (*pgxpool.Pool, error) { return f.pool, nil },
		DryRun:   dry,
		Log:      zerolog.New(&f.logs),
		Incident: f.incident,
	}
}

// login reports whether the role can connect with the password.
func (f *pwFixture) login(password string) bool {
	cfg := f.connCfg.Copy()
	cfg.User, cfg.Password = f.role, password
	conn, err := pgx.ConnectConfig(f.t.Context(), cfg)
	if err != nil {
		return false
	}
	conn.Close(f.t.Context())
	return true
}

// A consumer Deployment reading the password from the Secret, as the
// orchestrator reads orchestrator-db; a role of its own, so that the
// sandbox's orchestrator role stays as the other tests expect it.
func newPWFixture(t *testing.T) (*pwFixture, string) {
	sb := sandboxtest.Get(t)
	clients, err := kube.NewClients(sb.RESTConfig, "irctl-test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(t.Context(), sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f := &pwFixture{t: t, clients: clients, pool: pool, connCfg: pool.Config().ConnConfig,
		ns: "cred-" + randHex(4), role: "app_" + randHex(4), incident: "SEC-TEST-" + randHex(3)}
	old := "old-" + randHex(12)
	if _, err := pool.Exec(t.Context(), "CREATE ROLE "+f.role+" LOGIN PASSWORD '"+old+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+f.role) })
	cs := clients.Core
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(f.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "app-db"},
		Data:       map[string][]byte{"password": []byte(old), "username": []byte(f.role)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "consumer"}
	if _, err := cs.AppsV1().Deployments(f.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "consumer"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "app", Image: "registry.example/app@sha256:" + strings.Repeat("a", 64),
						Env: []corev1.EnvVar{{Name: "DATABASE_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: "app-db"}, Key: "password"}}}}}},
				},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kubeaction.WaitDeploymentRollout(ctx, f.env(action.DryRunNone), clients, f.ns, "consumer", 2*time.Minute); err != nil {
		t.Fatalf("the consumer never rolled out: %v", err)
	}
	return f, old
}

// serverLog turns on log_statement=all and returns the server log's path
// and how long it is now, so a test reads only what it caused.
func (f *pwFixture) serverLog() (string, int64) {
	ctx := f.t.Context()
	for _, q := range []string{"ALTER SYSTEM SET log_statement = 'all'", "SELECT pg_reload_conf()"} {
		if _, err := f.pool.Exec(ctx, q); err != nil {
			f.t.Fatal(err)
		}
	}
	f.t.Cleanup(func() {
		_, _ = f.pool.Exec(context.Background(), "ALTER SYSTEM RESET log_statement")
		_, _ = f.pool.Exec(context.Background(), "SELECT pg_reload_conf()")
	})
	var dataDir string
	if err := f.pool.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		f.t.Fatal(err)
	}
	// The sandbox writes postgres' stderr to postgres.log beside data/.
	path := filepath.Join(filepath.Dir(dataDir), "postgres.log")
	st, err := os.Stat(path)
	if err != nil {
		f.t.Fatal(err)
	}
	// Wait until the reload took effect: a new session logs its statements.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := f.pool.Acquire(ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		var v string
		_ = conn.QueryRow(ctx, "SHOW log_statement").Scan(&v)
		conn.Release()
		if v == "all" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return path, st.Size()
}

func readFrom(t *testing.T, path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[off:])
}

func TestRotatePasswordOnlySendsTheVerifier(t *testing.T) {
	f, old := newPWFixture(t)
	a := RotatePassword{}
	p := RotatePassword{}.Spec().MustBind(map[string]any{"role": f.role, "namespace": f.ns, "secret": "app-db", "key": "password", "deployments": []string{"consumer"}, "timeout": 2 * time.Minute})
	if err := a.Spec().Validate(p); err != nil {
		t.Fatal(err)
	}
	logPath, logStart := f.serverLog()
	ctx := t.Context()
	cs := f.clients.Core
	getSecret := func() *corev1.Secret {
		s, err := cs.CoreV1().Secrets(f.ns).Get(ctx, "app-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	getDeploy := func() *appsv1.Deployment {
		d, err := cs.AppsV1().Deployments(f.ns).Get(ctx, "consumer", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// --dry-run=server: planned, sent with dryRun=All and rolled back.
	secretRV, deployRV := getSecret().ResourceVersion, getDeploy().ResourceVersion
	plan, err := a.Plan(ctx, f.env(action.DryRunServer), p)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Count != 3 || len(plan.Warnings) != 1 || !strings.Contains(plan.Summary, "only its SCRAM-SHA-256 verifier is sent") {
		t.Errorf("plan: %+v", plan)
	}
	res, err := a.Apply(ctx, f.env(action.DryRunServer), p, plan)
	if err != nil || res.Changed != 3 || len(res.Failed) != 0 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if getSecret().ResourceVersion != secretRV || getDeploy().ResourceVersion != deployRV || !f.login(old) {
		t.Fatal("the server dry run changed something")
	}

	// For real.
	plan, err = a.Plan(ctx, f.env(action.DryRunNone), p)
	if err != nil {
		t.Fatal(err)
	}
	res, err = a.Apply(ctx, f.env(action.DryRunNone), p, plan)
	if err != nil || len(res.Failed) != 0 || res.Changed != 3 || res.Irreversible == "" {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	s := getSecret()
	newPW := string(s.Data["password"])
	if newPW == old || len(newPW) != 43 || string(s.Data["username"]) != f.role {
		t.Fatalf("the Secret should hold a new password and keep its other keys: %d bytes", len(newPW))
	}
	if s.Annotations[kubeaction.RotatedForIncident] != f.incident || s.Annotations[kubeaction.RotatedAt] == "" {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if f.login(old) {
		t.Error("the old password still connects")
	}
	if !f.login(newPW) {
		t.Error("the new password does not connect")
	}
	if !strings.Contains(res.Summary, "connected as the role with the new password") {
		t.Errorf("summary: %s", res.Summary)
	}
	// The consumer restarted and rolled out: every pod is of the new template.
	d := getDeploy()
	if d.Spec.Template.Annotations[kubeaction.RestartedAtAnnotation] == "" {
		t.Error("the consumer's pod template was not annotated")
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != *d.Spec.Replicas || d.Status.ReadyReplicas != *d.Spec.Replicas {
		t.Errorf("the consumer is not rolled out: %+v", d.Status)
	}
	var dbPW string
	if err := f.pool.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", f.role).Scan(&dbPW); err != nil || !strings.HasPrefix(dbPW, "SCRAM-SHA-256$4096:") {
		t.Errorf("stored password: %.20s..., %v", dbPW, err)
	}

	// The password is nowhere but in the Secret: not in the server log
	// (which did log the ALTER ROLE, with the verifier), nor in anything
	// the action returned or logged.
	serverLog := readFrom(t, logPath, logStart)
	if !strings.Contains(serverLog, "ALTER ROLE") || !strings.Contains(serverLog, "SCRAM-SHA-256$4096:") {
		t.Fatalf("log_statement=all did not log the ALTER ROLE; the test would prove nothing:\n%s", serverLog)
	}
	if strings.Contains(serverLog, newPW) {
		t.Error("the new password reached the server log")
	}
	out, _ := json.Marshal([]any{plan, res})
	if strings.Contains(string(out)+f.logs.String(), newPW) {
		t.Errorf("the new password is in the plan, result or log: %s", out)
	}

	// Once per incident: running the phase again changes nothing.
	again, err := a.Plan(ctx, f.env(action.DryRunNone), p)
	if err != nil || !again.Noop {
		t.Errorf("second plan should be a no-op: %+v, %v", again, err)
	}
}

func TestRotatePasswordRefusesBadTargets(t *testing.T) {
	f, _ := newPWFixture(t)
	a := RotatePassword{}
	for name, c := range map[string]struct {
		p    runbook.Params
		want string
	}{
		"unknown role":   {RotatePassword{}.Spec().MustBind(map[string]any{"role": "no_such_role_x", "namespace": f.ns, "secret": "app-db", "key": "password"}), "no such role"},
		"missing Secret": {RotatePassword{}.Spec().MustBind(map[string]any{"role": f.role, "namespace": f.ns, "secret": "nope", "key": "password"}), "get Secret"},
		"missing consumer": {RotatePassword{}.Spec().MustBind(map[string]any{"role": f.role, "namespace": f.ns, "secret": "app-db", "key": "password", "deployments": []string{"nope"}}),
			"get Deployment"},
	} {
		if _, err := a.Plan(t.Context(), f.env(action.DryRunNone), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want %q, got %v", name, c.want, err)
		}
	}
	// A consumer that does not read the key is warned about.
	p := RotatePassword{}.Spec().MustBind(map[string]any{"role": f.role, "namespace": f.ns, "secret": "app-db", "key": "username", "deployments": []string{"consumer"}})
	plan, err := a.Plan(t.Context(), f.env(action.DryRunNone), p)
	if err != nil || !strings.Contains(strings.Join(plan.Warnings, "\n"), "does not read key \"username\"") {
		t.Errorf("want a warning: %+v, %v", plan, err)
	}
}
