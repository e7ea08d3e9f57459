// Package fsutil writes files so that a crash leaves either nothing or the
// whole file, and the directory entry is on disk too.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileOnce writes a new file (never overwriting) as 0600 through a
// temporary file beside it, fsync and link: the link fails if path
// appeared meanwhile, unlike a rename, so the file is written once.
func WriteFileOnce(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite", path)
	}
	return write(filepath.Dir(path), path, data, os.Link)
}

// ReplaceFile writes data to path (0600) through a temporary file in
// tmpDir (on the same file system as path), fsync and rename.
func ReplaceFile(tmpDir, path string, data []byte) error {
	return write(tmpDir, path, data, os.Rename)
}

func write(tmpDir, path string, data []byte, place func(oldpath, newpath string) error) error {
	tmp, err := os.CreateTemp(tmpDir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := place(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the entries created in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
