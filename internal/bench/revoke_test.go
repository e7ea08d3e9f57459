package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// revokeKeys is how many API keys BenchmarkRevoke1M revokes.
const revokeKeys = 1_000_000

// revokeSQL is the shipped revoke step's statement with the runbook's
// default break-glass keys written in, as a responder would type it.
const revokeSQL = `UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND NOT (key_prefix = ANY('{sk_live_bg01a7f3,sk_live_bg02c9e8}'::text[]))`

// seedKeys replaces the rows of api_keys with n active keys, two of them
// the break-glass keys (the runbook's default key prefixes), the same rows every time, then vacuums, analyses
// and checkpoints, so each run starts from the same table on disk.
func seedKeys(ctx context.Context, url, adminURL string, n int) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`TRUNCATE api_keys RESTART IDENTITY`,
		`INSERT INTO api_keys (user_id, name, key_prefix, key_hash, created_at, last_used_at)
		 SELECT 1 + g % 50,
		        CASE g WHEN 1 THEN 'break-glass-primary' WHEN 2 THEN 'break-glass-secondary' ELSE 'key-' || g END,
		        CASE g WHEN 1 THEN 'sk_live_bg01a7f3' WHEN 2 THEN 'sk_live_bg02c9e8' ELSE 'sk_live_' || substr(md5('p' || g), 1, 8) END, md5('h' || g),
		        timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-06-01' + g * interval '1 second'
		 FROM generate_series(1, $1::int) AS g`,
		`VACUUM (ANALYZE) api_keys`,
	} {
		args := []any{}
		if strings.Contains(q, "$1") {
			args = append(args, n)
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("seeding api_keys: %w", err)
		}
	}
	// The seed's dirty pages are written now, not during the next run.
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, `CHECKPOINT`)
	return err
}

// activeKeys counts the keys not revoked.
func activeKeys(ctx context.Context, url string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE revoked_at IS NULL`).Scan(&n)
	return n, err
}

// revokeRunbook is the shipped security-incident runbook with its contain
// phase cut down to the revoke-api-keys step, unchanged, and no other
// phase: the step as a responder runs it.
func revokeRunbook(b *testing.B) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "runbooks", "security-incident.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var rb map[string]any
	if err := yaml.Unmarshal(raw, &rb); err != nil {
		b.Fatal(err)
	}
	phases := rb["phases"].(map[string]any)
	var steps []any
	for _, s := range phases["contain"].([]any) {
		if s.(map[string]any)["name"] == "revoke-api-keys" {
			steps = append(steps, s)
		}
	}
	if len(steps) != 1 {
		b.Fatalf("the shipped runbook has %d revoke-api-keys steps, want 1", len(steps))
	}
	rb["phases"] = map[string]any{"contain": steps}
	out, err := yaml.Marshal(rb)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// revokeDone is the engine's line for the revoke step.
var revokeDone = regexp.MustCompile(`(?m)done: .*: (\d+) rows.* \(([0-9.]+[µmn]?s|[0-9]+m[0-9.]+s)\)$`)

// BenchmarkRevoke1M revokes 1,000,000 API keys two ways, on the same
// table re-seeded identically before each run:
//   - "irctl": the built binary, `irctl contain --yes` of the shipped
//     runbook's revoke-api-keys step (sql.exec with its break-glass guard),
//     timed as a whole process: start-up, responder lock, plan (the blast
//     radius), apply, guard, COMMIT, journal;
//   - "psql": `psql -c` of the same UPDATE.
//
// They run psql, irctl, irctl, psql; figures are means. The ratio is
// irctl's time over psql's (target <= 1.2).
func BenchmarkRevoke1M(b *testing.B) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		b.Skip("psql is not on PATH")
	}
	sb := sandboxtest.Get(b)
	ctx := context.Background()
	work := b.TempDir()
	irctlBin := build(b, work, "irctl.dev/irctl/cmd/irctl")
	rbPath := filepath.Join(work, "revoke.yaml")
	if err := os.WriteFile(rbPath, revokeRunbook(b), 0o600); err != nil {
		b.Fatal(err)
	}
	// The other benchmarks and tests of this binary expect the seed's rows.
	defer sandboxtest.ResetDB(b, sb)

	runs := 0
	var irctlStep time.Duration
	run := map[string]func() (time.Duration, error){
		"psql": func() (time.Duration, error) {
			cmd := exec.Command(psql, sb.DatabaseURL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", revokeSQL)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("psql: %v\n%s", err, out)
			}
			return time.Since(start), nil
		},
		"irctl": func() (time.Duration, error) {
			runs++
			args := []string{"--state-dir", filepath.Join(work, fmt.Sprintf("state-%d", runs)),
				"--kubeconfig", sb.KubeconfigPath, "--database-url", sb.DatabaseURL, "-f", rbPath}
			id, err := exec.Command(irctlBin, append(args, "declare", "--severity", "P4", "--title", "revoke benchmark")...).Output()
			if err != nil {
				return 0, fmt.Errorf("declare: %v", err)
			}
			var out bytes.Buffer
			cmd := exec.Command(irctlBin, append(args, "--incident", strings.TrimSpace(string(id)), "contain", "--yes")...)
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			err = cmd.Run()
			wall := time.Since(start)
			if err != nil {
				return 0, fmt.Errorf("irctl contain: %v\n%s", err, out.String())
			}
			m := revokeDone.FindStringSubmatch(out.String())
			if m == nil || m[1] != fmt.Sprint(revokeKeys-2) {
				return 0, fmt.Errorf("irctl did not report revoking %d keys:\n%s", revokeKeys-2, out.String())
			}
			step, err := time.ParseDuration(m[2])
			if err != nil {
				return 0, err
			}
			irctlStep += step
			return wall, nil
		},
	}
	total := map[string]time.Duration{}
	count := map[string]int{}
	var each []string
	for i := 0; i < b.N; i++ {
		for _, tool := range []string{"psql", "irctl", "irctl", "psql"} {
			b.StopTimer()
			if err := seedKeys(ctx, sb.DatabaseURL, sb.AdminDatabaseURL, revokeKeys); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			d, err := run[tool]()
			b.StopTimer()
			if err != nil {
				b.Fatalf("%s: %v", tool, err)
			}
			if n, err := activeKeys(ctx, sb.DatabaseURL); err != nil || n != 2 {
				b.Fatalf("%s left %d active keys (%v), want the 2 break-glass keys", tool, n, err)
			}
			total[tool] += d
			count[tool]++
			each = append(each, fmt.Sprintf("%s %.2f s", tool, d.Seconds()))
			b.StartTimer()
		}
	}
	irctlSec := total["irctl"].Seconds() / float64(count["irctl"])
	psqlSec := total["psql"].Seconds() / float64(count["psql"])
	stepSec := irctlStep.Seconds() / float64(count["irctl"])
	b.ReportMetric(irctlSec, "irctl-s/op")
	b.ReportMetric(psqlSec, "psql-s/op")
	b.ReportMetric(irctlSec/psqlSec, "irctl/psql")
	fmt.Printf("revoke %d API keys: irctl contain (whole process) %.2f s (revoke step %.2f s), psql UPDATE %.2f s; irctl/psql %.2f× (target <= 1.2×)\n",
		revokeKeys, irctlSec, stepSec, psqlSec, irctlSec/psqlSec)
	fmt.Printf("  runs in order: %s\n", strings.Join(each, ", "))
}
