package redact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// KeyFile is the name of an incident's fingerprint key, in its directory.
const KeyFile = "fingerprint.key"

// Fingerprint identifies a secret value without revealing it:
// HMAC-SHA256 under key, the first 16 hex digits. An unsalted hash would
// let anyone holding a journal test guesses offline (a weak password, a
// value known from elsewhere) and match the same value across incidents;
// a keyed one needs the incident's key, kept 0600 beside the journal.
func Fingerprint(key, value []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(value)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))[:16]
}

// LoadKey returns the fingerprint key of the incident directory dir,
// creating it (32 random bytes, 0600, written once with O_EXCL) on first
// use; two processes creating it at once both end up with the one that
// won.
func LoadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("fingerprint key %s: %d bytes, want 32", path, len(b))
			}
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("fingerprint key: %w", err)
		}
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if err := writeExcl(path, key); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("fingerprint key: %w", err)
		} else if err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("fingerprint key %s: created and removed meanwhile", path)
}

// writeExcl writes a new file via a temporary file and a hard link, so the
// key appears whole or not at all.
func writeExcl(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fingerprint-*")
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
	return os.Link(tmp.Name(), path)
}

var (
	processKeyOnce sync.Once
	processKey     []byte
)

// ProcessKey is a random key for this process only, for fingerprints
// where no incident directory is at hand: they cannot be compared with
// another run's.
func ProcessKey() []byte {
	processKeyOnce.Do(func() {
		processKey = make([]byte, 32)
		_, _ = rand.Read(processKey)
	})
	return processKey
}
