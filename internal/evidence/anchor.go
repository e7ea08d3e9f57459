package evidence

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"irctl.dev/irctl/internal/incident"
)

// The hash chain protects every manifest line that has a successor; the
// newest line has none, so removing it (and its file) or rewriting it
// (with a file to match) would leave a valid chain. After each commit the
// store therefore journals an anchor, the entry count and the hash of the
// newest line, in the incident's append-only journal, which lives outside
// the evidence directory; verify compares the manifest with every anchor.
// With a signing key configured, each commit also re-signs the manifest.

// anchor journals the manifest's head after e was appended, and re-signs
// the manifest when a key is set. Called with the lock held.
func (s *Store) anchor(e Entry) error {
	_, err := s.journal.Append(incident.Record{
		Kind:          incident.KindEvidence,
		Incident:      filepath.Base(filepath.Dir(s.dir)),
		Operator:      s.meta.Operator,
		Result:        fmt.Sprintf("evidence %s committed; manifest anchored at %d entries", e.Name, s.lines),
		EvidenceItem:  e.Name,
		EvidenceItems: s.lines,
		EvidenceHead:  s.prev,
	})
	if err != nil {
		return fmt.Errorf("anchoring the manifest in the journal: %w", err)
	}
	if s.signKey != nil {
		manifest, err := os.ReadFile(filepath.Join(s.dir, ManifestName))
		if err != nil {
			return err
		}
		if _, err := signManifest(s.dir, manifest, s.signKey); err != nil {
			return fmt.Errorf("signing the manifest: %w", err)
		}
	}
	return nil
}

// checkAnchors compares the manifest lines with the anchors in the
// incident journal beside the evidence directory: a line an anchor
// counted must still be there with the hash the anchor recorded, and
// every line must be anchored. Without a journal (an unpacked bundle)
// only a note says that the tail is unchecked.
func checkAnchors(r *Report, incidentDir string, manifest []byte) {
	lines := splitLines(manifest)
	recs, err := incident.ReadJournal(incident.JournalFile(incidentDir))
	if err != nil {
		r.add("journal", "cannot read the evidence anchors: %v", err)
		return
	}
	if _, serr := os.Stat(incident.JournalFile(incidentDir)); errors.Is(serr, fs.ErrNotExist) {
		r.Anchor = "no journal"
		if len(lines) > 0 {
			r.Notes = append(r.Notes, "no incident journal beside the evidence: the newest manifest entries are not checked against the journal's anchors (only a signature protects them)")
		}
		return
	}
	anchored := 0
	bad := false
	// unanchored names lines a..b (1-based) that no anchor was written for.
	unanchored := func(a, b int) {
		names := make([]string, 0, b-a+1)
		for i := a; i <= b && i <= len(lines); i++ {
			names = append(names, entryName(lines[i-1], i))
		}
		if len(names) == 0 {
			return
		}
		r.add(names[0], "manifest line(s) %s (%s) are not anchored in the journal: added outside irctl, or irctl stopped between the commit and its anchor", seqRange(a, b), strings.Join(names, ", "))
		bad = true
	}
	for _, rec := range recs {
		if rec.Kind != incident.KindEvidence {
			continue
		}
		n := rec.EvidenceItems
		// Commits are anchored one by one, in manifest order: a later
		// anchor does not vouch for lines that got none of their own.
		if n > anchored+1 {
			unanchored(anchored+1, n-1)
		}
		item := rec.EvidenceItem
		if item == "" {
			item = fmt.Sprintf("manifest line %d", n)
		}
		switch {
		case n <= 0:
			r.add("journal", "record %d is an evidence anchor without an entry count", rec.Seq)
			bad = true
		case n > len(lines):
			r.add(item, "removed from the manifest: journal record %d anchored it as entry %d of %d, but the manifest has %d line(s) (its tail was truncated)", rec.Seq, n, n, len(lines))
			bad = true
		case lineHash(lines[n-1]) != rec.EvidenceHead:
			r.add(item, "manifest line %d was rewritten after it was committed: its hash %s differs from the one journal record %d anchored (%s)", n, short(lineHash(lines[n-1])), rec.Seq, short(rec.EvidenceHead))
			bad = true
		}
		anchored = max(anchored, n)
	}
	if anchored < len(lines) {
		unanchored(anchored+1, len(lines))
	}
	switch {
	case bad:
		r.Anchor = "MISMATCH"
	case anchored == 0:
		r.Anchor = "none (nothing committed)"
	default:
		r.Anchor = fmt.Sprintf("matches (%d entries)", anchored)
	}
}

// entryName is a manifest line's item name, or "manifest line N".
func entryName(line []byte, n int) string {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil || e.Name == "" {
		return fmt.Sprintf("manifest line %d", n)
	}
	return e.Name
}
