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

	"irctl.dev/irctl/internal/fsutil"
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
		if err := fsutil.WriteFileOnce(path, key); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("fingerprint key: %w", err)
		} else if err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("fingerprint key %s: created and removed meanwhile", path)
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
