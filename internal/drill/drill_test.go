package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gojunit "github.com/joshdk/go-junit"

	"irctl.dev/irctl/internal/cli"
	"irctl.dev/irctl/internal/drill"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// runDrill runs `irctl drill` on a sandbox of its own (the runbook changes
// the platform for good) and returns the exit code, the score and the
// JUnit report.
func runDrill(t *testing.T, scenario string) (int, drill.Score, drill.JUnit, string, *sandbox.Sandbox) {
	t.Helper()
	bin := sandboxtest.RequireBins(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sb, err := sandbox.Start(ctx, sandbox.Options{BinDir: bin, Dir: dir, Seed: true})
	if err != nil {
		t.Fatalf("integration: starting the sandbox: %v", err)
	}
	t.Cleanup(func() { _ = sb.Stop() })
	junit := filepath.Join(t.TempDir(), "drill.xml")
	report := filepath.Join(t.TempDir(), "report.md")
	var out, errb bytes.Buffer
	code := cli.Run(ctx, []string{"--state-dir", t.TempDir(), "drill", "--sandbox-dir", dir, "--scenario", scenario, "-o", "json", "--junit", junit, "--report", report},
		cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	t.Logf("irctl drill --scenario %s: exit %d\n%s", scenario, code, errb.String())
	var s drill.Score
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("the score is not JSON: %v\n%s", err, out.String())
	}
	// The incident report is written whatever the score, with the
	// scenario as its summary and the evidence verified after it.
	md, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(md), "Drill "+scenario+" (") || !strings.Contains(string(md), s.Incident) {
		t.Errorf("report: %v\n%s", err, md)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var j drill.JUnit
	if err := xml.Unmarshal(data, &j); err != nil {
		t.Fatalf("the JUnit file does not parse: %v\n%s", err, data)
	}
	// The JUnit shape: counts agree with the cases, every case named.
	n, failed := 0, 0
	for _, su := range j.Suites {
		if su.Name == "" || su.Tests != len(su.Cases) {
			t.Errorf("suite %q: tests=%d, %d cases", su.Name, su.Tests, len(su.Cases))
		}
		for _, c := range su.Cases {
			n++
			if c.Name == "" || c.Classname == "" || c.Time == "" {
				t.Errorf("case without name, classname or time: %+v", c)
			}
			if c.Failure != nil {
				failed++
				if c.Failure.Message == "" {
					t.Errorf("case %s fails with no message", c.Name)
				}
			}
		}
	}
	if n != j.Tests || n != len(s.Cases) || failed != j.Failures {
		t.Errorf("JUnit counts: %d cases, tests=%d failures=%d (%d failing), the score has %d cases", n, j.Tests, j.Failures, failed, len(s.Cases))
	}
	// A JUnit reader that is not ours (the one CI report tools build on)
	// reads the same cases and verdicts.
	suites, err := gojunit.Ingest(data)
	if err != nil {
		t.Fatalf("go-junit cannot read the JUnit file: %v", err)
	}
	var total, failing int
	for _, su := range suites {
		total += su.Totals.Tests
		failing += su.Totals.Failed
		for _, c := range su.Tests {
			if c.Status == gojunit.StatusFailed && (c.Error == nil || c.Error.Error() == "") {
				t.Errorf("go-junit: case %s failed without a message", c.Name)
			}
		}
	}
	if total != len(s.Cases) || failing != j.Failures {
		t.Errorf("go-junit reads %d cases, %d failed; the score has %d cases, %d failed", total, failing, len(s.Cases), j.Failures)
	}
	for _, secret := range []string{sb.AttackerAPIKey, sb.AttackerJWT, "drill-llm-provider-key"} {
		if strings.Contains(out.String()+errb.String()+string(data)+string(md), secret) {
			t.Fatal("a secret is in the drill's output")
		}
	}
	return code, s, j, string(data), sb
}

func TestLeakedAPIKeysDrillLocksTheAttackerOut(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("integration")
	}
	code, s, j, _, sb := runDrill(t, "leaked-api-keys")
	if code != 0 || !s.Passed || j.Failures != 0 {
		t.Errorf("exit %d, passed %v, %d JUnit failures: %+v", code, s.Passed, j.Failures, s.Cases)
	}
	if len(s.Lockout) != 2 {
		t.Fatalf("lockout: %+v", s.Lockout)
	}
	for _, l := range s.Lockout {
		// The attacker got in before containment and never after it.
		if !l.LockedOut || l.AfterContain != 0 || l.Successes == 0 || l.Refused == 0 || l.LastSuccess == nil {
			t.Errorf("%s: %+v", l.Credential, l)
		}
	}
	// Every check passes, no-attacker-request-accepted included: it
	// counts from the end of containment, and the attacker's JWT requests
	// during the rollout show in the lockout times above instead.
	if s.Checks.Total != 6 || s.Checks.Passed != 6 || s.Checks.Known != 0 || !s.Evidence.Verified || s.StepsFailed != 0 {
		t.Errorf("checks %+v, evidence %+v, steps failed %d", s.Checks, s.Evidence, s.StepsFailed)
	}
	if len(s.Phases) != 7 || s.Phases[0].Phase != "contain" || s.Phases[0].Window != time.Hour || !s.Phases[0].InWindow {
		t.Errorf("phases: %+v", s.Phases)
	}
	// contain revokes keys (irreversible by design) and labels, isolates
	// and restarts (undoable): both kinds are counted.
	if s.Undoable == 0 || s.Irreversible == 0 {
		t.Errorf("changes undoable %d, irreversible %d", s.Undoable, s.Irreversible)
	}
	// The notify phase delivered, and the sandbox's receivers got them:
	// the Slack post and the status page's webhook, and the mails.
	var slack, hooks int
	for _, r := range sb.Received() {
		switch r.Kind {
		case "slack-webhook", "slack-api":
			slack++
		case "webhook":
			hooks++
		}
	}
	resp, err := http.Get(sb.MailpitURL + "/api/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	var mails struct {
		Total int `json:"total"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&mails)
	resp.Body.Close()
	if s.Notified == 0 || slack != 1 || hooks != 1 || mails.Total == 0 || s.Notified != slack+hooks+mails.Total {
		t.Errorf("notifications delivered %d; received: %d Slack, %d webhook, %d mails", s.Notified, slack, hooks, mails.Total)
	}
	// How it is computed is TestLockoutIsJudgedFromAttemptsAfterContain's;
	// here, that the drill reports it.
	if s.TimeToContain <= 0 {
		t.Errorf("time to contain %s", s.TimeToContain)
	}
	t.Logf("time to contain: %s", s.TimeToContain)
}

func TestBreakGlassDrillFailsNamingTheMissingStep(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("integration")
	}
	code, s, j, xmlText, _ := runDrill(t, "break-glass-stolen")
	if code != 1 || s.Passed {
		t.Errorf("exit %d, passed %v: want 1, failed", code, s.Passed)
	}
	var bg *drill.Lockout
	for i, l := range s.Lockout {
		if l.Credential == "break-glass-key" {
			bg = &s.Lockout[i]
		} else if !l.LockedOut {
			t.Errorf("%s is not locked out: %+v", l.Credential, l)
		}
	}
	if bg == nil || bg.LockedOut || bg.AfterContain == 0 {
		t.Fatalf("the stolen break-glass key: %+v", bg)
	}
	const missing = "runbook security-incident has no step rotate-break-glass-keys in phase contain"
	if !strings.Contains(xmlText, missing) {
		t.Errorf("the JUnit file does not name the missing step (%q)", missing)
	}
	// The rest of the runbook did its job: no step but validate's failed.
	for _, c := range s.Cases {
		if c.Result == "fail" && c.Group == "step" && !strings.HasPrefix(c.Name, "validate/") {
			t.Errorf("%s failed: %s", c.Name, c.Message)
		}
	}
	if j.Failures == 0 {
		t.Error("no JUnit failure")
	}
}

func TestClusterCompromiseDrill(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("integration")
	}
	code, s, _, _, _ := runDrill(t, "cluster-compromise")
	if code != 0 || !s.Passed {
		t.Errorf("exit %d, passed %v: %+v", code, s.Passed, s.Cases)
	}
	// The JWT is locked out by contain, the ServiceAccount's token and the
	// miner CronJob's schedule by eradicate; all got in before.
	if len(s.Lockout) != 3 {
		t.Fatalf("lockout: %+v", s.Lockout)
	}
	for _, l := range s.Lockout {
		if !l.LockedOut || l.AfterContain != 0 || l.Successes == 0 || l.Refused == 0 {
			t.Errorf("%s: %+v", l.Credential, l)
		}
	}
	if s.Lockout[1].JudgedAfter != "eradicate" || s.Lockout[2].JudgedAfter != "eradicate" {
		t.Errorf("the ServiceAccount token and the CronJob are judged after %s and %s", s.Lockout[1].JudgedAfter, s.Lockout[2].JudgedAfter)
	}
	// Every check passes, the Prometheus one too: the sandbox's Prometheus
	// loaded the alert rules recover applied.
	if s.Checks.Known != 0 || s.Checks.Total == 0 || s.Checks.Passed != s.Checks.Total || !s.Evidence.Verified {
		t.Errorf("checks %+v, evidence %+v", s.Checks, s.Evidence)
	}
}
