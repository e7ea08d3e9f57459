package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

func TestContainLabelsPodsRevokesKeysAndJournals(t *testing.T) {
	h := newHarness(t, 5)
	totalBefore, bg := h.activeKeys()
	if totalBefore <= bg || bg == 0 {
		t.Fatalf("seed should have active keys and break-glass keys: %d, %d", totalBefore, bg)
	}

	r := h.run("contain", "--yes")
	if r.code != 0 {
		t.Fatalf("contain: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for name, st := range h.podState() {
		if !strings.HasSuffix(st, "quarantine=true") {
			t.Errorf("pod %s not quarantined: %s", name, st)
		}
	}
	total, bgAfter := h.activeKeys()
	if total != bg || bgAfter != bg {
		t.Errorf("after revoke: %d active keys (%d break-glass), want only the %d break-glass keys", total, bgAfter, bg)
	}

	kinds := map[string][]string{}
	for _, rec := range h.journal() {
		kinds[rec.Step] = append(kinds[rec.Step], rec.Kind)
		if rec.Operator == "" || rec.RunbookHash == "" || rec.Time.Location().String() != "UTC" {
			t.Errorf("record lacks operator, runbook hash or UTC time: %+v", rec)
		}
	}
	want := map[string]string{
		"quarantine-pods":              "intent,outcome",
		"isolate-quarantined-pods":     "intent,outcome",
		"revoke-api-keys":              "intent,outcome",
		"rotate-jwt-secret":            "intent,outcome",
		"restart-jwt-consumers":        "noop",
		"disable-compromised-accounts": "noop",
	}
	for step, w := range want {
		if got := strings.Join(kinds[step], ","); got != w {
			t.Errorf("journal for %s: %s, want %s", step, got, w)
		}
	}

	// Files and directories are private whatever the umask.
	dir := filepath.Join(h.stateDir, h.incident)
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "journal.jsonl"): 0o600, filepath.Join(dir, "incident.json"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode(), mode, err)
		}
	}

	// A second run changes nothing and says so.
	before, dbBefore := h.podState(), h.dbState()
	r = h.run("contain", "--yes")
	if r.code != 0 || strings.Count(r.stdout, "nothing to change") != 6 {
		t.Fatalf("second contain should be a no-op for all 6 steps: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !equalMaps(before, h.podState()) || dbBefore != h.dbState() {
		t.Error("second contain changed something")
	}
}

func TestServerDryRunChangesNothingAndPredictsTheRealRun(t *testing.T) {
	h := newHarness(t, 4)
	pods, rows := h.podState(), h.dbState()

	r := h.run("contain", "--dry-run=server", "-o", "json")
	if r.code != 0 {
		t.Fatalf("server dry run: exit %d\n%s", r.code, r.stderr)
	}
	if !equalMaps(pods, h.podState()) {
		t.Errorf("server dry run changed pods:\nbefore %v\nafter  %v", pods, h.podState())
	}
	if rows != h.dbState() {
		t.Error("server dry run changed rows")
	}
	dry := parseReports(t, r.stdout)[0].Steps
	if dry[0].Plan.Count != 4 || dry[0].Result == nil || dry[0].Result.Changed != 4 || dry[0].Status != "dry-run" {
		t.Errorf("label step under server dry run: %+v %+v", dry[0].Plan, dry[0].Result)
	}
	for _, rec := range h.journal() {
		if rec.Kind == incident.KindOutcome && (rec.DryRun != "server" || len(rec.Undo) != 0) {
			t.Errorf("dry-run outcome must be marked and carry no undo: %+v", rec)
		}
	}

	r = h.run("contain", "--yes", "-o", "json")
	if r.code != 0 {
		t.Fatalf("real run: exit %d\n%s", r.code, r.stderr)
	}
	real := parseReports(t, r.stdout)[0].Steps
	for i := range real {
		if real[i].Plan.Count != dry[i].Plan.Count {
			t.Errorf("step %s: dry run planned %d, real run planned %d", real[i].Step, dry[i].Plan.Count, real[i].Plan.Count)
		}
		if real[i].Result != nil && dry[i].Result != nil && real[i].Result.Changed != dry[i].Result.Changed {
			t.Errorf("step %s: dry run changed %d, real run %d", real[i].Step, dry[i].Result.Changed, real[i].Result.Changed)
		}
	}
	if real[2].Result == nil || real[2].Result.Changed == 0 {
		t.Errorf("revoke step changed nothing: %+v", real[2])
	}
}

func TestNoTerminalWithoutYesRefusesAndChangesNothing(t *testing.T) {
	h := newHarness(t, 3)
	pods, rows := h.podState(), h.dbState()
	r := h.run("contain")
	if r.code != exitcode.Declined {
		t.Fatalf("exit %d, want %d\n%s", r.code, exitcode.Declined, r.stderr)
	}
	if !strings.Contains(r.stderr, "--yes") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("want one line naming --yes, got %q", r.stderr)
	}
	if !equalMaps(pods, h.podState()) || rows != h.dbState() {
		t.Error("refused run changed something")
	}
	// Refused before the first step: no journal record, no evidence.
	if recs := h.journal(); len(recs) != 0 {
		t.Errorf("the refused run journaled %d records: %+v", len(recs), recs[0])
	}
	if _, err := os.Stat(filepath.Join(h.stateDir, h.incident, "evidence")); !os.IsNotExist(err) {
		t.Errorf("the refused run created evidence: %v", err)
	}
}

func TestBadInputIsOneLineWithExitCodeAndNoChange(t *testing.T) {
	h := newHarness(t, 2)
	pods, rows := h.podState(), h.dbState()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown --set key", []string{"contain", "--yes", "--set", "nmespace=x"}, exitcode.Usage, `no param "nmespace"`},
		{"invalid selector", []string{"contain", "--yes", "--set", "affected_selector=app==,"}, exitcode.Usage, `invalid selector`},
		{"non-integer user id", []string{"contain", "--yes", "--set", "compromised_user_ids=7,1;DROP TABLE users"}, exitcode.Usage, `is not an integer id`},
		{"runbook typo", []string{"contain", "--yes", "-f", "../../testdata/runbooks/typos.yaml"}, exitcode.Usage, `typos.yaml:`},
		{"missing runbook", []string{"contain", "--yes", "-f", "nope.yaml"}, exitcode.Usage, `nope.yaml`},
		{"bad dry-run", []string{"contain", "--dry-run=maybe"}, exitcode.Usage, `--dry-run=maybe`},
		{"unknown flag", []string{"contain", "--yse"}, exitcode.Usage, `unknown flag`},
		{"unknown command", []string{"contian"}, exitcode.Usage, `unknown command`},
		{"unreachable API server", []string{"contain", "--yes", "--server", "https://127.0.0.1:1"}, exitcode.Error, `unreachable`},
		{"unreachable database", []string{"contain", "--yes", "--database-url", "postgres://orchestrator:canary-pw-123@127.0.0.1:1/orchestrator"}, exitcode.Error, `unreachable`},
		{"unknown incident", []string{"contain", "--yes", "--incident", "SEC-20000101-001"}, exitcode.Usage, `not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d: %s", r.code, tc.code, r.stderr)
			}
			line := strings.TrimSpace(r.stderr)
			if strings.Contains(line, "\n") || !strings.Contains(line, tc.want) {
				t.Errorf("want one line containing %q, got %q", tc.want, r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, "canary-pw-123") {
				t.Error("password leaked into output")
			}
		})
	}
	if !equalMaps(pods, h.podState()) || rows != h.dbState() {
		t.Error("bad input changed something")
	}
}

func TestUndoRestoresPreviousLabels(t *testing.T) {
	h := newHarness(t, 3)
	// One pod already carries a different quarantine value: undo must put
	// that value back, and remove the label from the others.
	var marked string
	for n := range h.podState() {
		marked = n
		break
	}
	patch := []byte(`{"metadata":{"labels":{"quarantine":"pending"}}}`)
	if _, err := h.cs.CoreV1().Pods(h.ns).Patch(context.Background(), marked, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := h.run("contain", "--yes"); r.code != 0 {
		t.Fatalf("contain: %s", r.stderr)
	}
	r := h.run("undo", "contain", "--yes")
	if r.code != 0 {
		t.Fatalf("undo: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "cannot undo revoke-api-keys") {
		t.Errorf("undo should say revoked keys stay revoked:\n%s", r.stdout)
	}
	for n, st := range h.podState() {
		want := "quarantine="
		if n == marked {
			want = "quarantine=pending"
		}
		if !strings.HasSuffix(st, " "+want) {
			t.Errorf("pod %s after undo: %q, want %s", n, st, want)
		}
	}
	// Nothing is left to undo the second time.
	r = h.run("undo", "contain", "--yes")
	if r.code != 0 || strings.Contains(r.stdout, "done") {
		t.Errorf("second undo should reverse nothing: %s", r.stdout)
	}
}
