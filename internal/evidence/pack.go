package evidence

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Pack writes the evidence of the incident directory dir to w as a
// reproducible tar.gz: PAX headers, names sorted under evidence/, every
// time set to the last manifest entry's collection end, uid/gid 0 and no
// user names, and a gzip header with neither time nor name. Packing the
// same evidence twice gives the same bytes. Only the manifest, its
// signature and the files the manifest lists are packed; each file is
// re-hashed as it is copied and a mismatch fails the pack.
//
// The whole pack runs under the store's shared lock on one reading of
// the manifest (and signature), which it first verifies like Verify: a
// commit meanwhile waits, so the bundle's manifest lists exactly the
// files it holds. Evidence that fails verification is not packed: the
// error is a *NotVerified with the report.
func Pack(dir string, w io.Writer) (*PackInfo, error) {
	var info *PackInfo
	err := readLocked(dir, func(manifest, sig []byte) error {
		if r := verifySnapshot(dir, manifest, sig, nil); !r.OK() {
			return &NotVerified{Report: r}
		}
		var err error
		info, err = pack(dir, manifest, sig, w)
		return err
	})
	return info, err
}

// NotVerified is Pack's refusal of evidence that fails verification.
type NotVerified struct{ Report *Report }

func (e *NotVerified) Error() string {
	ps := e.Report.Problems
	first := make([]string, 0, 3)
	for _, p := range ps[:min(3, len(ps))] {
		first = append(first, p.String())
	}
	more := ""
	if len(ps) > 3 {
		more = fmt.Sprintf("; and %d more", len(ps)-3)
	}
	return fmt.Sprintf("evidence failed verification, not packed: %s%s", strings.Join(first, "; "), more)
}

// pack writes the bundle of the manifest and sig as read under the lock.
func pack(dir string, manifest, sig []byte, w io.Writer) (*PackInfo, error) {
	evdir := Dir(dir)
	var entries []Entry
	for i, line := range splitLines(manifest) {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s line %d: %v", ManifestName, i+1, err)
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no evidence in %s to pack", evdir)
	}
	mtime := time.Unix(0, 0).UTC()
	for _, e := range entries {
		if e.CollectedEnd.After(mtime) {
			mtime = e.CollectedEnd
		}
	}
	mtime = mtime.Truncate(time.Second)

	want := map[string]Entry{}
	files := []string{ManifestName}
	if sig != nil {
		files = append(files, SigName)
	}
	for _, e := range entries {
		if err := checkName(e.Name); err != nil {
			return nil, err
		}
		want[e.Name] = e
		files = append(files, e.Name)
	}
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type member struct {
		name string
		dir  bool
	}
	members := []member{{name: DirName + "/", dir: true}}
	for d := range dirs {
		members = append(members, member{name: DirName + "/" + d + "/", dir: true})
	}
	for _, f := range files {
		members = append(members, member{name: DirName + "/" + f})
	}
	sort.Slice(members, func(i, j int) bool { return members[i].name < members[j].name })

	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// The zero Header: no name, no modification time, OS "unknown".
	tw := tar.NewWriter(gz)
	info := &PackInfo{Items: len(entries), ModTime: mtime}
	for _, m := range members {
		hdr := &tar.Header{
			Name: m.name, ModTime: mtime, Uid: 0, Gid: 0, Format: tar.FormatPAX,
		}
		if m.dir {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o700
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			continue
		}
		rel := m.name[len(DirName)+1:]
		var err error
		switch rel {
		case ManifestName:
			err = packBytes(tw, hdr, manifest)
		case SigName:
			err = packBytes(tw, hdr, sig)
		default:
			err = packFile(tw, hdr, filepath.Join(evdir, filepath.FromSlash(rel)), want[rel], rel)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return info, nil
}

// PackInfo describes a bundle just written.
type PackInfo struct {
	Items   int       `json:"items"`
	ModTime time.Time `json:"mtime"`
}

// packBytes writes a member read earlier (the manifest and signature are
// packed as read under the lock, not read again).
func packBytes(tw *tar.Writer, hdr *tar.Header, data []byte) error {
	hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o600, int64(len(data))
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func packFile(tw *tar.Writer, hdr *tar.Header, p string, e Entry, name string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: missing; run irctl evidence verify", name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", name)
	}
	hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o600, fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if e.Name != "" && (n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256) {
		return fmt.Errorf("%s: does not match its manifest entry; run irctl evidence verify", name)
	}
	return nil
}
