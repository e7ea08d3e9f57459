package incident

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"irctl.dev/irctl/internal/fsutil"
)

// Journal appends records to an incident's journal. Every append holds an
// exclusive flock on the journal file while it reads the last seq and
// writes the next record, so writers in several goroutines or processes
// (the engine and the evidence store, or two irctl runs) never number two
// records alike nor interleave their lines.
type Journal struct {
	path string

	mu   sync.Mutex
	seq  int   // the last seq in the journal when it was size bytes long
	size int64 // journal size after our last look, -1 before the first
}

// Journal opens the incident's journal for appending.
func (i *Incident) Journal() (*Journal, error) { return OpenJournal(i.JournalPath()) }

// OpenJournal opens the journal at path for appending. It reads the
// journal once, so that a corrupt one is reported before anything is
// done; a torn last line (irctl died mid-write, before the fsync that
// would have acknowledged the record) is cut off by the next append.
func OpenJournal(path string) (*Journal, error) {
	if _, err := ReadJournal(path); err != nil {
		return nil, err
	}
	return &Journal{path: path, size: -1}, nil
}

// Append writes r as one line numbered after the journal's last record,
// and fsyncs before returning: a record that Append returned for is on
// disk. It returns r as written, with its Seq.
func (j *Journal) Append(r Record) (Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return r, err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return r, err
	}
	if err := fsutil.Lock(f); err != nil {
		return r, fmt.Errorf("locking the journal %s: %w", j.path, err)
	}
	defer fsutil.Unlock(f)
	size, err := j.catchUp(f)
	if err != nil {
		return r, fmt.Errorf("journal %s: %w", j.path, err)
	}
	r.Seq = j.seq + 1
	b, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	b = append(b, '\n')
	if _, err := f.Write(b); err != nil {
		// The size is unknown now: read the journal again next time.
		j.size = -1
		return r, err
	}
	if err := f.Sync(); err != nil {
		j.size = -1
		return r, err
	}
	if size == 0 {
		// A new journal: its directory entry must be durable too.
		if err := fsutil.SyncDir(filepath.Dir(j.path)); err != nil {
			j.size = -1
			return r, err
		}
	}
	j.seq, j.size = r.Seq, size+int64(len(b))
	return r, nil
}

// catchUp learns the last seq from what other writers appended since our
// last look, cutting off a torn last line. Called with the flock held; it
// returns the journal's size.
func (j *Journal) catchUp(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == j.size {
		return size, nil
	}
	from := j.size
	if from < 0 || size < from {
		from, j.seq = 0, 0
	}
	tail := make([]byte, size-from)
	if _, err := f.ReadAt(tail, from); err != nil && err != io.EOF {
		return 0, err
	}
	if keep := int64(bytes.LastIndexByte(tail, '\n') + 1); keep < int64(len(tail)) {
		// A writer died mid-line: no record was acknowledged there.
		if err := f.Truncate(from + keep); err != nil {
			return 0, err
		}
		tail, size = tail[:keep], from+keep
	}
	if lines := bytes.Split(bytes.TrimSuffix(tail, []byte{'\n'}), []byte{'\n'}); len(tail) > 0 {
		last := lines[len(lines)-1]
		var rec struct {
			Seq int `json:"seq"`
		}
		if err := json.Unmarshal(last, &rec); err != nil {
			return 0, fmt.Errorf("last record is corrupt: %v", err)
		}
		j.seq = rec.Seq
	}
	j.size = size
	return size, nil
}
