package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
)

// A report from a real run's journal: contain and assess on the sandbox,
// then `irctl report` carries the counts the servers show and the times
// the journal holds, is saved as evidence, and quotes no secret.
func TestReportFromARealRunCarriesItsCountsAndTimes(t *testing.T) {
	h := newHarness(t, 4)
	keysBefore, breakGlass := h.activeKeys()
	if r := h.run("contain", "--yes"); r.code != 0 {
		t.Fatalf("contain: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ips := "198.51.100.23,203.0.113.77,2001:db8:bad:1::21"
	if r := h.run("assess", "--set", "suspicious_ips="+ips); r.code != 0 {
		t.Fatalf("assess: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := h.run("note", "add", "--kind", "root-cause", "API key leaked; password "+h.sb.DBPassword); r.code != 0 {
		t.Fatalf("note add: %+v", r)
	}
	if r := h.run("note", "add", "--kind", "nonsense", "x"); r.code != 2 {
		t.Errorf("note add --kind nonsense: exit %d, want 2", r.code)
	}

	// What the servers say: the accounts the attacker logged into, the
	// keys revoked.
	var accounts int
	conn, err := pgx.Connect(context.Background(), h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `SELECT count(DISTINCT user_id) FROM audit_events
		WHERE event_type = 'login_success' AND ip_address = ANY($1::inet[])`, strings.Split(ips, ",")).Scan(&accounts); err != nil {
		t.Fatal(err)
	}
	keysAfter, _ := h.activeKeys()
	revoked := keysBefore - keysAfter
	if accounts == 0 || revoked == 0 || keysAfter != breakGlass {
		t.Fatalf("sandbox: %d accounts, %d keys revoked: the seeded attack is missing", accounts, revoked)
	}

	r := h.run("report")
	if r.code != 0 {
		t.Fatalf("report: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	md := r.stdout
	var containAt string
	for _, rec := range h.journal() {
		if rec.Kind == incident.KindOutcome && rec.Step == "quarantine-pods" {
			containAt = rec.Time.UTC().Format("2006-01-02 15:04:05Z")
		}
	}
	for _, want := range []string{
		"# Incident report " + h.incident,
		"| Status | Contained |",
		"| " + containAt + " | contain/quarantine-pods | outcome | 4 |",
		"- Accounts affected: " + strconv.Itoa(accounts) + " (evidence `sql/compromised-accounts.jsonl`)",
		"- API keys revoked: " + strconv.Itoa(revoked) + "\n",
		"- Pods quarantined: 4\n",
		"- Large transfers: ",
		"API key leaked; password \\[redacted\\]",
		"| GDPR | Required |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md+r.stderr, h.sb.DBPassword) {
		t.Error("the database password reached the report")
	}

	// Saved as evidence: the manifest's newest item is this report, its
	// hash that of the bytes printed.
	entries, err := evidence.ReadManifest(filepath.Join(h.stateDir, h.incident))
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	sum := sha256.Sum256([]byte(md))
	if !strings.HasPrefix(last.Name, "reports/report-") || last.SHA256 != hex.EncodeToString(sum[:]) || last.Source.Kind != "report" {
		t.Errorf("newest evidence %+v, want the report as printed (sha256 %x)", last, sum)
	}
	if r := h.run("evidence", "verify"); r.code != 0 {
		t.Errorf("evidence verify after the report: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// -o json: the same facts; --file writes the Markdown; --no-save
	// adds no item.
	r = h.run("report", "-o", "json", "--no-save")
	var got struct {
		Status string `json:"status"`
		Impact struct {
			AccountsAffected *int `json:"accounts_affected"`
			KeysRevoked      *int `json:"keys_revoked"`
			PodsQuarantined  *int `json:"pods_quarantined"`
		} `json:"impact"`
		SavedAs any `json:"saved_as"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("report -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if got.Status != "Contained" || *got.Impact.AccountsAffected != accounts || *got.Impact.KeysRevoked != revoked || *got.Impact.PodsQuarantined != 4 || got.SavedAs != nil {
		t.Errorf("report -o json: %+v", got)
	}
	file := filepath.Join(t.TempDir(), "report.md")
	if r := h.run("report", "--file", file); r.code != 0 || r.stdout != "" {
		t.Fatalf("report --file: exit %d, stdout %q", r.code, r.stdout)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "- Pods quarantined: 4\n") {
		t.Errorf("report --file: %v\n%s", err, b)
	}
	after, _ := evidence.ReadManifest(filepath.Join(h.stateDir, h.incident))
	if len(after) != len(entries)+1 {
		t.Errorf("evidence items: %d after --no-save and --file, want %d (one more, from --file)", len(after), len(entries)+1)
	}
}

// On a terminal the report is styled by glamour; a note's terminal escape
// (an OSC title change) reaches the screen only as text.
func TestReportOnATerminalIsStyledAndEscapesNothing(t *testing.T) {
	h := newHarness(t, 0)
	if r := h.run("note", "add", "--kind", "summary", "owned \x1b]0;pwned\x07 title"); r.code != 0 {
		t.Fatalf("note add: %+v", r)
	}
	if r := h.run("note", "list"); r.code != 0 || !strings.Contains(r.stdout, `owned \x1b]0;pwned\x07 title`) {
		t.Errorf("note list: exit %d, want the escape shown as text:\n%q", r.code, r.stdout)
	}
	if r := h.run("status"); r.code != 0 || !strings.Contains(r.stdout, `summary: owned \x1b]0;pwned\x07 title`) {
		t.Errorf("status: exit %d, want the note with its escape as text:\n%s", r.code, r.stdout)
	}
	t.Setenv("GLAMOUR_STYLE", "dark") // no terminal answers the background query here
	term := h.startOnPTY("report", "--no-save")
	if code := term.wait(); code != 0 {
		t.Fatalf("report on a terminal: exit %d\n%s", code, term.screen())
	}
	screen := term.screen()
	if !strings.Contains(screen, "\x1b[") || strings.Contains(screen, "|---|") {
		t.Errorf("report on a terminal is not styled by glamour:\n%s", screen)
	}
	if !strings.Contains(screen, "Incident report") || !strings.Contains(screen, "pwned") {
		t.Errorf("report on a terminal lacks its text:\n%s", screen)
	}
	if strings.Contains(screen, "\x1b]0;pwned") {
		t.Error("the note's terminal escape reached the terminal")
	}
}
