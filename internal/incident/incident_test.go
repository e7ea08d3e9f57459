package incident

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestDeclareNumbersIncidentsPerDayWithoutCollisions(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	ids := make(chan string, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inc, err := Declare(dir, "P1", "t", "op", now)
			if err != nil {
				t.Error(err)
				return
			}
			ids <- inc.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("duplicate ID %s", id)
		}
		seen[id] = true
	}
	if !seen["SEC-20261122-001"] || !seen["SEC-20261122-010"] {
		t.Errorf("ids: %v", seen)
	}
	if got, _ := List(dir); len(got) != 10 {
		t.Errorf("List: %v", got)
	}
}

func TestPrivateModesWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "state")
	inc, err := Declare(dir, "P0", "t", "op", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(Record{Kind: KindIntent}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, inc.Dir(): 0o700, inc.JournalPath(): 0o600, filepath.Join(inc.Dir(), "incident.json"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
		}
	}
}

func TestJournalSequenceAndTornLastLine(t *testing.T) {
	inc, err := Declare(t.TempDir(), "P2", "t", "op", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	j, _ := inc.Journal()
	for i := 0; i < 3; i++ {
		if _, err := j.Append(Record{Kind: KindOutcome, Step: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash in the middle of a write leaves a torn last line: ignored.
	f, _ := os.OpenFile(inc.JournalPath(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"outc`)
	f.Close()
	recs, err := ReadJournal(inc.JournalPath())
	if err != nil || len(recs) != 3 || recs[2].Seq != 3 {
		t.Fatalf("records %+v, err %v", recs, err)
	}
	// A reopened journal continues the sequence.
	j2, _ := inc.Journal()
	r, _ := j2.Append(Record{Kind: KindNoop})
	if r.Seq != 4 {
		t.Errorf("seq %d, want 4", r.Seq)
	}
	if recs, err := ReadJournal(inc.JournalPath()); err != nil || len(recs) != 4 {
		t.Errorf("after appending past a torn line: %d records, %v", len(recs), err)
	}
}
