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
// crash leaves at worst an unlisted file, which verify reports; then the
// manifest's new head is anchored in the incident journal (anchor.go).
package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
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
