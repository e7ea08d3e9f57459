package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Secrets appear nowhere: not the database password (in the DSN), not a
// runbook param marked secret, at the most verbose log level.
func TestSecretsNeverReachOutputLogsOrJournal(t *testing.T) {
	h := newHarness(t, 2)
	const canary = "canary-7f3a9c1e-secret"
	rb := filepath.Join(t.TempDir(), "secret.yaml")
	err := os.WriteFile(rb, []byte(`apiVersion: irctl/v1
kind: Runbook
name: secret-test
params:
  namespace: {default: x}
  token: {secret: true, required: true}
phases:
  contain:
    - name: label
      action: k8s.label
      with: {namespace: "{{ .namespace }}", selector: app=orchestrator, labels: {quarantine: "true"}}
    - name: touch-users
      action: sql.exec
      with:
        sql: UPDATE users SET name = name WHERE email <> $1
        args: ["{{ .token }}"]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{}
	for _, args := range [][]string{
		{"contain", "--yes", "-f", rb, "--set", "token=" + canary, "--log-level", "debug", "--log-format", "json"},
		{"contain", "--dry-run=server", "-o", "json", "-f", rb, "--set", "token=" + canary, "--log-level", "debug"},
		{"runbook", "show", "-f", rb, "--set", "token=" + canary, "-o", "json"},
		{"status", "-o", "json"},
	} {
		r := h.run(args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d %s", args, r.code, r.stderr)
		}
		outputs = append(outputs, r.stdout, r.stderr)
	}
	journal, err := os.ReadFile(filepath.Join(h.stateDir, h.incident, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(journal))
	all := strings.Join(outputs, "\n")
	if !strings.Contains(all, `"sql query"`) && !strings.Contains(all, "sql Query") {
		t.Fatalf("debug log should trace SQL statements (so this test looks where secrets could leak):\n%s", all)
	}
	for _, secret := range []string{canary, h.sb.DBPassword} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q leaked:\n%s", secret[:8]+"...", all)
		}
	}
	if !strings.Contains(string(journal), "[redacted]") {
		t.Error("journal should show the secret param as [redacted]")
	}
}
