// Command exporthelper runs irctl's sql.export code (sqlaction.ExportCSV)
// and nothing else, for the export benchmark: a process whose peak RSS is
// that of the export, not of the irctl binary's ~80 MB of other code
// (client-go, envtest, prompts) mapped from disk.
//
//	exporthelper -database-url URL -dir INCIDENT_DIR -table audit_events -since 720h [-cpuprofile FILE]
//
// It prints "rows N bytes B" on success.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/action/sqlaction"
	"irctl.dev/irctl/internal/db"
	"irctl.dev/irctl/internal/evidence"
)

func main() {
	url := flag.String("database-url", "", "PostgreSQL URL")
	dir := flag.String("dir", "", "incident directory (evidence goes to DIR/evidence)")
	table := flag.String("table", "audit_events", "table to export")
	since := flag.Duration("since", 30*24*time.Hour, "export rows newer than this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "exporthelper:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*url, *dir, *table, *since); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "exporthelper:", err)
		os.Exit(1)
	}
}

func run(url, dir, table string, since time.Duration) error {
	ctx := context.Background()
	pool, err := db.Open(ctx, url, "irctl-exporthelper", zerolog.Nop())
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := evidence.Open(dir, evidence.Meta{Operator: "bench", KubeIdentity: "unknown: not used", DBUser: "unknown: not asked", ToolVersion: "exporthelper", RunbookHash: "none"})
	if err != nil {
		return err
	}
	res, err := sqlaction.ExportCSV(ctx, pool, store, sqlaction.Export{}.Spec().MustBind(map[string]any{"table": table, "since": since}), &action.Env{Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	fmt.Printf("rows %d bytes %d\n", res.Rows, res.Entry.Size)
	return nil
}
