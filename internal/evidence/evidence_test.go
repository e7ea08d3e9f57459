package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var testMeta = Meta{Operator: "alice@host", KubeIdentity: "kubernetes-admin", DBUser: "orchestrator", ToolVersion: "test", RunbookHash: "abc123"}

// newStore opens a store in a fresh incident directory.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func put(t *testing.T, s *Store, name, data string) Entry {
	t.Helper()
	rows := int64(strings.Count(data, "\n"))
	e, err := s.WriteFile(name, Source{Kind: KindSQL, Server: "u@h:5432/db", SQL: "SELECT 1", Params: []any{"x"}}, []byte(data), Extra{Rows: &rows})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// collect writes a few items of both kinds and returns the incident dir.
func collect(t *testing.T) string {
	t.Helper()
	s, dir := newStore(t)
	put(t, s, "sql/audit.csv", "id,ip\n1,10.0.0.1\n2,203.0.113.7\n")
	put(t, s, "sql/users.jsonl", `{"id":1}`+"\n")
	w, err := s.Create("logs/llm-orchestrator/pod-a/app.log", Source{Kind: KindKubernetes, Server: "https://api:6443",
		Objects: []Object{{Kind: "Pod", Namespace: "llm-orchestrator", Name: "pod-a", UID: "u-1", ResourceVersion: "42", Container: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		fmt.Fprintf(w, "line %d export bytes=%d\n", i, i*1000)
	}
	if _, err := w.Commit(Extra{Note: "streamed"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustVerify(t *testing.T, dir string, pub ed25519.PublicKey) *Report {
	t.Helper()
	r, err := Verify(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantProblem fails unless verification failed with a problem naming item
// whose message contains msg.
func wantProblem(t *testing.T, r *Report, item, msg string) {
	t.Helper()
	if r.OK() {
		t.Fatalf("verify passed, want a problem with %s", item)
	}
	for _, p := range r.Problems {
		if p.Item == item && strings.Contains(p.Msg, msg) {
			return
		}
	}
	t.Fatalf("no problem naming %s containing %q; got:\n%v", item, msg, r.Problems)
}

func TestCommitWritesManifestWithChainAndMeta(t *testing.T) {
	dir := collect(t)
	entries, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3", len(entries))
	}
	raw, _ := os.ReadFile(filepath.Join(Dir(dir), ManifestName))
	lines := splitLines(raw)
	prev := ZeroHash
	for i, e := range entries {
		if e.Seq != i+1 || e.Prev != prev {
			t.Errorf("entry %d: seq %d prev %s, want seq %d prev %s", i, e.Seq, e.Prev, i+1, prev)
		}
		prev = lineHash(lines[i])
		data, _ := os.ReadFile(filepath.Join(Dir(dir), e.Name))
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != e.SHA256 || int64(len(data)) != e.Size {
			t.Errorf("%s: manifest hash/size do not match the file", e.Name)
		}
		if e.Meta != testMeta || e.CollectedStart.IsZero() || e.CollectedEnd.Before(e.CollectedStart) || e.CollectedEnd.Location().String() != "UTC" {
			t.Errorf("%s: meta or times wrong: %+v", e.Name, e)
		}
	}
	if r := entries[0].Source.Rows; r == nil || *r != 3 {
		t.Errorf("row count not recorded: %v", r)
	}
	if o := entries[2].Source.Objects; len(o) != 1 || o[0].UID != "u-1" || o[0].ResourceVersion != "42" || entries[2].Source.Note != "streamed" {
		t.Errorf("kubernetes source not recorded: %+v", entries[2].Source)
	}
	if r := mustVerify(t, dir, nil); !r.OK() || r.Verified != 3 || r.Signature != "none" {
		t.Fatalf("fresh evidence does not verify: %+v", r)
	}
}

func TestPrivateModesWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := collect(t)
	err := filepath.Walk(Dir(dir), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNameCollisionsGetSuffixesNeverOverwrite(t *testing.T) {
	s, dir := newStore(t)
	a := put(t, s, "dump/pods.yaml", "first")
	b := put(t, s, "dump/pods.yaml", "second")
	// A file that appeared on disk without the manifest is not overwritten either.
	if err := os.WriteFile(filepath.Join(Dir(dir), "dump", "pods-3.yaml"), []byte("stray"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := put(t, s, "dump/pods.yaml", "third")
	if a.Name != "dump/pods.yaml" || b.Name != "dump/pods-2.yaml" || c.Name != "dump/pods-4.yaml" {
		t.Fatalf("names %s, %s, %s", a.Name, b.Name, c.Name)
	}
	if got, _ := os.ReadFile(filepath.Join(Dir(dir), "dump", "pods.yaml")); string(got) != "first" {
		t.Fatalf("first item overwritten: %q", got)
	}
	wantProblem(t, mustVerify(t, dir, nil), "dump/pods-3.yaml", "extra file")
}

func TestConcurrentCommitsKeepTheChain(t *testing.T) {
	s, dir := newStore(t)
	// A second store on the same directory stands in for a second process.
	s2, err := Open(dir, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			if _, err := st.WriteFile("item.txt", Source{Kind: KindSQL}, []byte(fmt.Sprint(i)), Extra{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if r := mustVerify(t, dir, nil); !r.OK() || r.Items != 40 {
		t.Fatalf("after concurrent commits: %+v", r)
	}
}

func TestAbortedWriterLeavesNothing(t *testing.T) {
	s, dir := newStore(t)
	w, err := s.Create("x.txt", Source{Kind: KindSQL})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Close()
	if _, err := w.Commit(Extra{}); err == nil {
		t.Fatal("commit after close succeeded")
	}
	r := mustVerify(t, dir, nil)
	if !r.OK() || r.Items != 0 || len(r.Notes) != 1 {
		t.Fatalf("aborted item left traces: %+v", r)
	}
}

func TestBadNamesRejected(t *testing.T) {
	s, _ := newStore(t)
	for _, n := range []string{"", "../x", "/etc/passwd", "a/../../b", ".hidden", "manifest.jsonl", "a//b", "a b"} {
		if _, err := s.Create(n, Source{}); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	if got := SafeName("app=orchestrator, tier/web"); got != "app=orchestrator_tier_web" {
		t.Errorf("SafeName: %q", got)
	}
}

func TestVerifyNamesTampering(t *testing.T) {
	ev := func(dir string, parts ...string) string {
		return filepath.Join(append([]string{Dir(dir)}, parts...)...)
	}
	readLines := func(t *testing.T, dir string) [][]byte {
		raw, err := os.ReadFile(ev(dir, ManifestName))
		if err != nil {
			t.Fatal(err)
		}
		return splitLines(raw)
	}
	writeLines := func(t *testing.T, dir string, lines [][]byte) {
		var b bytes.Buffer
		for _, l := range lines {
			b.Write(l)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(ev(dir, ManifestName), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("flip one byte", func(t *testing.T) {
		dir := collect(t)
		p := ev(dir, "sql", "audit.csv")
		b, _ := os.ReadFile(p)
		b[5] ^= 0x01
		os.WriteFile(p, b, 0o600)
		wantProblem(t, mustVerify(t, dir, nil), "sql/audit.csv", "changed")
	})
	t.Run("delete a file", func(t *testing.T) {
		dir := collect(t)
		os.Remove(ev(dir, "sql", "users.jsonl"))
		wantProblem(t, mustVerify(t, dir, nil), "sql/users.jsonl", "missing")
	})
	t.Run("add a file", func(t *testing.T) {
		dir := collect(t)
		os.WriteFile(ev(dir, "sql", "planted.csv"), []byte("x"), 0o600)
		wantProblem(t, mustVerify(t, dir, nil), "sql/planted.csv", "extra file")
	})
	t.Run("reorder manifest lines", func(t *testing.T) {
		dir := collect(t)
		l := readLines(t, dir)
		l[0], l[1] = l[1], l[0]
		writeLines(t, dir, l)
		r := mustVerify(t, dir, nil)
		wantProblem(t, r, "sql/users.jsonl", "chain broken")
		wantProblem(t, r, "sql/audit.csv", "reordered")
	})
	t.Run("edit a manifest line", func(t *testing.T) {
		dir := collect(t)
		l := readLines(t, dir)
		// Make the entry match a tampered file: the chain still gives it away.
		p := ev(dir, "sql", "audit.csv")
		os.WriteFile(p, []byte("forged\n"), 0o600)
		var e map[string]any
		json.Unmarshal(l[0], &e)
		sum := sha256.Sum256([]byte("forged\n"))
		e["sha256"], e["size"] = hex.EncodeToString(sum[:]), 7
		l[0], _ = json.Marshal(e)
		writeLines(t, dir, l)
		wantProblem(t, mustVerify(t, dir, nil), "sql/users.jsonl", "hash of line 1 (that line was edited")
	})
	t.Run("remove a manifest line", func(t *testing.T) {
		dir := collect(t)
		l := readLines(t, dir)
		writeLines(t, dir, [][]byte{l[0], l[2]})
		r := mustVerify(t, dir, nil)
		wantProblem(t, r, "logs/llm-orchestrator/pod-a/app.log", "entries 2 are missing")
		wantProblem(t, r, "sql/users.jsonl", "extra file")
	})
	t.Run("garbage manifest line", func(t *testing.T) {
		dir := collect(t)
		l := readLines(t, dir)
		l[1] = []byte("{oops")
		writeLines(t, dir, l)
		wantProblem(t, mustVerify(t, dir, nil), "manifest line 2", "not a manifest entry")
	})
	t.Run("torn last line", func(t *testing.T) {
		dir := collect(t)
		f, _ := os.OpenFile(ev(dir, ManifestName), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`{"seq":4,"na`)
		f.Close()
		wantProblem(t, mustVerify(t, dir, nil), "manifest line 4", "incomplete")
		if _, err := Open(dir, testMeta); err == nil || !strings.Contains(err.Error(), "incomplete line") {
			t.Fatalf("Open appends after a torn line: %v", err)
		}
	})
}

func TestSignAndVerify(t *testing.T) {
	dir := collect(t)
	keys := t.TempDir()
	pub, err := GenerateKey(filepath.Join(keys, "k"), filepath.Join(keys, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(filepath.Join(keys, "k"), filepath.Join(keys, "k2.pub")); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	for _, f := range []string{"k", "k.pub"} {
		if fi, _ := os.Stat(filepath.Join(keys, f)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o", f, fi.Mode().Perm())
		}
	}
	priv, err := LoadPrivateKey(filepath.Join(keys, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if pub2, _ := LoadPublicKey(filepath.Join(keys, "k.pub")); !pub2.Equal(pub) {
		t.Fatal("public key does not round-trip")
	}
	if r := mustVerify(t, dir, pub); r.OK() {
		t.Fatal("unsigned evidence verified with a key")
	}
	if _, err := Sign(dir, priv); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, pub); !r.OK() || !strings.HasPrefix(r.Signature, "valid") {
		t.Fatalf("signed evidence: %+v", r)
	}
	if r := mustVerify(t, dir, nil); !r.OK() || len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "not checked") {
		t.Fatalf("without a key verify should say the signature was not checked: %+v", r)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	wantProblem(t, mustVerify(t, dir, other), SigName, "not by the given key")

	// Appending after signing is reported; editing the signed part is a bad signature.
	s, _ := Open(dir, testMeta)
	put(t, s, "late.txt", "late")
	wantProblem(t, mustVerify(t, dir, pub), SigName, "appended after signing")
	mp := filepath.Join(Dir(dir), ManifestName)
	raw, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(raw, []byte(`"rows":3`), []byte(`"rows":4`), 1), 0o600)
	wantProblem(t, mustVerify(t, dir, pub), SigName, "bad signature")
}

func TestPackIsReproducible(t *testing.T) {
	dir := collect(t)
	var a, b bytes.Buffer
	if _, err := Pack(dir, &a); err != nil {
		t.Fatal(err)
	}
	if _, err := Pack(dir, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two packs of the same evidence differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries time %v or name %q", zr.ModTime, zr.Name)
	}
	entries, _ := ReadManifest(dir)
	tr := tar.NewReader(zr)
	var names []string
	out := t.TempDir()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(entries[2].CollectedEnd.Truncate(1e9)) {
			t.Errorf("%s: uid %d gid %d uname %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
		p := filepath.Join(out, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o700)
			continue
		}
		data, _ := io.ReadAll(tr)
		os.WriteFile(p, data, 0o600)
	}
	want := []string{"evidence/", "evidence/logs/", "evidence/logs/llm-orchestrator/", "evidence/logs/llm-orchestrator/pod-a/",
		"evidence/logs/llm-orchestrator/pod-a/app.log", "evidence/manifest.jsonl", "evidence/sql/", "evidence/sql/audit.csv", "evidence/sql/users.jsonl"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("members:\n%v\nwant\n%v", names, want)
	}
	// The unpacked bundle verifies on its own.
	if r := mustVerify(t, out, nil); !r.OK() || r.Verified != 3 {
		t.Fatalf("unpacked bundle: %+v", r)
	}
	// A tampered file fails the pack.
	os.WriteFile(filepath.Join(Dir(dir), "sql", "audit.csv"), []byte("x"), 0o600)
	if _, err := Pack(dir, io.Discard); err == nil || !strings.Contains(err.Error(), "sql/audit.csv") {
		t.Fatalf("pack of tampered evidence: %v", err)
	}
}
