package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"irctl.dev/irctl/internal/incident"
)

// The hash chain cannot protect the newest manifest line (it has no
// successor); the journal's anchors do. These are the two tail tamperings
// that a chain alone lets through.
func TestVerifyCatchesTailTamperingThroughTheJournalAnchor(t *testing.T) {
	manifest := func(dir string) string { return filepath.Join(Dir(dir), ManifestName) }
	t.Run("untouched evidence verifies and matches its anchor", func(t *testing.T) {
		dir := collect(t)
		r := mustVerify(t, dir, nil)
		if !r.OK() || r.Verified != 3 || r.Anchor != "matches (3 entries)" {
			t.Fatalf("%+v", r)
		}
		recs, err := incident.ReadJournal(incident.JournalFile(dir))
		if err != nil {
			t.Fatal(err)
		}
		var anchors []string
		for _, rec := range recs {
			if rec.Kind == incident.KindEvidence {
				anchors = append(anchors, fmt.Sprintf("%d:%s", rec.EvidenceItems, rec.EvidenceItem))
			}
		}
		if got := strings.Join(anchors, " "); got != "1:sql/audit.csv 2:sql/users.jsonl 3:logs/llm-orchestrator/pod-a/app.log" {
			t.Errorf("anchors %s", got)
		}
	})
	t.Run("last line and its file deleted", func(t *testing.T) {
		dir := collect(t)
		raw, _ := os.ReadFile(manifest(dir))
		lines := splitLines(raw)
		cut := bytes.Join(lines[:2], []byte{'\n'})
		os.WriteFile(manifest(dir), append(cut, '\n'), 0o600)
		os.Remove(filepath.Join(Dir(dir), "logs", "llm-orchestrator", "pod-a", "app.log"))
		r := mustVerify(t, dir, nil)
		wantProblem(t, r, "logs/llm-orchestrator/pod-a/app.log", "removed from the manifest")
		if len(r.Problems) != 1 || r.Anchor != "MISMATCH" {
			t.Errorf("want exactly the truncation, got %v (anchor %s)", r.Problems, r.Anchor)
		}
	})
	t.Run("last file rewritten and its line fixed", func(t *testing.T) {
		dir := collect(t)
		raw, _ := os.ReadFile(manifest(dir))
		lines := splitLines(raw)
		p := filepath.Join(Dir(dir), "logs", "llm-orchestrator", "pod-a", "app.log")
		forged := []byte("nothing to see here\n")
		os.WriteFile(p, forged, 0o600)
		var e map[string]any
		json.Unmarshal(lines[2], &e)
		sum := sha256.Sum256(forged)
		e["sha256"], e["size"] = hex.EncodeToString(sum[:]), len(forged)
		lines[2], _ = json.Marshal(e)
		os.WriteFile(manifest(dir), append(bytes.Join(lines, []byte{'\n'}), '\n'), 0o600)
		r := mustVerify(t, dir, nil)
		wantProblem(t, r, "logs/llm-orchestrator/pod-a/app.log", "manifest line 3 was rewritten after it was committed")
		if len(r.Problems) != 1 {
			t.Errorf("want exactly the rewrite, got %v", r.Problems)
		}
	})
	t.Run("a line appended outside irctl", func(t *testing.T) {
		dir := collect(t)
		raw, _ := os.ReadFile(manifest(dir))
		lines := splitLines(raw)
		planted := []byte("planted\n")
		os.WriteFile(filepath.Join(Dir(dir), "planted.txt"), planted, 0o600)
		sum := sha256.Sum256(planted)
		line, _ := json.Marshal(Entry{Seq: 4, Name: "planted.txt", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(planted)), Prev: lineHash(lines[2])})
		os.WriteFile(manifest(dir), append(append(raw, line...), '\n'), 0o600)
		wantProblem(t, mustVerify(t, dir, nil), "planted.txt", "not anchored in the journal")
	})
	t.Run("a line appended outside irctl, then a commit", func(t *testing.T) {
		dir := collect(t)
		raw, _ := os.ReadFile(manifest(dir))
		lines := splitLines(raw)
		planted := []byte("planted\n")
		os.WriteFile(filepath.Join(Dir(dir), "planted.txt"), planted, 0o600)
		sum := sha256.Sum256(planted)
		line, _ := json.Marshal(Entry{Seq: 4, Name: "planted.txt", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(planted)), Prev: lineHash(lines[2])})
		os.WriteFile(manifest(dir), append(append(raw, line...), '\n'), 0o600)
		s, err := Open(dir, testMeta)
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "later.txt", "later\n")
		r := mustVerify(t, dir, nil)
		wantProblem(t, r, "planted.txt", "manifest line(s) 4 (planted.txt) are not anchored")
		if len(r.Problems) != 1 {
			t.Errorf("want only the planted line, got %v", r.Problems)
		}
	})
	t.Run("anchors removed from the journal", func(t *testing.T) {
		dir := collect(t)
		os.WriteFile(incident.JournalFile(dir), nil, 0o600)
		wantProblem(t, mustVerify(t, dir, nil), "sql/audit.csv", "not anchored in the journal")
	})
}

// With a signing key set, every commit leaves a signature that covers
// the newest entry.
func TestSigningKeySignsEachCommit(t *testing.T) {
	s, dir := newStore(t)
	keys := t.TempDir()
	pub, err := GenerateKey(filepath.Join(keys, "k"), filepath.Join(keys, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := LoadPrivateKey(filepath.Join(keys, "k"))
	s.SetSigningKey(priv)
	for i := range 3 {
		put(t, s, fmt.Sprintf("item-%d.txt", i), "data\n")
		r := mustVerify(t, dir, pub)
		if !r.OK() || !strings.HasPrefix(r.Signature, "valid (") {
			t.Fatalf("after commit %d: %+v", i+1, r)
		}
	}
}

// Pack reads the manifest once under the store's lock: commits racing
// with it never give a bundle whose manifest lists a file it lacks or
// holds a file its manifest does not list.
func TestPackIsAConsistentSnapshotDuringCommits(t *testing.T) {
	s, dir := newStore(t)
	put(t, s, "first.txt", "first\n")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			put(t, s, fmt.Sprintf("batch/item-%d.txt", i), strings.Repeat("x", i%5000))
		}
	}()
	sizes := map[int]bool{}
	for range 40 {
		var buf bytes.Buffer
		if _, err := Pack(dir, &buf); err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		sizes[checkBundle(t, buf.Bytes())] = true
	}
	close(stop)
	wg.Wait()
	if len(sizes) < 2 {
		t.Logf("all packs saw the same manifest (%v): the commits did not interleave", sizes)
	}
}

// checkBundle unpacks a bundle and checks that its manifest and files
// agree one to one; it returns the number of entries.
func checkBundle(t *testing.T, bundle []byte) int {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	var manifest []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, _ := io.ReadAll(tr)
		name := strings.TrimPrefix(h.Name, DirName+"/")
		if name == ManifestName {
			manifest = data
			continue
		}
		files[name] = data
	}
	lines := splitLines(manifest)
	for i, line := range lines {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("bundle manifest line %d: %v", i+1, err)
		}
		data, ok := files[e.Name]
		if !ok {
			t.Fatalf("bundle manifest lists %s (line %d of %d) but the bundle lacks it", e.Name, i+1, len(lines))
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != e.SHA256 {
			t.Fatalf("bundle's %s does not match its manifest line", e.Name)
		}
		delete(files, e.Name)
	}
	for name := range files {
		t.Fatalf("bundle holds %s, which its manifest does not list", name)
	}
	return len(lines)
}
