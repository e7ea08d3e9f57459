package engine

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// JournalResults reads steps' recorded results for params with from: a
// step's result is the evidence it committed between its intent and its
// outcome in the journal (JSON lines or CSV with a header), checked
// against the manifest's SHA-256 before it is trusted.
type JournalResults struct {
	Dir string // the incident directory
}

// Column implements runbook.Results.
func (r JournalResults) Column(phase, step, column string) ([]string, string, error) {
	recs, err := incident.ReadJournal(incident.JournalFile(r.Dir))
	if err != nil {
		return nil, "", err
	}
	if column == runbook.FinishedAtColumn {
		return finishedAt(recs, phase, step)
	}
	// The step's last intent and, after it, its outcome; a later noop
	// (nothing to run) means the step has no result now.
	intent, outcome := -1, -1
	var last *incident.Record
	for i := range recs {
		rec := &recs[i]
		if rec.Phase != phase || rec.Step != step || rec.DryRun == "client" {
			continue
		}
		switch rec.Kind {
		case incident.KindIntent:
			intent, outcome, last = i, -1, rec
		case incident.KindOutcome:
			if intent >= 0 && outcome < 0 {
				outcome, last = i, rec
			}
		case incident.KindNoop:
			intent, outcome, last = -1, -1, rec
		}
	}
	switch {
	case last == nil:
		return nil, "", runbook.ErrNoResult
	case last.Kind == incident.KindNoop:
		// A step that had nothing to do (a query whose only_if was
		// empty) found nothing: the param is an empty list, and the
		// plan says why, rather than stopping a run halfway.
		return []string{}, fmt.Sprintf("journal record %d: it did nothing (%s)", last.Seq, last.Plan), nil
	case outcome < 0:
		return nil, "", fmt.Errorf("%w (its last run, journal record %d, has no outcome)", runbook.ErrNoResult, last.Seq)
	case last.Error != "":
		return nil, "", fmt.Errorf("%w (its last run failed: journal record %d)", runbook.ErrNoResult, last.Seq)
	}
	var items []string
	for _, rec := range recs[intent:outcome] {
		if rec.Kind == incident.KindEvidence && (strings.HasSuffix(rec.EvidenceItem, ".jsonl") || strings.HasSuffix(rec.EvidenceItem, ".csv")) {
			items = append(items, rec.EvidenceItem)
		}
	}
	if len(items) == 0 {
		return nil, "", fmt.Errorf("its result (journal record %d) saved no table to read %s from", recs[outcome].Seq, column)
	}
	manifest, err := evidence.ReadManifest(r.Dir)
	if err != nil {
		return nil, "", err
	}
	hashes := map[string]string{}
	for _, e := range manifest {
		hashes[e.Name] = e.SHA256
	}
	var vals []string
	seen := map[string]bool{}
	for _, item := range items {
		col, err := readColumn(filepath.Join(evidence.Dir(r.Dir), item), hashes[item], column)
		if err != nil {
			return nil, "", fmt.Errorf("evidence %s: %w", item, err)
		}
		for _, v := range col {
			if !seen[v] {
				seen[v] = true
				vals = append(vals, v)
			}
		}
	}
	return vals, fmt.Sprintf("journal record %d, evidence %s", recs[outcome].Seq, strings.Join(items, ", ")), nil
}

// finishedAt is the time the step's last successful run finished (its
// outcome, every target done), or, when it only ever had nothing to do,
// when it first found that out. A later rerun that has nothing to do (a
// restart already done) does not move it: the change took effect then.
func finishedAt(recs []incident.Record, phase, step string) ([]string, string, error) {
	var done, noop *incident.Record
	pending := false
	for i := range recs {
		rec := &recs[i]
		if rec.Phase != phase || rec.Step != step || (rec.DryRun != "" && rec.DryRun != string(action.DryRunNone)) {
			continue
		}
		switch rec.Kind {
		case incident.KindIntent:
			pending = true
		case incident.KindOutcome:
			if pending && rec.Error == "" && len(rec.Failed) == 0 {
				done = rec
			}
			pending = false
		case incident.KindNoop:
			if noop == nil {
				noop = rec
			}
		}
	}
	switch {
	case done != nil:
		return []string{done.Time.UTC().Format(time.RFC3339Nano)}, fmt.Sprintf("journal record %d: it finished", done.Seq), nil
	case noop != nil:
		return []string{noop.Time.UTC().Format(time.RFC3339Nano)}, fmt.Sprintf("journal record %d: it had nothing to do (%s)", noop.Seq, noop.Plan), nil
	}
	return nil, "", fmt.Errorf("%w (it has not finished successfully)", runbook.ErrNoResult)
}

// readColumn returns the non-null values of column in a JSON-lines or CSV
// evidence file whose SHA-256 must be want.
func readColumn(path, want, column string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if want == "" || hex.EncodeToString(sum[:]) != want {
		return nil, errors.New("does not match its manifest entry (run `irctl evidence verify`); not used")
	}
	if strings.HasSuffix(path, ".csv") {
		return csvColumn(data, column)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var row map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, err
		}
		raw, ok := row[column]
		if !ok {
			return nil, fmt.Errorf("has no column %q (columns: %s)", column, strings.Join(slices.Sorted(maps.Keys(row)), ", "))
		}
		if v, ok := jsonText(raw); ok {
			out = append(out, v)
		}
	}
	return out, sc.Err()
}

func csvColumn(data []byte, column string) ([]string, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	idx := -1
	for i, h := range header {
		if h == column {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("has no column %q (columns: %s)", column, strings.Join(header, ", "))
	}
	var out []string
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if rec[idx] != "" {
			out = append(out, rec[idx])
		}
	}
}

// jsonText is a JSON scalar as text; null gives false.
func jsonText(raw json.RawMessage) (string, bool) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return "", false
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	return strings.TrimSpace(string(raw)), true
}
