package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedactsSubstringsAndURLPasswords(t *testing.T) {
	s := New("tok-123", "tok-123456", "")
	s.Add("pw")
	cases := map[string]string{
		"Bearer tok-123":                             "Bearer [redacted]",
		"Bearer tok-123456 and tok-123":              "Bearer [redacted] and [redacted]",
		"dial postgres://app:s3cr3t@db:5432/x: fail": "dial postgres://app:[redacted]@db:5432/x: fail",
		"http://u:p@prom:9090/api":                   "http://u:[redacted]@prom:9090/api",
		"http://prom:9090/api":                       "http://prom:9090/api",
		"nothing here":                               "nothing here",
		"a pw in text":                               "a [redacted] in text",
	}
	for in, want := range cases {
		if got := s.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	v := s.Value(map[string]any{"a": []any{"x tok-123 y", 3}, "b": []string{"tok-123"}})
	if got := fmt.Sprint(v); got != "map[a:[x [redacted] y 3] b:[[redacted]]]" {
		t.Errorf("Value = %s", got)
	}
	var b bytes.Buffer
	fmt.Fprintf(s.Writer(&b), "error: token %s rejected\n", "tok-123456")
	if b.String() != "error: token [redacted] rejected\n" {
		t.Errorf("Writer wrote %q", b.String())
	}
	if !s.Contains("xx tok-123") || s.Contains("tok-12") {
		t.Error("Contains")
	}
	var zero *Set
	if zero.String("postgres://a:b@h/d") != "postgres://a:[redacted]@h/d" {
		t.Error("a nil Set still redacts URL passwords")
	}
}

func TestFingerprintKeyIsPrivateStableAndKeyed(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(k1, k2))
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	other, _ := LoadKey(t.TempDir())
	v := []byte("hunter2")
	a, b := Fingerprint(k1, v), Fingerprint(other, v)
	if a == b || !strings.HasPrefix(a, "hmac-sha256:") || len(a) != len("hmac-sha256:")+16 {
		t.Fatalf("fingerprints %s %s: want keyed, 16 hex digits", a, b)
	}
	sum := sha256.Sum256(v)
	if strings.Contains(a, hex.EncodeToString(sum[:])[:16]) {
		t.Fatal("the fingerprint is the unsalted SHA-256")
	}
	if Fingerprint(k1, v) != a {
		t.Fatal("not stable")
	}
}
