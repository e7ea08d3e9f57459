package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestWriteFileOnceNeverOverwrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "evidence.txt")
	if err := WriteFileOnce(p, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileOnce(p, []byte("second")); err == nil {
		t.Fatal("second write succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Errorf("content %q", b)
	}
}

// Files are 0600 whatever the umask, and no temporary file is left behind.
func TestWritesAre0600AndLeaveNoTemporaryFile(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	once, replaced := filepath.Join(dir, "once"), filepath.Join(dir, "replaced")
	if err := WriteFileOnce(once, []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"v1", "v2"} {
		if err := ReplaceFile(dir, replaced, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(replaced); string(b) != "v2" {
		t.Errorf("replaced holds %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (a temporary file left?)", len(entries))
	}
	for _, p := range []string{once, replaced} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, fi.Mode().Perm(), err)
		}
	}
}

// recordSyncs makes syncDir record the directories it is asked to sync.
func recordSyncs(t *testing.T) *[]string {
	var synced []string
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return SyncDir(dir)
	}
	t.Cleanup(func() { syncDir = SyncDir })
	return &synced
}

// New directories are 0700 whatever the umask, and the parent of each is
// fsync'd so that the new entry survives a crash.
func TestMkdirPrivateCreates0700AndSyncsEachParent(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	synced := recordSyncs(t)
	dir := filepath.Join(root, "a", "b", "c")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, fi.Mode().Perm(), err)
		}
	}
	want := []string{root, filepath.Join(root, "a"), filepath.Join(root, "a", "b")}
	if !slices.Equal(*synced, want) {
		t.Errorf("synced %v, want %v", *synced, want)
	}
}

// An existing directory keeps its mode: a state directory of /tmp must
// not be made 0700 (that would break every other user of /tmp).
func TestMkdirPrivateLeavesAnExistingDirectoryAlone(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, os.ModePerm|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	synced := recordSyncs(t)
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
		t.Errorf("mode changed to %v (%v)", fi.Mode(), err)
	}
	if len(*synced) != 0 {
		t.Errorf("synced %v for a directory that existed", *synced)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(f); err == nil {
		t.Error("a file was accepted as a directory")
	}
}

// Two flocks on the same file exclude each other; shared ones do not.
func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()
	if err := Lock(a); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		_ = Lock(b)
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second exclusive lock was granted while the first was held")
	case <-time.After(200 * time.Millisecond):
	}
	_ = Unlock(a)
	<-got
	_ = Unlock(b)
	c, d := open(), open()
	if err := RLock(c); err != nil {
		t.Fatal(err)
	}
	if err := RLock(d); err != nil {
		t.Fatal(err)
	}
}
