package report

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var declared = time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)

func at(min int) time.Time { return declared.Add(time.Duration(min) * time.Minute) }

func intp(n int) *int { return &n }

// fixture builds an incident with a fixed journal and evidence: a dry run
// of contain, contain for real (3 pods, 4 keys), assess's two evidence
// items, a failed then passing health check, a drafted regulator notice, a
// sent Slack message and notes of every kind (one with a terminal escape
// and Markdown markup).
func fixture(t *testing.T, categories []string) Input {
	t.Helper()
	inc, err := incident.Declare(t.TempDir(), "P0", "LLM-orchestrator breach | keys leaked", "alice@ir-laptop", declared)
	if err != nil {
		t.Fatal(err)
	}
	store, err := evidence.Open(inc.Dir(), evidence.Meta{Operator: "alice@ir-laptop", ToolVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	accounts := `{"user_id":7,"ip_address":"198.51.100.23","logins":3,"first_login":"2026-11-22 08:01:02.5+00","last_login":"2026-11-22 09:00:00+00"}
{"user_id":7,"ip_address":"203.0.113.77","logins":1,"first_login":"2026-11-22 08:40:00+00","last_login":"2026-11-22 08:40:00+00"}
{"user_id":13,"ip_address":"198.51.100.23","logins":2,"first_login":"2026-11-21 23:59:00+00","last_login":"2026-11-22 01:00:00+00"}
`
	transfers := `{"timestamp":"2026-11-22 08:10:00+00","event_type":"export","user_id":7,"resource_id":"r1","ip_address":"198.51.100.23","bytes":104857600}
{"timestamp":"2026-11-22 08:20:00+00","event_type":"download","user_id":13,"resource_id":"r2","ip_address":"203.0.113.77","bytes":52428800}
`
	three, two := int64(3), int64(2)
	for _, it := range []struct {
		name, data string
		rows       *int64
	}{{"sql/compromised-accounts.jsonl", "{}\n", nil}, {"sql/compromised-accounts.jsonl", accounts, &three}, {"sql/large-transfers.jsonl", transfers, &two}} {
		if _, err := store.WriteFile(it.name, evidence.Source{Kind: evidence.KindSQL, SQL: "SELECT ..."}, []byte(it.data), evidence.Extra{Rows: it.rows}); err != nil {
			t.Fatal(err)
		}
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	op := "alice@ir-laptop"
	for _, r := range []incident.Record{
		{Time: at(1), Kind: incident.KindRun, Command: "contain", DryRun: "server"},
		{Time: at(2), Kind: incident.KindOutcome, Phase: "contain", Step: "quarantine-pods", Action: "k8s.label", DryRun: "server", Result: "would label 3 pods", Changed: intp(3)},
		{Time: at(5), Kind: incident.KindIntent, Phase: "contain", Step: "quarantine-pods", Action: "k8s.label", DryRun: "none"},
		{Time: at(5), Kind: incident.KindOutcome, Phase: "contain", Step: "quarantine-pods", Action: "k8s.label", DryRun: "none", Result: "labelled 3 pod(s) quarantine=true", Changed: intp(3)},
		{Time: at(6), Kind: incident.KindOutcome, Phase: "contain", Step: "revoke-api-keys", Action: "sql.exec", DryRun: "none", Result: "revoked: 4 row(s)", Changed: intp(4)},
		{Time: at(7), Kind: incident.KindOutcome, Phase: "contain", Step: "disable-compromised-accounts", Action: "sql.exec", DryRun: "none", Result: "disabled 2 row(s)", Changed: intp(2)},
		{Time: at(8), Kind: incident.KindNoop, Phase: "contain", Step: "revoke-api-keys", Action: "sql.exec", DryRun: "none", Plan: "nothing to revoke"},
		{Time: at(12), Kind: incident.KindOutcome, Phase: "assess", Step: "compromised-accounts", Action: "sql.query", DryRun: "none", Result: "accounts logged into from suspicious addresses: 3 row(s)"},
		{Time: at(20), Kind: incident.KindOutcome, Phase: "recover", Step: "api-healthy", Action: "http.check", DryRun: "none", Error: "GET /health: 503"},
		{Time: at(26), Kind: incident.KindOutcome, Phase: "recover", Step: "api-healthy", Action: "http.check", DryRun: "none", Result: "GET /health: 200"},
		{Time: at(30), Kind: incident.KindOutcome, Phase: "notify", Step: "slack-security-incidents", Action: "notify.slack", DryRun: "none", Result: "sent to #security-incidents", Sent: []string{"k1"}},
		{Time: at(31), Kind: incident.KindDrafted, Phase: "notify", Step: "email-regulators", Action: "notify.email", DryRun: "none", Error: "external notice drafted, not sent"},
		{Time: at(40), Kind: incident.KindNote, NoteKind: "summary", Text: "An API key leaked in a public repo was used to export user data."},
		{Time: at(41), Kind: incident.KindNote, NoteKind: "root-cause", Text: "Key committed to `repo` \x1b[31m*red*"},
		{Time: at(42), Kind: incident.KindNote, NoteKind: "prevention", Text: "Secret scanning on every push."},
		{Time: at(43), Kind: incident.KindNote, NoteKind: "other", Text: "Bob joined at 10:00."},
	} {
		r.Incident, r.Operator = inc.ID, op
		if r.Kind == incident.KindNote && strings.HasPrefix(r.Text, "Bob") {
			r.Operator = "bob@soc"
		}
		if _, err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := incident.ReadJournal(inc.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	entries, err := evidence.ReadManifest(inc.Dir())
	if err != nil {
		t.Fatal(err)
	}
	rb := &runbook.Runbook{Name: "security-incident", Phases: map[string][]runbook.Step{
		"contain": {{Name: "quarantine-pods", Phase: "contain"}, {Name: "revoke-api-keys", Phase: "contain"}, {Name: "disable-compromised-accounts", Phase: "contain"}},
		"assess":  {{Name: "compromised-accounts", Phase: "assess"}},
		"recover": {{Name: "api-healthy", Phase: "recover"}, {Name: "monitor", Phase: "recover"}},
	}}
	from := ""
	if categories != nil {
		from = "the runbook's data_categories"
	}
	return Input{Incident: inc, Records: recs, IncidentDir: inc.Dir(), Evidence: entries, Runbook: rb,
		DataCategories: NormalizeCategories(categories), CategoriesFrom: from, Now: at(90)}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "report", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", p, d)
	}
}

func TestReportGolden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		categories []string
	}{
		{"undeclared-categories", nil},
		{"personal-and-health", []string{"PII", "health"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(fixture(t, tc.categories))
			golden(t, tc.name+".md", Markdown(r))
			b, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".json", string(b)+"\n")
		})
	}
}

// The figures the golden files hold, asserted one by one so that a
// rewritten golden file cannot hide a wrong count.
func TestReportFacts(t *testing.T) {
	r := Build(fixture(t, []string{"personal"}))
	im := r.Impact
	if im.AccountsAffected == nil || *im.AccountsAffected != 2 || strings.Join(im.AccountIDs, ",") != "7,13" {
		t.Errorf("accounts: %v %v, want 2 (7,13) from the newest compromised-accounts item", im.AccountsAffected, im.AccountIDs)
	}
	if im.AccountsItem != "sql/compromised-accounts-2.jsonl" {
		t.Errorf("accounts item %q, want the newest", im.AccountsItem)
	}
	if im.Transfers == nil || *im.Transfers != 2 || *im.TransferBytes != 157286400 || len(im.TransferSources) != 2 {
		t.Errorf("transfers: %v, %v bytes, %v", im.Transfers, im.TransferBytes, im.TransferSources)
	}
	if *im.KeysRevoked != 4 || *im.PodsQuarantined != 3 || *im.AccountsDisabled != 2 {
		t.Errorf("keys %d pods %d accounts %d, want 4 3 2 (the dry run's 3 pods not counted)", *im.KeysRevoked, *im.PodsQuarantined, *im.AccountsDisabled)
	}
	if im.Downtime == nil || *im.Downtime != 6*time.Minute {
		t.Errorf("downtime %v, want 6m (failed check to passing check)", im.Downtime)
	}
	if r.FirstAttackSeen == nil || !r.FirstAttackSeen.Equal(time.Date(2026, 11, 21, 23, 59, 0, 0, time.UTC)) {
		t.Errorf("first attacker activity %v", r.FirstAttackSeen)
	}
	if r.Status != "Contained" {
		t.Errorf("status %q, want Contained (every contain step done, recover's monitor not)", r.Status)
	}
	if r.DryRunRecords != 1 {
		t.Errorf("dry-run records %d, want 1", r.DryRunRecords)
	}
	if strings.Join(r.Operators, ",") != "alice@ir-laptop,bob@soc" {
		t.Errorf("operators %v", r.Operators)
	}
	gdpr := r.Compliance[0]
	if gdpr.Name != "GDPR" || gdpr.Status != Required || !gdpr.Deadline.Equal(declared.Add(72*time.Hour)) || !strings.HasPrefix(gdpr.Notified, "no: notify/email-regulators drafted") {
		t.Errorf("GDPR %+v", gdpr)
	}
	if r.Compliance[2].Status != NotRequired || r.Compliance[3].Status != NotRequired {
		t.Errorf("PCI DSS and HIPAA with only personal data declared: %+v", r.Compliance[2:])
	}
	md := Markdown(r)
	if strings.Contains(md, "\x1b") {
		t.Error("a terminal escape reached the Markdown")
	}
	for _, want := range []string{"| 2026-11-22 09:35:00Z | contain/quarantine-pods | outcome | 3 |", "Key committed to \\`repo\\` \\\\x1b\\[31m\\*red\\*", "LLM-orchestrator breach \\| keys leaked"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

func TestComplianceWithoutEvidenceIsUndetermined(t *testing.T) {
	regs := compliance([]string{"personal"}, "x", Impact{}, nil, declared, at(1))
	if regs[0].Status != Undetermined || regs[2].Status != NotRequired {
		t.Errorf("%+v", regs)
	}
	none := 0
	regs = compliance(nil, "", Impact{AccountsAffected: &none, Transfers: &none}, nil, declared, at(1))
	for _, r := range regs {
		if r.Status != Undetermined {
			t.Errorf("%s: %s, want Undetermined without categories nor accessed accounts", r.Name, r.Status)
		}
	}
}
