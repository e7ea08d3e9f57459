// Package fsutil writes files so that a crash leaves either nothing or the
// whole file, and the directory entry is on disk too.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFileOnce writes a new file (never overwriting) as 0600 through a
// temporary file beside it, fsync and link: the link fails if path
// appeared meanwhile, unlike a rename, so the file is written once.
func WriteFileOnce(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", path, fs.ErrExist)
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
	return syncDir(filepath.Dir(path))
}

// MkdirPrivate creates dir and any missing parents as 0700 whatever the
// umask, and fsyncs the parent of each directory it creates, so that a
// crash cannot lose a directory whose files were already fsync'd. A
// directory that exists already is left as it is, mode included: the
// state directory may be a shared one like /tmp.
func MkdirPrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirPrivate(parent); err != nil {
			return err
		}
	}
	// Another process may create it meanwhile: that is as good.
	if err := Mkdir(dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// Mkdir creates one directory as 0700 whatever the umask and fsyncs its
// parent; it fails if dir exists.
func Mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// syncDir is SyncDir; tests replace it to see which directories are synced.
var syncDir = SyncDir

// SyncDir fsyncs a directory, making the entries created in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
