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
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// exportWindow is wide enough to export every inserted row.
const exportWindow = "30d"

// exportSelect is the query both tools run: the one irctl's sql.export
// builds for table audit_events, time column timestamp and a 30-day window.
const exportSelect = `SELECT * FROM "audit_events" WHERE "timestamp" > now() - make_interval(secs => 2592000) ORDER BY "timestamp"`

// exportRunbook is a runbook whose preserve phase is one sql.export.
const exportRunbook = `apiVersion: irctl/v1
kind: Runbook
name: bench-export
description: export audit_events, for the export benchmark
phases:
  preserve:
    - name: audit-export
      action: sql.export
      with:
        table: audit_events
        since: ` + exportWindow + `
`

// exportRun is one export's figures.
type exportRun struct {
	rows  int64
	bytes int64
	wall  time.Duration // the whole process
	step  time.Duration // irctl: the step as the engine timed it (COPY with count(*) in the same snapshot, hash, fsync, manifest)
	peak  memPeak
}

// memPeak is a process's peak memory as sampled from /proc/PID/status.
type memPeak struct {
	hwm  int64 // VmHWM: peak resident set, file-backed pages included
	anon int64 // highest RssAnon seen: private memory (heap, stacks)
}

func (r exportRun) rate(d time.Duration) (rowsPerSec, mbPerSec float64) {
	s := d.Seconds()
	return float64(r.rows) / s, float64(r.bytes) / (1 << 20) / s
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// BenchmarkExportVsPsql exports audit_events with irctl's sql.export and
// with `psql -c "\copy (SELECT ...) to FILE csv header"` at 1,000,000 and
// at 5,000,000 rows, and reports throughput, the ratio irctl/psql and
// irctl's peak memory.
//
// irctl runs as the built binary, `irctl preserve` of a one-step runbook,
// timed by the step (what the engine prints) and by the process's wall
// time (plan included: its count(*) is a second pass over the rows). Its
// peak RSS is VmHWM, sampled from /proc while it runs; that includes the
// pages of the ~80 MB executable the process maps, so the benchmark also
// runs the same export code in exporthelper, a binary of just sqlaction,
// evidence and db, whose peak is that of the export itself.
//
// At each size the three run in three rounds, each tool first, second and
// third once, and the figures are means, with the page cache's dirty
// pages written back (sync) before each run, so that one tool's file does
// not slow the next. It asserts no
// timings. It fails if exporthelper's peak RSS, or irctl's private
// (anonymous) memory, reaches 64 MiB.
func BenchmarkExportVsPsql(b *testing.B) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		b.Skip("psql is not on PATH")
	}
	sb := sandboxtest.Get(b)
	ctx := context.Background()
	work := b.TempDir()
	irctlBin := build(b, work, "irctl.dev/irctl/cmd/irctl")
	helperBin := build(b, work, "irctl.dev/irctl/internal/bench/exporthelper")
	rbPath := filepath.Join(work, "bench-export.yaml")
	if err := os.WriteFile(rbPath, []byte(exportRunbook), 0o600); err != nil {
		b.Fatal(err)
	}
	// The superuser, in the application's database.
	adminCfg, err := pgx.ParseConfig(sb.AdminDatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	appCfg, err := pgx.ParseConfig(sb.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	adminCfg.Database = appCfg.Database
	admin, err := pgx.ConnectConfig(ctx, adminCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	defer sandboxtest.ResetDB(b, sb)

	irctlArgs := func(stateDir string, args ...string) []string {
		return append([]string{"--state-dir", stateDir, "--database-url", sb.DatabaseURL, "-f", rbPath}, args...)
	}
	n := 0
	runIrctl := func() exportRun {
		b.Helper()
		n++
		stateDir := filepath.Join(work, fmt.Sprintf("state-%d", n))
		defer os.RemoveAll(stateDir)
		id, err := exec.Command(irctlBin, irctlArgs(stateDir, "declare", "--severity", "P4", "--title", "export benchmark")...).Output()
		if err != nil {
			b.Fatalf("declare: %v", err)
		}
		cmd := exec.Command(irctlBin, irctlArgs(stateDir, "--incident", strings.TrimSpace(string(id)), "preserve")...)
		// No Kubernetes here: the evidence meta records that, quickly.
		cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(work, "no-kubeconfig"))
		syscall.Sync()
		out, wall, peak, err := runMeasured(cmd)
		if err != nil {
			b.Fatalf("irctl preserve: %v\n%s", err, out)
		}
		r := exportRun{wall: wall, peak: peak}
		m := doneLine.FindStringSubmatch(string(out))
		if m == nil {
			b.Fatalf("no result line in irctl's output:\n%s", out)
		}
		fmt.Sscan(m[1], &r.rows)
		fmt.Sscan(m[2], &r.bytes)
		if r.step, err = time.ParseDuration(m[3]); err != nil {
			b.Fatalf("step duration %q: %v", m[3], err)
		}
		return r
	}
	runHelper := func() exportRun {
		b.Helper()
		n++
		dir := filepath.Join(work, fmt.Sprintf("helper-%d", n))
		defer os.RemoveAll(dir)
		if err := os.Mkdir(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(helperBin, "-database-url", sb.DatabaseURL, "-dir", dir, "-table", "audit_events", "-since", "720h")
		syscall.Sync()
		out, wall, peak, err := runMeasured(cmd)
		if err != nil {
			b.Fatalf("exporthelper: %v\n%s", err, out)
		}
		r := exportRun{wall: wall, step: wall, peak: peak}
		if _, err := fmt.Sscanf(string(out), "rows %d bytes %d", &r.rows, &r.bytes); err != nil {
			b.Fatalf("exporthelper output %q: %v", out, err)
		}
		return r
	}
	runPsql := func() exportRun {
		b.Helper()
		file := filepath.Join(work, "psql.csv")
		defer os.Remove(file)
		cmd := exec.Command(psql, sb.DatabaseURL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", `\copy (`+exportSelect+`) to '`+file+`' csv header`)
		syscall.Sync()
		out, wall, peak, err := runMeasured(cmd)
		if err != nil {
			b.Fatalf("psql: %v\n%s", err, out)
		}
		fi, err := os.Stat(file)
		if err != nil {
			b.Fatal(err)
		}
		lines, err := countLines(file)
		if err != nil {
			b.Fatal(err)
		}
		return exportRun{rows: lines - 1, bytes: fi.Size(), wall: wall, step: wall, peak: peak}
	}
	report := func(label string, irctlRuns, helperRuns, psqlRuns []exportRun) {
		ir, hr, ps := mean(irctlRuns), mean(helperRuns), mean(psqlRuns)
		for _, x := range []struct {
			tool string
			runs []exportRun
		}{{"irctl step", irctlRuns}, {"exporthelper", helperRuns}, {"psql", psqlRuns}} {
			var ds []string
			for _, r := range x.runs {
				ds = append(ds, r.step.Round(time.Millisecond).String())
			}
			fmt.Printf("  runs: %-13s %s\n", x.tool, strings.Join(ds, ", "))
		}
		iRows, iMB := ir.rate(ir.step)
		wRows, wMB := ir.rate(ir.wall)
		hRows, hMB := hr.rate(hr.wall)
		pRows, pMB := ps.rate(ps.wall)
		fmt.Printf("\nexport of %s rows of audit_events (means of %d irctl, %d exporthelper, %d psql runs):\n", label, len(irctlRuns), len(helperRuns), len(psqlRuns))
		fmt.Printf("  irctl preserve, sql.export step  %8.0f rows/s  %6.1f MB/s  %8s  %d bytes\n", iRows, iMB, ir.step.Round(time.Millisecond), ir.bytes)
		fmt.Printf("  irctl preserve, whole process    %8.0f rows/s  %6.1f MB/s  %8s\n", wRows, wMB, ir.wall.Round(time.Millisecond))
		fmt.Printf("  exporthelper (ExportCSV only)    %8.0f rows/s  %6.1f MB/s  %8s\n", hRows, hMB, hr.wall.Round(time.Millisecond))
		fmt.Printf("  psql \\copy, whole process        %8.0f rows/s  %6.1f MB/s  %8s  %d bytes\n", pRows, pMB, ps.wall.Round(time.Millisecond), ps.bytes)
		fmt.Printf("  ratio to psql: irctl step %.2fx, irctl process %.2fx, exporthelper %.2fx (target >= 0.9x)\n", iRows/pRows, wRows/pRows, hRows/pRows)
		ip, hp, pp := maxPeak(irctlRuns), maxPeak(helperRuns), maxPeak(psqlRuns)
		fmt.Printf("  peak memory: irctl VmHWM %.1f MiB (anonymous %.1f MiB; the rest is the executable's pages), exporthelper VmHWM %.1f MiB (anonymous %.1f MiB), psql VmHWM %.1f MiB\n",
			mib(ip.hwm), mib(ip.anon), mib(hp.hwm), mib(hp.anon), mib(pp.hwm))
		b.ReportMetric(iRows, label+"-irctl-rows/s")
		b.ReportMetric(pRows, label+"-psql-rows/s")
		b.ReportMetric(iRows/pRows, label+"-ratio")
		b.ReportMetric(mib(hp.hwm), label+"-export-peak-MiB")
		for _, r := range append(append(append([]exportRun{}, irctlRuns...), helperRuns...), psqlRuns...) {
			if r.rows != ir.rows {
				b.Errorf("%s: the tools exported different row counts: %d and %d", label, ir.rows, r.rows)
			}
		}
		if hp.hwm >= 64<<20 {
			b.Errorf("%s rows: the export's peak RSS is %.1f MiB, want < 64 MiB", label, mib(hp.hwm))
		}
		if ip.anon >= 64<<20 {
			b.Errorf("%s rows: irctl's anonymous memory reached %.1f MiB, want < 64 MiB", label, mib(ip.anon))
		}
	}

	for i := 0; i < b.N; i++ {
		if _, err := admin.Exec(ctx, "TRUNCATE audit_events RESTART IDENTITY"); err != nil {
			b.Fatal(err)
		}
		for _, size := range []struct {
			label    string
			from, to int64
		}{{"1M", 1, 1_000_000}, {"5M", 1_000_001, 5_000_000}} {
			insertAuditRows(b, admin, size.from, size.to)
			var irctlRuns, helperRuns, psqlRuns []exportRun
			// Three rounds, each tool first, second and third once.
			for round := range 3 {
				for k := range 3 {
					switch (round + k) % 3 {
					case 0:
						irctlRuns = append(irctlRuns, runIrctl())
					case 1:
						psqlRuns = append(psqlRuns, runPsql())
					case 2:
						helperRuns = append(helperRuns, runHelper())
					}
				}
			}
			report(size.label, irctlRuns, helperRuns, psqlRuns)
		}
	}
}

// doneLine is the engine's line for the export step: rows, bytes, duration.
var doneLine = regexp.MustCompile(`(?m)done: exported (\d+) row\(s\) of audit_events .*\((\d+) bytes, sha256 [0-9a-f]+\).* \(([0-9.]+[µmn]?s|[0-9]+m[0-9.]+s)\)$`)

// insertAuditRows adds audit events from..to (generate_series) spread over
// the last seven days: internal, IPv6 and IPv4-mapped addresses, and a
// formula-like user agent in one row of a thousand for the CSV
// neutraliser to catch.
func insertAuditRows(b testing.TB, admin *pgx.Conn, from, to int64) {
	b.Helper()
	start := time.Now()
	_, err := admin.Exec(context.Background(), `
		INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
		SELECT now() - (g % 604800) * interval '1 second' - (g % 1000) * interval '1 microsecond',
		       (ARRAY['login_success','api_call','query','export','bulk_query','authentication_failed'])[1 + g % 6],
		       1 + g % 50,
		       'dataset/' || (g % 1000),
		       CASE g % 3 WHEN 0 THEN ('10.' || g % 256 || '.' || g / 256 % 256 || '.' || 1 + g % 253)::inet
		                  WHEN 1 THEN ('2001:db8::' || to_hex(g / 65536) || ':' || to_hex(g % 65536))::inet
		                  ELSE ('::ffff:203.0.113.' || g % 250)::inet END,
		       CASE WHEN g % 1000 = 0 THEN '=HYPERLINK("http://evil.example/")' ELSE 'python-requests/2.31.0' END,
		       jsonb_build_object('bytes', g * 17, 'rows', g % 1000)
		FROM generate_series($1::bigint, $2::bigint) AS g`, from, to)
	if err != nil {
		b.Fatal(err)
	}
	// Settle the server before timing: visibility map and statistics
	// set (as autovacuum would), dirty buffers written.
	for _, q := range []string{"VACUUM ANALYZE audit_events", "CHECKPOINT"} {
		if _, err := admin.Exec(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("inserted audit rows %d..%d in %s\n", from, to, time.Since(start).Round(time.Millisecond))
}

// runMeasured runs cmd and returns its combined output, wall time and
// peak memory. The peak is VmHWM (and the highest RssAnon) from
// /proc/PID/status, read every few milliseconds while the process runs.
// rusage's ru_maxrss is no use here: os/exec starts the child sharing the
// parent's memory until exec, and ru_maxrss counts that, so for a child
// of this large test binary it reports the parent's size.
func runMeasured(cmd *exec.Cmd) ([]byte, time.Duration, memPeak, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, memPeak{}, err
	}
	done := make(chan struct{})
	peak := make(chan memPeak)
	go func() {
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		var m memPeak
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if hwm, anon, ok := readStatus(status); ok {
				m.hwm, m.anon = max(m.hwm, hwm), max(m.anon, anon)
			}
			select {
			case <-done:
				peak <- m
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	return out.Bytes(), wall, <-peak, err
}

// readStatus reads VmHWM and RssAnon, in bytes, from /proc/PID/status.
func readStatus(path string) (hwm, anon int64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found || (k != "VmHWM" && k != "RssAnon") {
			continue
		}
		var kb int64
		if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err != nil {
			continue
		}
		if k == "VmHWM" {
			hwm, ok = kb*1024, true
		} else {
			anon = kb * 1024
		}
	}
	return hwm, anon, ok
}

func mean(runs []exportRun) exportRun {
	var m exportRun
	for _, r := range runs {
		m.wall += r.wall / time.Duration(len(runs))
		m.step += r.step / time.Duration(len(runs))
		m.rows, m.bytes = r.rows, r.bytes
	}
	return m
}

func maxPeak(runs []exportRun) memPeak {
	var m memPeak
	for _, r := range runs {
		m.hwm, m.anon = max(m.hwm, r.peak.hwm), max(m.anon, r.peak.anon)
	}
	return m
}

// countLines counts the newlines of a file (the benchmark's rows have no
// multi-line cells, so for psql's CSV that is rows + 1).
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err != nil {
			return n, nil
		}
	}
}
