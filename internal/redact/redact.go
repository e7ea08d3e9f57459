// Package redact keeps secrets out of what irctl prints and records: every
// occurrence of a known secret inside a longer text ("Bearer <token>", an
// error quoting a value) is replaced, and so is the password of any URL.
package redact

import (
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Mark replaces a secret.
const Mark = "[redacted]"

// userinfo matches the password part of scheme://user:password@ in a URL
// anywhere in a text (database URLs, a Prometheus URL with credentials).
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):([^/\s@]*)@`)

// Set is a set of secrets, safe for concurrent use; secrets may be added
// as they become known (a runbook's secret params, the DSN password, a
// kubeconfig token). The zero value redacts URL passwords only.
type Set struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another is replaced whole
	r       *strings.Replacer
}

// New returns a Set holding secrets.
func New(secrets ...string) *Set {
	s := &Set{}
	s.Add(secrets...)
	return s
}

// Add adds secrets; empty strings are ignored.
func (s *Set) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, x := range s.secrets {
		seen[x] = true
	}
	for _, x := range secrets {
		if x != "" && !seen[x] {
			seen[x] = true
			s.secrets = append(s.secrets, x)
		}
	}
	sort.Slice(s.secrets, func(i, j int) bool { return len(s.secrets[i]) > len(s.secrets[j]) })
	pairs := make([]string, 0, 2*len(s.secrets))
	for _, x := range s.secrets {
		pairs = append(pairs, x, Mark)
	}
	s.r = strings.NewReplacer(pairs...)
}

// Secrets returns a copy of the secrets held.
func (s *Set) Secrets() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]string(nil), s.secrets...)
}

// String returns text with every secret, and every URL password, replaced.
func (s *Set) String(text string) string {
	if s != nil {
		s.mu.RLock()
		r := s.r
		s.mu.RUnlock()
		if r != nil {
			text = r.Replace(text)
		}
	}
	if strings.Contains(text, "://") {
		text = userinfo.ReplaceAllString(text, "$1:"+Mark+"@")
	}
	return text
}

// Contains reports whether text holds one of the secrets.
func (s *Set) Contains(text string) bool {
	for _, x := range s.Secrets() {
		if strings.Contains(text, x) {
			return true
		}
	}
	return false
}

// Value redacts every string inside v (strings, lists, maps), keeping the
// shape; other values are returned as they are.
func (s *Set) Value(v any) any {
	switch x := v.(type) {
	case string:
		return s.String(x)
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = s.String(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = s.Value(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = s.Value(e)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(x))
		for k, e := range x {
			out[k] = s.String(e)
		}
		return out
	}
	return v
}

// Writer redacts each Write before passing it on. Writes are redacted one
// at a time, so a secret split across two writes would pass: irctl's
// printers and its logger write whole lines or events.
func (s *Set) Writer(w io.Writer) io.Writer { return &writer{s: s, w: w} }

type writer struct {
	s *Set
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	out := w.s.String(string(p))
	if _, err := io.WriteString(w.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}
