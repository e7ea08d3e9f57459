package incident

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// Declaring into an existing state directory leaves its mode alone: with
// --state-dir /tmp, a chmod 0700 would lock every other user out of /tmp.
func TestDeclareDoesNotChmodAnExistingStateDir(t *testing.T) {
	dir := t.TempDir()
	shared := os.ModePerm | os.ModeSticky // /tmp's 1777
	if err := os.Chmod(dir, shared); err != nil {
		t.Fatal(err)
	}
	inc, err := Declare(dir, "P1", "t", "op", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != shared {
		t.Errorf("state dir mode changed to %v (%v)", fi.Mode(), err)
	}
	if fi, err := os.Stat(inc.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("incident dir: %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

// journalWriterEnv makes the test binary a journal writer (see
// TestJournalSeqIsUniqueAcrossConcurrentWriters).
const journalWriterEnv = "IRCTL_TEST_JOURNAL_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(journalWriterEnv); path != "" {
		os.Exit(appendMany(path, "process", 300))
	}
	os.Exit(m.Run())
}

func appendMany(path, writer string, n int) int {
	j, err := OpenJournal(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; i < n; i++ {
		// Records of varying length, so that a torn or interleaved write
		// would show as a broken line.
		if _, err := j.Append(Record{Kind: KindOutcome, Step: writer + "-" + strconv.Itoa(i), Plan: strings.Repeat("x", i%97)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// Two goroutines with a Journal handle each and two other processes
// append at once: every record gets its own seq, the seqs increase
// along the file with no gap, and every line is whole.
func TestJournalSeqIsUniqueAcrossConcurrentWriters(t *testing.T) {
	inc, err := Declare(t.TempDir(), "P2", "t", "op", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := inc.JournalPath()
	var procs []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), journalWriterEnv+"="+path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	var wg sync.WaitGroup
	for _, w := range []string{"goroutine-a", "goroutine-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if appendMany(path, w, 300) != 0 {
				t.Error("writer", w, "failed")
			}
		}()
	}
	wg.Wait()
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			t.Errorf("writer process: %v", err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 1200 {
		t.Fatalf("%d lines, want 1200", len(lines))
	}
	steps := map[string]bool{}
	for i, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d is torn or interleaved: %v: %.80s", i+1, err, line)
		}
		if r.Seq != i+1 {
			t.Fatalf("line %d has seq %d", i+1, r.Seq)
		}
		steps[r.Step] = true
	}
	if len(steps) != 900 { // the two processes write the same step names
		t.Errorf("%d distinct steps, want 900", len(steps))
	}
}
