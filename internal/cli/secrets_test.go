package cli

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// canaryRole creates a PostgreSQL role whose password is a canary, with
// the application role's privileges, every statement of its sessions
// logged (log_statement=all, log_min_error_statement=info), and the right
// to keep its bound parameters, and error messages quoting them, out of
// that log (what irctl asks for when it binds a secret). It returns its
// URL.
func canaryRole(t *testing.T, h *harness, password string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, h.sb.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := "canary_" + randHex(4)
	id := pgx.Identifier{role}.Sanitize()
	var verifier string
	// The password is sent as a bound value, never as SQL text a log could
	// show: format() quotes it on the server.
	if err := admin.QueryRow(ctx, "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE orchestrator', $1::text, $2::text)", role, password).Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		verifier,
		"ALTER ROLE " + id + " SET log_statement = 'all'",
		"ALTER ROLE " + id + " SET log_min_error_statement = 'info'",
		"GRANT SET ON PARAMETER log_parameter_max_length, log_min_messages TO " + id,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", strings.SplitN(stmt, " PASSWORD", 2)[0], err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), h.sb.AdminDatabaseURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for _, s := range []string{"DROP OWNED BY " + id, "DROP ROLE " + id} {
			if _, err := c.Exec(context.Background(), s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
	cfg, err := pgx.ParseConfig(h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(h.sb.DatabaseURL, "orchestrator:"+h.sb.DBPassword+"@", role+":"+password+"@", 1) + "&application_name=" + cfg.Database
}

// tokenKubeconfig writes a kubeconfig for a ServiceAccount bound to
// cluster-admin whose bearer token is the token the API server issues for
// it; the token itself is the canary.
func tokenKubeconfig(t *testing.T, h *harness) (path, token string) {
	t.Helper()
	ctx := context.Background()
	sa, err := h.cs.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "responder"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "canary-responder-" + h.ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: h.ns}},
	}
	if _, err := h.cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	tr, err := h.cs.CoreV1().ServiceAccounts(h.ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	kc, err := clientcmd.LoadFromFile(h.sb.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	user := kc.Contexts[kc.CurrentContext].AuthInfo
	kc.AuthInfos[user].ClientCertificateData, kc.AuthInfos[user].ClientKeyData = nil, nil
	kc.AuthInfos[user].ClientCertificate, kc.AuthInfos[user].ClientKey = "", ""
	kc.AuthInfos[user].Token = tr.Status.Token
	path = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path, tr.Status.Token
}

// Secrets appear nowhere. Canaries are planted in a Kubernetes Secret's
// data (a key contain rotates and one it keeps), the database password of
// the role irctl connects as, the kubeconfig's bearer token, a runbook
// secret param (bound as a SQL arg, templated into a longer summary) and a
// list-typed one; the value the rotation writes is the last canary. Then
// contain, assess and preserve run at trace level with PostgreSQL logging
// every statement, and stdout, stderr, the journal, every file of the
// incident (evidence included) and the server's log are searched.
func TestSecretsNeverReachOutputLogsJournalEvidenceOrServerLog(t *testing.T) {
	h := newHarness(t, 2)
	ctx := context.Background()
	mk := func(what string) string { return "canary-" + what + "-" + randHex(8) }
	canaries := map[string]string{
		"secret data (rotated key)": mk("secretdata"),
		"secret data (kept key)":    mk("secretkept"),
		"DSN password":              mk("dsnpass"),
		"runbook secret param":      mk("param"),
		"list secret param (1)":     mk("list1"),
		"list secret param (2)":     mk("list2"),
	}
	_, err := h.cs.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "app-credentials"},
		Data: map[string][]byte{
			"secret":    []byte(canaries["secret data (rotated key)"]),
			"api-token": []byte(canaries["secret data (kept key)"]),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Notification credentials: a Slack webhook URL whose path is the
	// canary (the receiver takes any), a webhook URL with a token in it
	// that answers nothing (its error quotes the URL), an HMAC key and an
	// SMTP password (Mailpit accepts any), from the environment and a file.
	canaries["slack webhook URL"] = h.sb.NotifyReceiverURL + "/slack/services/" + mk("slackhook")
	canaries["dead webhook token"] = mk("deadhook")
	canaries["webhook HMAC key"] = mk("hmackey")
	canaries["SMTP password"] = mk("smtppass")
	t.Setenv("CANARY_SLACK_WEBHOOK", canaries["slack webhook URL"])
	t.Setenv("CANARY_DEAD_WEBHOOK", fmt.Sprintf("http://127.0.0.1:%d/hook?token=%s", closedPort(t), canaries["dead webhook token"]))
	t.Setenv("CANARY_STATUS_WEBHOOK", h.sb.WebhookURL)
	t.Setenv("CANARY_HMAC_KEY", canaries["webhook HMAC key"])
	smtpPassFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(smtpPassFile, []byte(canaries["SMTP password"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := canaryRole(t, h, canaries["DSN password"])
	kubeconfig, token := tokenKubeconfig(t, h)
	canaries["kubeconfig token"] = token

	rb := filepath.Join(t.TempDir(), "secret.yaml")
	err = os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: secret-test
params:
  namespace: {default: x}
  token: {secret: true, required: true}
  tokens: {type: strings, secret: true}
phases:
  contain:
    - name: label
      action: k8s.label
      with: {namespace: "{{ .namespace }}", selector: app=orchestrator, labels: {quarantine: "true"}}
    - name: rotate
      action: k8s.secret-rotate
      with: {namespace: "{{ .namespace }}", name: app-credentials, key: secret}
    - name: touch-users
      action: sql.exec
      with:
        summary: "revoke Bearer {{ .token }} and {{ join \",\" .tokens }}"
        sql: UPDATE users SET name = name WHERE email = $1 OR email = ANY($2::text[])
        args: ["{{ .token }}", "{{ .tokens }}"]
  assess:
    - name: who-used-it
      action: sql.query
      with:
        summary: "users matching Bearer {{ .token }}"
        sql: SELECT id, email FROM users WHERE email = $1 OR email = ANY($2::text[])
        args: ["{{ .token }}", "{{ .tokens }}"]
    - name: bad-query
      action: sql.query
      with:
        sql: SELECT $1::int
        args: ["{{ .token }}"]
  preserve:
    - name: dump
      action: k8s.dump
      with: {namespace: "{{ .namespace }}", kinds: [pods, serviceaccounts, events]}
    - name: audit
      action: sql.export
      with: {table: audit_events, since: 7d}
  notify:
    - name: slack
      action: notify.slack
      with: {webhook_url_env: CANARY_SLACK_WEBHOOK}
    - name: status-page
      action: notify.webhook
      with: {url_env: CANARY_STATUS_WEBHOOK, secret_env: CANARY_HMAC_KEY}
    - name: dead-hook
      action: notify.webhook
      with: {url_env: CANARY_DEAD_WEBHOOK, attempts: 2}
    - name: mail
      action: notify.email
      with: {to: [canary@example.com], from: irctl@example.com, smtp_host: `+h.sb.MailpitSMTPHost+`, smtp_port: `+strconv.Itoa(h.sb.MailpitSMTPPort)+`, smtp_tls: none, username: responder, password_file: `+smtpPassFile+`}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	logStart, err := os.Stat(h.sb.PostgresLog)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"-f", rb, "--kubeconfig", kubeconfig, "--database-url", dbURL, "--log-level", "trace",
		"--set", "token=" + canaries["runbook secret param"],
		"--set", "tokens=" + canaries["list secret param (1)"] + "," + canaries["list secret param (2)"]}
	var outputs []string
	for _, args := range [][]string{
		{"contain", "--yes", "--log-format", "json"},
		{"contain", "--dry-run=server", "-o", "json"},
		{"assess", "--yes"},
		{"preserve", "--yes", "--log-format", "json"},
		{"notify", "--dry-run=server", "-o", "json"},
		{"notify", "--yes", "--log-level", "debug"},
		{"runbook", "show", "-o", "json"},
		{"status", "-o", "json"},
		// A note quoting the database password, and the report, which
		// quotes the journal's notes and the evidence.
		{"note", "add", "--kind", "root-cause", "the password was " + canaries["DSN password"]},
		{"report"},
		{"report", "-o", "json", "--no-save"},
	} {
		run := args
		switch args[0] {
		case "status": // status reads the journal, not a runbook: no -f or --set
		case "note":
			run = append(args, "--database-url", dbURL)
		default:
			run = append(args, common...)
		}
		r := h.run(run...)
		// bad-query fails with the token in PostgreSQL's message; the dead
		// webhook fails with its URL in the error.
		wantFail := args[0] == "assess" || args[0] == "notify" && args[1] == "--yes"
		if (r.code != 0) != wantFail {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		outputs = append(outputs, r.stdout, r.stderr)
	}
	s, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "app-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	canaries["rotated value"] = string(s.Data["secret"])
	if canaries["rotated value"] == canaries["secret data (rotated key)"] {
		t.Fatal("contain did not rotate the Secret's key")
	}

	sources := map[string]string{"stdout/stderr": strings.Join(outputs, "\n")}
	incDir := filepath.Join(h.stateDir, h.incident)
	files := 0
	err = filepath.WalkDir(incDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files++
		sources[strings.TrimPrefix(path, incDir+"/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	pgLog, err := os.ReadFile(h.sb.PostgresLog)
	if err != nil {
		t.Fatal(err)
	}
	sources["PostgreSQL server log"] = string(pgLog[logStart.Size():])

	// Make sure the search looks where secrets could be.
	all := strings.Join(outputs, "\n")
	for what, want := range map[string]string{
		"a trace of SQL statements in irctl's log":          "sql Query",
		"the statements in the server log":                  "execute",
		"the server's statement timeout setting logged":     "statement_timeout",
		"the redacted summary in the output":                "revoke Bearer [redacted] and [redacted],[redacted]",
		"the query evidence with the redacted args in it":   "[redacted]",
		"a keyed fingerprint of the rotated value":          "hmac-sha256:",
		"the PostgreSQL error quoting the value (redacted)": `invalid input syntax for type integer: "[redacted]"`,
		"the dead webhook's error (redacted URL)":           "POST to 127.0.0.1",
		"the Slack notification sent":                       "sent Slack message",
		"the signed status page post sent":                  "sent webhook notice",
		"the mail sent with the SMTP password":              "sent email to canary@example.com",
		"the report, with the note":                         "the password was \\[redacted\\]",
	} {
		found := false
		for _, text := range sources {
			found = found || strings.Contains(text, want)
		}
		if !found {
			t.Errorf("expected %s (%q) in what was searched", what, want)
		}
	}
	if files < 5 || !strings.Contains(all, "evidence") {
		t.Errorf("only %d files in the incident directory: the evidence should be there", files)
	}

	hits := 0
	for what, c := range canaries {
		for where, text := range sources {
			if n := strings.Count(text, c); n > 0 {
				hits += n
				t.Errorf("canary %q (%s...) found %d time(s) in %s", what, c[:12], n, where)
				for _, l := range strings.Split(text, "\n") {
					if strings.Contains(l, c) {
						t.Logf("  %s", strings.ReplaceAll(l, c, "<CANARY>"))
					}
				}
			}
		}
	}
	t.Logf("%d canaries planted, %d places searched (%d incident files, stdout/stderr of 11 runs, the server log), %d hits", len(canaries), len(sources), files, hits)
}
