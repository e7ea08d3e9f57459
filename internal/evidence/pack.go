package evidence

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"
)

// Pack writes the evidence of the incident directory dir to w as a
// reproducible tar.gz: PAX headers, names sorted under evidence/, every
// time set to the last manifest entry's collection end, uid/gid 0 and no
// user names, and a gzip header with neither time nor name. Packing the
// same evidence twice gives the same bytes. Only the manifest, its
// signature and the files the manifest lists are packed; each file is
// re-hashed as it is copied and a mismatch fails the pack.
func Pack(dir string, w io.Writer) (*PackInfo, error) {
	evdir := Dir(dir)
	entries, err := ReadManifest(dir)
	if err != nil {
		return nil, err
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
	if _, err := os.Stat(filepath.Join(evdir, SigName)); err == nil {
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
		if err := packFile(tw, hdr, filepath.Join(evdir, filepath.FromSlash(rel)), want[rel], rel); err != nil {
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
