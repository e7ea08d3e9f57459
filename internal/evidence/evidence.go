// Package evidence is the incident's evidence store: files written once
// into <incident dir>/evidence/, each hashed (SHA-256) while it streams in,
// and a hash-chained manifest (manifest.jsonl) that records for every item
// its source, collection times and who collected it with which tool and
// runbook — the chain of custody that `irctl evidence verify` checks.
//
// Files are 0600 in 0700 directories whatever the umask. An item is written
// to a temporary file, fsync'd, then hard-linked into place, which fails
// rather than overwrites (O_EXCL semantics); a name already taken gets a
// numeric suffix. Only then is its manifest line appended and fsync'd, so a
// crash leaves at worst an unlisted file, which verify reports.
package evidence

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"irctl.dev/irctl/internal/fsutil"
	"irctl.dev/irctl/internal/incident"
)

// File and directory names inside the evidence directory.
const (
	DirName      = "evidence"
	ManifestName = "manifest.jsonl"
	SigName      = "manifest.sig"
	partialDir   = ".partial" // temporary files of items being written
	lockName     = ".lock"    // flock'd while the manifest is appended to
)

// ZeroHash is the prev of the first manifest entry.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Source kinds.
const (
	KindKubernetes = "kubernetes"
	KindSQL        = "sql"
	KindPrometheus = "prometheus"
)

// Dir returns the evidence directory of an incident directory.
func Dir(incidentDir string) string { return filepath.Join(incidentDir, DirName) }

// Meta identifies who collects evidence with what; it is copied into every
// manifest entry. Fields that could not be determined read "unknown: why".
type Meta struct {
	Operator     string `json:"operator"`      // OS user@host
	KubeIdentity string `json:"kube_identity"` // the API server's view of us (SelfSubjectReview)
	DBUser       string `json:"db_user"`       // SELECT current_user
	ToolVersion  string `json:"tool_version"`
	RunbookHash  string `json:"runbook_hash"`
}

// Object is one Kubernetes object an item was collected from.
type Object struct {
	APIVersion      string `json:"apiVersion,omitempty"`
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Container       string `json:"container,omitempty"` // logs: which container
	Previous        bool   `json:"previous,omitempty"`  // logs: the previous instance
}

func (o Object) String() string {
	s := o.Kind + " "
	if o.Namespace != "" {
		s += o.Namespace + "/"
	}
	s += o.Name
	if o.Container != "" {
		s += "[" + o.Container + "]"
	}
	return s
}

// Source says where an item came from.
type Source struct {
	Kind string `json:"kind"` // KindKubernetes, KindSQL, KindPrometheus
	// Server is the API server URL, the database (user@host:port/db) or
	// the Prometheus URL, never with credentials.
	Server string `json:"server,omitempty"`
	// Kubernetes: the objects read, with UID and resourceVersion; for a
	// list, ListResourceVersion is the list's own resourceVersion.
	Objects             []Object `json:"objects,omitempty"`
	ListResourceVersion string   `json:"list_resource_version,omitempty"`
	// SQL: the statement text, its params as given (already redacted by
	// the caller), and the number of rows.
	SQL    string `json:"sql,omitempty"`
	Params any    `json:"params,omitempty"`
	Rows   *int64 `json:"rows,omitempty"`
	// Query is a non-SQL query (PromQL).
	Query string `json:"query,omitempty"`
	// Note is anything else a reader of the manifest should know (e.g.
	// "12 CSV cells neutralised").
	Note string `json:"note,omitempty"`
}

// Entry is one manifest line.
type Entry struct {
	Seq            int       `json:"seq"`
	Name           string    `json:"name"`
	SHA256         string    `json:"sha256"`
	Size           int64     `json:"size"`
	Source         Source    `json:"source"`
	CollectedStart time.Time `json:"collected_start"`
	CollectedEnd   time.Time `json:"collected_end"`
	Meta
	// Prev is the SHA-256 of the previous manifest line (without its
	// newline); ZeroHash for the first.
	Prev string `json:"prev"`
}

// Extra is what is known only once an item has been written.
type Extra struct {
	Rows    *int64   // row count, for SQL items
	Objects []Object // appended to the source's objects
	Note    string   // appended to the source's note
}

// Store is an open evidence directory.
type Store struct {
	dir  string // the evidence directory
	meta Meta

	mu    sync.Mutex
	size  int64           // manifest size when last scanned
	seq   int             // last seq in the manifest
	lines int             // entries (lines) in the manifest
	prev  string          // hash of the last manifest line
	names map[string]bool // names in the manifest

	journal *incident.Journal  // where each commit is anchored (anchor.go)
	signKey ed25519.PrivateKey // re-signs the manifest after each commit, if set
}

// Open opens (creating it 0700 if needed) the evidence directory of the
// incident directory dir. meta is recorded in every entry written through
// the store.
func Open(dir string, meta Meta) (*Store, error) {
	s := &Store{dir: Dir(dir), meta: meta, names: map[string]bool{}}
	if err := fsutil.MkdirPrivate(s.dir); err != nil {
		return nil, fmt.Errorf("evidence directory: %w", err)
	}
	if err := fsutil.MkdirPrivate(filepath.Join(s.dir, partialDir)); err != nil {
		return nil, fmt.Errorf("evidence directory: %w", err)
	}
	if err := s.withLock(func() error { return s.rescan() }); err != nil {
		return nil, err
	}
	j, err := incident.OpenJournal(incident.JournalFile(dir))
	if err != nil {
		return nil, fmt.Errorf("evidence anchors: %w", err)
	}
	s.journal = j
	return s, nil
}

// SetSigningKey makes every commit re-sign the manifest (manifest.sig)
// with key, so that the signature always covers the newest entry.
func (s *Store) SetSigningKey(key ed25519.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signKey = key
}

// Dir is the evidence directory.
func (s *Store) Dir() string { return s.dir }

// Meta is the identity recorded with each entry.
func (s *Store) Meta() Meta { return s.meta }

// rescan reads the manifest when it changed size since we last looked
// (another irctl process may have appended), to learn the last seq, the
// chain hash and the names in use. Called with the lock held.
func (s *Store) rescan() error {
	mp := filepath.Join(s.dir, ManifestName)
	fi, err := os.Stat(mp)
	if errors.Is(err, fs.ErrNotExist) {
		s.size, s.seq, s.lines, s.prev = 0, 0, 0, ZeroHash
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Size() == s.size && s.prev != "" {
		return nil
	}
	data, err := os.ReadFile(mp)
	if err != nil {
		return err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return fmt.Errorf("%s ends with an incomplete line (a crash while appending?); run `irctl evidence verify` before collecting more", mp)
	}
	s.seq, s.prev = 0, ZeroHash
	lines := splitLines(data)
	s.lines = len(lines)
	for i, line := range lines {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("%s:%d: not a manifest entry (%v); run `irctl evidence verify`", mp, i+1, err)
		}
		s.seq = e.Seq
		s.names[e.Name] = true
		s.prev = lineHash(line)
	}
	s.size = int64(len(data))
	return nil
}

// splitLines splits newline-terminated lines, without the newlines.
func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i])
		data = data[i+1:]
	}
	return out
}

func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// withLock runs fn holding the store's mutex and an exclusive flock on the
// lock file, so that concurrent writers in this process and in other irctl
// processes append to the manifest one at a time.
func (s *Store) withLock(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockStore(s.dir, false)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// lockStore flocks the lock file of the evidence directory evdir:
// exclusive for writers, shared for readers (verify, pack) that need the
// manifest and the files to agree while they read them.
func lockStore(evdir string, shared bool) (unlock func(), err error) {
	p := filepath.Join(evdir, lockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil && shared {
		// A reader of a directory it may not write (a copy on read-only
		// media) needs no lock if nobody can write there either.
		if f, err = os.Open(p); errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return func() {}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil && !shared {
		f.Close()
		return nil, err
	}
	lock := fsutil.Lock
	if shared {
		lock = fsutil.RLock
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the evidence manifest: %w", err)
	}
	return func() { fsutil.Unlock(f); f.Close() }, nil
}

var segment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+=-]*$`)

// checkName accepts relative slash-separated names whose segments are
// plain file names (no "..", no hidden files), outside the names the store
// itself uses.
func checkName(name string) error {
	if name == "" || len(name) > 400 || path.Clean(name) != name || strings.HasPrefix(name, "/") {
		return fmt.Errorf("evidence name %q: want a relative path like logs/pod.log", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if !segment.MatchString(seg) || len(seg) > 200 {
			return fmt.Errorf("evidence name %q: segment %q must be letters, digits, and . _ - @ + = (not first)", name, seg)
		}
	}
	if name == ManifestName || name == SigName {
		return fmt.Errorf("evidence name %q is reserved", name)
	}
	return nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._@+=-]+`)

// SafeName turns free text (a pod name, a table, a query summary) into a
// valid name segment.
func SafeName(s string) string {
	s = strings.Trim(unsafeChars.ReplaceAllString(s, "_"), "._-")
	if len(s) > 120 {
		s = s[:120]
	}
	if s == "" {
		return "item"
	}
	return s
}

// Writer streams one item into the store. Write to it, then Commit; Close
// without Commit discards the item.
type Writer struct {
	s     *Store
	name  string
	src   Source
	start time.Time
	f     *os.File
	bw    *bufio.Writer
	h     hash.Hash
	n     int64
	err   error
	done  bool
}

// Create starts an item that will be named name (or name with a numeric
// suffix if name is taken) and records src as its source.
func (s *Store) Create(name string, src Source) (*Writer, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, partialDir), SafeName(path.Base(name))+".*")
	if err != nil {
		return nil, err
	}
	// CreateTemp's 0600 is subject to the umask; make it exactly 0600.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &Writer{s: s, name: name, src: src, start: time.Now().UTC(), f: f, bw: bufio.NewWriterSize(&writebackFile{f: f}, 256<<10), h: sha256.New()}, nil
}

// writebackChunk is how much an item's file may hold that the kernel has
// not been asked to write to disk yet.
const writebackChunk = 8 << 20

// writebackFile writes to f and starts the disk writeback of every
// writebackChunk bytes as they are written.
type writebackFile struct {
	f            *os.File
	off, started int64
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackChunk {
		startWriteback(w.f, w.started, w.off-w.started)
		w.started = w.off
	}
	return n, err
}

// Write appends p to the item, hashing it on the way.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("evidence: write after commit or close")
	}
	n, err := w.bw.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Close discards the item unless it was committed; it is safe to defer.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

// Commit flushes and fsyncs the item, links it into place under its name
// (or the next free name-N), and appends its manifest entry. The returned
// entry holds the final name.
func (w *Writer) Commit(extra Extra) (Entry, error) {
	if w.done {
		return Entry{}, errors.New("evidence: commit after commit or close")
	}
	if w.err != nil {
		w.Close()
		return Entry{}, w.err
	}
	defer w.Close() // removes the temporary name; the item keeps its link
	if err := w.bw.Flush(); err != nil {
		return Entry{}, err
	}
	if err := w.f.Sync(); err != nil {
		return Entry{}, err
	}
	end := time.Now().UTC()
	src := w.src
	if extra.Rows != nil {
		src.Rows = extra.Rows
	}
	src.Objects = append(src.Objects, extra.Objects...)
	if extra.Note != "" {
		if src.Note != "" {
			src.Note += "; "
		}
		src.Note += extra.Note
	}
	e := Entry{
		SHA256: hex.EncodeToString(w.h.Sum(nil)), Size: w.n, Source: src,
		CollectedStart: w.start, CollectedEnd: end, Meta: w.s.meta,
	}
	err := w.s.withLock(func() error {
		if err := w.s.rescan(); err != nil {
			return err
		}
		name, err := w.s.link(w.f.Name(), w.name)
		if err != nil {
			return err
		}
		e.Name = name
		if err := w.s.appendEntry(&e); err != nil {
			return err
		}
		return w.s.anchor(e)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("evidence %s: %w", w.name, err)
	}
	return e, nil
}

// link hard-links tmp to name, or to name-2, name-3... when name exists on
// disk or in the manifest. Called with the lock held.
func (s *Store) link(tmp, name string) (string, error) {
	if dir := path.Dir(name); dir != "." {
		if err := fsutil.MkdirPrivate(filepath.Join(s.dir, filepath.FromSlash(dir))); err != nil {
			return "", err
		}
	}
	ext := path.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 1; i < 10000; i++ {
		cand := name
		if i > 1 {
			cand = stem + "-" + strconv.Itoa(i) + ext
		}
		if s.names[cand] {
			continue
		}
		dst := filepath.Join(s.dir, filepath.FromSlash(cand))
		err := os.Link(tmp, dst)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
			return "", err
		}
		return cand, nil
	}
	return "", fmt.Errorf("no free name for %s", name)
}

// appendEntry numbers e, chains it to the last line and appends it,
// fsync'd. Called with the lock held, after rescan.
func (s *Store) appendEntry(e *Entry) error {
	e.Seq = s.seq + 1
	e.Prev = s.prev
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	mp := filepath.Join(s.dir, ManifestName)
	f, err := os.OpenFile(mp, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if s.seq == 0 {
		if err := fsutil.SyncDir(s.dir); err != nil {
			return err
		}
	}
	s.seq, s.prev = e.Seq, lineHash(line)
	s.lines++
	s.size += int64(len(line) + 1)
	s.names[e.Name] = true
	return nil
}

// WriteFile stores data as one item.
func (s *Store) WriteFile(name string, src Source, data []byte, extra Extra) (Entry, error) {
	w, err := s.Create(name, src)
	if err != nil {
		return Entry{}, err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return Entry{}, err
	}
	return w.Commit(extra)
}

// ReadManifest returns the entries of the evidence in the incident
// directory dir, in manifest order. It does not check the chain (Verify
// does).
func ReadManifest(dir string) ([]Entry, error) {
	data, err := os.ReadFile(filepath.Join(Dir(dir), ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for i, line := range splitLines(data) {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return out, fmt.Errorf("%s line %d: %v", ManifestName, i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// hashFile returns a file's SHA-256 and size.
func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
