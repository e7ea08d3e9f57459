package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
