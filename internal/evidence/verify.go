package evidence

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"irctl.dev/irctl/internal/fsutil"
)

// Problem is one thing wrong with the evidence, naming the item.
type Problem struct {
	Item string `json:"item"` // evidence name, "manifest line N", or manifest.sig
	Msg  string `json:"problem"`
}

func (p Problem) String() string { return p.Item + ": " + p.Msg }

// Report is what Verify found.
type Report struct {
	Items    int       `json:"items"`    // entries in the manifest
	Verified int       `json:"verified"` // items whose file matched its entry
	Problems []Problem `json:"problems"`
	// Notes are observations that do not make the evidence fail (a
	// signature present but not checked, an interrupted collection).
	Notes []string `json:"notes,omitempty"`
	// Signature is "valid", "not checked", "none", or "invalid".
	Signature string `json:"signature"`
	// Anchor says whether the manifest matches the anchors the incident
	// journal holds for it: "matches (N entries)", "MISMATCH", "none
	// (nothing committed)" or "no journal".
	Anchor string `json:"journal_anchor"`
}

// OK reports whether verification found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Summary is one line for the end of `irctl evidence verify`.
func (r *Report) Summary() string {
	verdict := "OK"
	if !r.OK() {
		verdict = fmt.Sprintf("FAILED: %d problem(s)", len(r.Problems))
	}
	return fmt.Sprintf("%s: %d item(s) in the manifest, %d verified; journal anchor %s; signature %s", verdict, r.Items, r.Verified, r.Anchor, r.Signature)
}

func (r *Report) add(item, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Item: item, Msg: fmt.Sprintf(format, args...)})
}

// Verify re-hashes every item of the evidence in the incident directory
// dir against the manifest and checks the manifest's hash chain. It
// reports, naming the item, any file changed, missing or not in the
// manifest, and any manifest line edited, removed or reordered, and,
// against the anchors in the incident journal, the newest lines removed
// or rewritten. With pub, manifest.sig must hold a valid signature by
// that key over the whole manifest. The error is for failures to read at
// all. It reads a consistent snapshot: commits wait until it is done.
func Verify(dir string, pub ed25519.PublicKey) (*Report, error) {
	var r *Report
	err := readLocked(dir, func(data []byte, sig []byte) error {
		r = verifySnapshot(dir, data, sig, pub)
		return nil
	})
	return r, err
}

// verifySnapshot checks the manifest bytes data and signature sig (nil:
// none) against the files and the journal.
func verifySnapshot(dir string, data, sig []byte, pub ed25519.PublicKey) *Report {
	evdir := Dir(dir)
	r := &Report{}
	if data == nil {
		// Nothing committed yet; any file present is reported as extra.
		r.Notes = append(r.Notes, "no "+ManifestName+": no evidence has been committed")
	}
	listed := checkManifest(r, evdir, data)
	checkExtraFiles(r, evdir, listed)
	checkAnchors(r, dir, data)
	checkSignature(r, sig, data, pub)
	return r
}

// readLocked runs fn with the manifest and signature as they are under a
// shared lock on the store, so that no commit changes them (nor adds a
// file) meanwhile. Either is nil when absent.
func readLocked(dir string, fn func(manifest, sig []byte) error) error {
	evdir := Dir(dir)
	if fi, err := os.Stat(evdir); err != nil || !fi.IsDir() {
		return fmt.Errorf("no evidence directory at %s (nothing collected yet?)", evdir)
	}
	unlock, err := lockStore(evdir, true)
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(filepath.Join(evdir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		data = nil
	} else if err != nil {
		return err
	}
	sig, err := os.ReadFile(filepath.Join(evdir, SigName))
	if errors.Is(err, fs.ErrNotExist) {
		sig = nil
	} else if err != nil {
		return err
	}
	return fn(data, sig)
}

// checkManifest walks the manifest lines, checking the chain and each
// listed file; it returns the names listed.
func checkManifest(r *Report, evdir string, data []byte) map[string]bool {
	listed := map[string]bool{}
	lines := splitLines(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		r.add(fmt.Sprintf("manifest line %d", len(lines)), "incomplete last line (a crash while appending, or the file was cut)")
	}
	firstLine := map[string]int{}
	prevHash, lastSeq := ZeroHash, 0
	for i, line := range lines {
		n := i + 1
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			r.add(fmt.Sprintf("manifest line %d", n), "not a manifest entry (edited?): %v", err)
			prevHash = lineHash(line)
			continue
		}
		r.Items++
		item := e.Name
		if item == "" {
			item = fmt.Sprintf("manifest line %d", n)
		}
		switch {
		case e.Seq == lastSeq+1:
		case e.Seq > lastSeq+1:
			r.add(item, "manifest line %d has seq %d after seq %d: entries %s are missing (manifest lines removed)", n, e.Seq, lastSeq, seqRange(lastSeq+1, e.Seq-1))
		default:
			r.add(item, "manifest line %d has seq %d after seq %d: manifest lines reordered or duplicated", n, e.Seq, lastSeq)
		}
		if e.Seq > lastSeq {
			lastSeq = e.Seq
		}
		if e.Prev != prevHash {
			if n == 1 {
				r.add(item, "manifest line 1: chain broken: prev is not the start of the chain (lines removed or reordered)")
			} else {
				r.add(item, "manifest line %d: chain broken: prev does not match the hash of line %d (that line was edited, or lines were removed or reordered)", n, n-1)
			}
		}
		prevHash = lineHash(line)
		if err := checkName(e.Name); err != nil {
			r.add(item, "manifest line %d: %v", n, err)
			continue
		}
		if first, dup := firstLine[e.Name]; dup {
			r.add(item, "listed twice in the manifest (lines %d and %d)", first, n)
			continue
		}
		firstLine[e.Name] = n
		listed[e.Name] = true
		if checkItem(r, evdir, e, n) {
			r.Verified++
		}
	}
	return listed
}

func seqRange(a, b int) string {
	if a == b {
		return strconv.Itoa(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// checkItem compares one file with its entry.
func checkItem(r *Report, evdir string, e Entry, line int) bool {
	p := filepath.Join(evdir, filepath.FromSlash(e.Name))
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		r.add(e.Name, "missing (listed at manifest line %d)", line)
		return false
	}
	if err != nil {
		r.add(e.Name, "cannot read: %v", err)
		return false
	}
	if !fi.Mode().IsRegular() {
		r.add(e.Name, "not a regular file (%s)", fi.Mode().Type())
		return false
	}
	sum, size, err := hashFile(p)
	if err != nil {
		r.add(e.Name, "cannot read: %v", err)
		return false
	}
	if sum != e.SHA256 || size != e.Size {
		r.add(e.Name, "changed: now sha256 %s, %d bytes; manifest line %d says sha256 %s, %d bytes", short(sum), size, line, short(e.SHA256), e.Size)
		return false
	}
	if fi.Mode().Perm() != 0o600 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s: mode %04o, want 0600", e.Name, fi.Mode().Perm()))
	}
	return true
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// checkExtraFiles reports files that the manifest does not list.
func checkExtraFiles(r *Report, evdir string, listed map[string]bool) {
	var extra []string
	_ = filepath.WalkDir(evdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			r.add(p, "cannot read: %v", err)
			return nil
		}
		rel, _ := filepath.Rel(evdir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			if rel == partialDir {
				partials, _ := os.ReadDir(p)
				for _, pe := range partials {
					r.Notes = append(r.Notes, fmt.Sprintf("%s/%s: an item whose collection was interrupted before it was committed (not evidence)", partialDir, pe.Name()))
				}
				return fs.SkipDir
			}
			if fi, err := d.Info(); err == nil && fi.Mode().Perm() != 0o700 {
				r.Notes = append(r.Notes, fmt.Sprintf("%s/: mode %04o, want 0700", rel, fi.Mode().Perm()))
			}
			return nil
		}
		if rel == ManifestName || rel == SigName || rel == lockName {
			return nil
		}
		if !listed[rel] {
			extra = append(extra, rel)
		}
		return nil
	})
	sort.Strings(extra)
	for _, x := range extra {
		r.add(x, "extra file, not in the manifest")
	}
}

// Signature file format (text, one field per line).
const sigHeader = "irctl evidence signature v1"

type signature struct {
	keyFP       string
	signedBytes int
	manifestSum string
	sig         []byte
}

// KeyFingerprint names a public key: sha256: and the first 16 bytes in hex.
func KeyFingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

func checkSignature(r *Report, raw, manifest []byte, pub ed25519.PublicKey) {
	if raw == nil {
		if pub != nil {
			r.Signature = "missing"
			r.add(SigName, "missing: the manifest is not signed (irctl evidence sign --key FILE)")
		} else {
			r.Signature = "none"
		}
		return
	}
	if pub == nil {
		r.Signature = "present, not checked"
		r.Notes = append(r.Notes, SigName+" is present but was not checked: pass --public-key FILE")
		return
	}
	s, err := parseSignature(raw)
	if err != nil {
		r.Signature = "invalid"
		r.add(SigName, "%v", err)
		return
	}
	if fp := KeyFingerprint(pub); s.keyFP != fp {
		r.Signature = "invalid"
		r.add(SigName, "signed by key %s, not by the given key %s", s.keyFP, fp)
		return
	}
	if s.signedBytes > len(manifest) {
		r.Signature = "invalid"
		r.add(SigName, "covers %d bytes of manifest but the manifest has only %d (lines removed after signing)", s.signedBytes, len(manifest))
		return
	}
	signed := manifest[:s.signedBytes]
	if !ed25519.Verify(pub, signed, s.sig) {
		r.Signature = "invalid"
		r.add(SigName, "bad signature: the manifest was changed after signing")
		return
	}
	r.Signature = "valid (" + s.keyFP + ")"
	if rest := manifest[s.signedBytes:]; len(rest) > 0 {
		r.Signature = "valid for the first " + strconv.Itoa(bytes.Count(signed, []byte{'\n'})) + " line(s) only"
		r.add(SigName, "%d manifest line(s) appended after signing are not covered by the signature (sign again)", bytes.Count(rest, []byte{'\n'}))
	}
}

func parseSignature(raw []byte) (*signature, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	if !sc.Scan() || sc.Text() != sigHeader {
		return nil, errors.New("not an irctl evidence signature")
	}
	s := &signature{}
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", sc.Text())
		}
		var err error
		switch k {
		case "algorithm":
			if v != "ed25519" {
				return nil, fmt.Errorf("unsupported algorithm %q", v)
			}
		case "key":
			s.keyFP = v
		case "signed-bytes":
			s.signedBytes, err = strconv.Atoi(v)
		case "manifest-sha256":
			s.manifestSum = v
		case "signature":
			s.sig, err = base64.StdEncoding.DecodeString(v)
		}
		if err != nil {
			return nil, fmt.Errorf("malformed %s: %v", k, err)
		}
	}
	if s.keyFP == "" || s.sig == nil || s.signedBytes <= 0 {
		return nil, errors.New("incomplete signature file")
	}
	return s, nil
}

// Sign writes manifest.sig: an ed25519 signature over the manifest's bytes
// as they are now, replacing an earlier signature.
func Sign(dir string, key ed25519.PrivateKey) (*SignInfo, error) {
	evdir := Dir(dir)
	if _, err := os.Stat(evdir); err != nil {
		return nil, fmt.Errorf("no evidence manifest at %s: nothing to sign", evdir)
	}
	unlock, err := lockStore(evdir, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	manifest, err := os.ReadFile(filepath.Join(evdir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no evidence manifest at %s: nothing to sign", evdir)
	}
	if err != nil {
		return nil, err
	}
	return signManifest(evdir, manifest, key)
}

// signManifest writes manifest.sig over manifest, the manifest's bytes as
// read under the store lock.
func signManifest(evdir string, manifest []byte, key ed25519.PrivateKey) (*SignInfo, error) {
	if len(manifest) == 0 || manifest[len(manifest)-1] != '\n' {
		return nil, errors.New("the manifest is empty or ends with an incomplete line: run irctl evidence verify")
	}
	pub := key.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(manifest)
	sig := ed25519.Sign(key, manifest)
	info := &SignInfo{Key: KeyFingerprint(pub), Lines: bytes.Count(manifest, []byte{'\n'}), ManifestSHA256: hex.EncodeToString(sum[:])}
	text := fmt.Sprintf("%s\nalgorithm: ed25519\nkey: %s\nsigned-bytes: %d\nmanifest-sha256: %s\nsignature: %s\n",
		sigHeader, info.Key, len(manifest), info.ManifestSHA256, base64.StdEncoding.EncodeToString(sig))
	if err := replaceFile(filepath.Join(evdir, SigName), []byte(text)); err != nil {
		return nil, err
	}
	return info, nil
}

// SignInfo describes a signature just written.
type SignInfo struct {
	Key            string `json:"key"`
	Lines          int    `json:"lines"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// replaceFile writes data to path (0600) through a temporary file, fsync
// and rename.
func replaceFile(path string, data []byte) error {
	tmpDir := filepath.Join(filepath.Dir(path), partialDir)
	if _, err := os.Stat(tmpDir); err != nil {
		tmpDir = filepath.Dir(path)
	}
	return fsutil.ReplaceFile(tmpDir, path, data)
}
