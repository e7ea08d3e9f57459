package evidence

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a file's range to disk
// without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE), so that
// the fsync at Commit waits for the last few megabytes instead of for the
// whole item: a multi-gigabyte export would otherwise sit in the page cache
// until the end and then stall on one long flush.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
