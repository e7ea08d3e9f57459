package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

var clockT0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// clockIncident declares an incident at clockT0 whose journal holds recs,
// and returns a runner of irctl at the injected time now.
func clockIncident(t *testing.T, recs []incident.Record) (*incident.Incident, func(now time.Duration, args ...string) result) {
	t.Helper()
	inc, run := journaled(t, clockT0, recs)
	t.Cleanup(func() { timeNow = time.Now })
	return inc, func(now time.Duration, args ...string) result {
		timeNow = func() time.Time { return clockT0.Add(now) }
		return run("", args...)
	}
}

func outcome(phase, step string, d time.Duration) incident.Record {
	return incident.Record{Kind: incident.KindOutcome, Phase: phase, Step: step, DryRun: "none", Time: clockT0.Add(d), Result: "done"}
}

func delivered(step string, d time.Duration) incident.Record {
	r := outcome("notify", step, d)
	r.Action, r.Sent = "notify.email", []string{"k:" + step}
	return r
}

// contained is a journal of the shipped default runbook's contain phase,
// done 30 minutes in, and its internal notifications: the email in time,
// the Slack message late.
func contained() []incident.Record {
	recs := []incident.Record{{Kind: incident.KindRun, Command: "contain", Phases: []string{"contain"}, RunbookRef: "security-incident", DryRun: "none", Time: clockT0.Add(time.Minute), Set: map[string]string{"slack_channel": "#ir-drill"}}}
	for _, s := range []string{"quarantine-pods", "isolate-quarantined-pods", "revoke-api-keys", "rotate-jwt-secret", "restart-jwt-consumers", "disable-compromised-accounts"} {
		recs = append(recs, outcome("contain", s, 30*time.Minute))
	}
	return append(recs, delivered("email-internal", 30*time.Second), delivered("slack-security-incidents", 3*time.Minute))
}

// status shows met and overdue clocks at the injected time, above the
// journal listing, and -o json carries the same.
func TestStatusShowsClocks(t *testing.T) {
	_, run := clockIncident(t, contained())
	r := run(5*time.Hour, "status")
	if r.code != 0 {
		t.Fatalf("status: exit %d %s", r.code, r.stderr)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for first, want := range map[string][]string{
		"status":     {"status Contained; 5h since declared 2026-11-22 10:00Z"},
		"contain":    {"0s-1h", "2026-11-22 11:00Z", "met", "2026-11-22 10:30Z"},
		"assess":     {"1h-4h", "2026-11-22 14:00Z", "overdue !"},
		"recover":    {"4h-24h", "running"},
		"Security,":  {"email-internal", "done", "2026-11-22 10:00Z"},
		"Security":   {"#ir-drill", "slack-security-incidents", "2026-11-22 10:01Z (within 1m)", "late !", "2026-11-22 10:03Z"},
		"Regulators": {"(data breach)", "2026-11-25 10:00Z (within 72h)", "due"},
		"GDPR":       {"due 2026-11-25 10:00Z (email-regulators), running"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[first], w) {
				t.Errorf("line %q lacks %q\n%s", lines[first], w, r.stdout)
			}
		}
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour on a non-terminal:\n%q", r.stdout)
	}
	if i, j := strings.Index(r.stdout, "PHASE  "), strings.Index(r.stdout, "TIME  "); i < 0 || j < i || !strings.Contains(r.stdout[j:], "revoke-api-keys") {
		t.Errorf("want the clocks above the journal listing:\n%s", r.stdout)
	}

	r = run(5*time.Hour, "status", "-o", "json")
	var v struct {
		Clocks  clocks.Clocks     `json:"clocks"`
		Journal []incident.Record `json:"journal"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 {
		t.Fatalf("status -o json: exit %d %v\n%s", r.code, err, r.stdout)
	}
	c := v.Clocks
	if c.Status != "Contained" || len(v.Journal) != 9 || !c.Now.Equal(clockT0.Add(5*time.Hour)) || len(c.Phases) != 6 || c.Phases[0].State != clocks.Met || c.Phases[1].State != clocks.Overdue ||
		len(c.Escalations) != 3 || c.Escalations[0].State != clocks.Late || c.Escalations[1].State != clocks.Done || c.GDPR == nil || c.GDPR.State != clocks.Running {
		t.Errorf("json clocks: %+v", c)
	}
	if !strings.Contains(r.stdout, `"elapsed": "5h0m0s"`) || !strings.Contains(r.stdout, `"within": "1m0s"`) {
		t.Errorf("durations in json:\n%s", r.stdout)
	}

	// Three days in, the GDPR deadline has passed with no notice sent.
	if r := run(72*time.Hour, "status"); !strings.Contains(r.stdout, "(email-regulators), overdue !") {
		t.Errorf("GDPR at 72h:\n%s", r.stdout)
	}
}

// close refuses until validate has passed unless --force, journals who
// closed and when, and is idempotent; status then says Closed with the
// clocks stopped.
func TestCloseRefusesForcesAndIsIdempotent(t *testing.T) {
	inc, run := clockIncident(t, contained())
	r := run(6*time.Hour, "close")
	if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "validate has not passed: no-attacker-request-accepted,") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("close before validate: exit %d %q", r.code, r.stderr)
	}
	if recs, _ := incident.ReadJournal(inc.JournalPath()); len(recs) != 9 {
		t.Fatalf("a refused close journaled: %d records", len(recs))
	}
	r = run(6*time.Hour, "close", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, inc.ID+" closed at 2026-11-22 16:00Z") || !strings.Contains(r.stderr, "closed with --force") {
		t.Fatalf("close --force: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(7*time.Hour, "close")
	if r.code != 0 || !strings.Contains(r.stderr, "already closed (2026-11-22 16:00Z by ") {
		t.Fatalf("close again: exit %d %q", r.code, r.stderr)
	}
	recs, _ := incident.ReadJournal(inc.JournalPath())
	last := recs[len(recs)-1]
	if len(recs) != 10 || last.Kind != incident.KindClose || last.Operator != incident.Operator() || !last.Time.Equal(clockT0.Add(6*time.Hour)) || !strings.HasPrefix(last.Result, "closed with --force: validate has not passed") {
		t.Fatalf("journal after closing twice: %d records, last %+v", len(recs), last)
	}
	r = run(100*time.Hour, "status")
	if !strings.Contains(r.stdout, "status Closed; 6h since declared") || !strings.Contains(r.stdout, "closed 2026-11-22 16:00Z by") || !regexp.MustCompile(`16:00:00Z +close +- +closed with --force`).MatchString(r.stdout) {
		t.Errorf("status after close:\n%s", r.stdout)
	}
}

// With validate passed, close needs no --force.
func TestCloseAfterValidate(t *testing.T) {
	recs := contained()
	for _, s := range []string{"no-attacker-request-accepted", "no-revoked-credential-accepted", "leaked-key-refused", "stolen-jwt-refused", "secrets-rotated", "system-healthy"} {
		recs = append(recs, outcome("validate", s, 20*time.Hour))
	}
	inc, run := clockIncident(t, recs)
	if r := run(21*time.Hour, "close", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"kind": "close"`) || !strings.Contains(r.stdout, `"result": "closed"`) {
		t.Fatalf("close: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := clocks.Read(mustJournal(t, inc), nil).Status(); got != clocks.Closed {
		t.Errorf("status %s", got)
	}
}

func mustJournal(t *testing.T, inc *incident.Incident) []incident.Record {
	t.Helper()
	recs, err := incident.ReadJournal(inc.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Overdue items are coloured only when asked (a terminal without NO_COLOR).
func TestClocksColourOnlyWhenAsked(t *testing.T) {
	c := &clocks.Clocks{Status: "Declared", DeclaredAt: clockT0, Phases: []clocks.PhaseClock{{Phase: "contain", State: clocks.Overdue}, {Phase: "assess", State: clocks.Running}}}
	var plain, coloured bytes.Buffer
	printClocks(&plain, c, false)
	printClocks(&coloured, c, true)
	if strings.Contains(plain.String(), "\x1b") || !strings.Contains(plain.String(), "overdue !") {
		t.Errorf("plain: %q", plain.String())
	}
	if !strings.Contains(coloured.String(), "\x1b[1;31moverdue !\x1b[0m") || strings.Contains(coloured.String(), "\x1b[1;31mrunning") {
		t.Errorf("coloured: %q", coloured.String())
	}
}

// A bad clock block makes the runbook invalid: exit 2, each problem with
// its file:line.
func TestValidateRejectsBadClocks(t *testing.T) {
	b, err := irctlRunbook("security-incident")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  P2:\n", "  P7:\n", 1)
	s = strings.Replace(s, "step: email-internal, within: 15m}", "step: email-internal, within: 15 minutes}", 1)
	file := t.TempDir() + "/bad-clocks.yaml"
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runOffline("runbook", "validate", file)
	if r.code != exitcode.Usage || !regexp.MustCompile(`bad-clocks.yaml:\d+: escalation: unknown severity "P7"`).MatchString(r.stdout) {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s = strings.Replace(string(b), "step: email-internal, within: 15m}", "step: email-internal, within: 15 minutes}", 1)
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runOffline("runbook", "validate", file)
	if r.code != exitcode.Usage || !regexp.MustCompile(`bad-clocks.yaml:\d+: escalation P2 Security, legal, executives: within: "15 minutes" is not a duration`).MatchString(r.stdout) {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func irctlRunbook(name string) ([]byte, error) {
	return irctl.Runbooks.ReadFile("runbooks/" + name + ".yaml")
}
