package evidence

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"irctl.dev/irctl/internal/fsutil"
)

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
