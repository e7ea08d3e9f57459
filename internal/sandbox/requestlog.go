package sandbox

// The orchestrator stand-in's request log: every API request it answers
// (orchestrator_http.go) is written as a line of the log of the
// orchestrator pod that "served" it, one of the Deployment's Ready pods in
// turn, as a Service spreads requests. The stand-in kubelets
// (kubelet.go) add those lines to that pod's generated log, so that
// `kubectl logs -f` on the orchestrator shows, as it happens, what a test
// or a drill's attacker does to the API: a request with a revoked key
// prints "unauthorized" in the log of one replica, while it is followed.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/types"
)

// maxServedLines bounds the memory the request log takes; the oldest
// lines go first (a real container's log rotates too).
const maxServedLines = 100_000

// requestLog is the lines the stand-in API wrote, in time order.
type requestLog struct {
	mu    sync.Mutex
	lines []servedLine
}

// servedLine is one line, and the pod whose log it is in.
type servedLine struct {
	pod types.UID
	logLine
}

func newRequestLog() *requestLog { return &requestLog{} }

// add appends a line to pod's log, stamped now. The time is taken under
// the lock, so that a reader that saw the log up to some instant has seen
// every line stamped before it.
func (l *requestLog) add(pod types.UID, level, text string) {
	if l == nil || pod == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := time.Now()
	if len(l.lines) >= maxServedLines {
		l.lines = append(l.lines[:0], l.lines[len(l.lines)-maxServedLines/2:]...)
	}
	l.lines = append(l.lines, servedLine{pod, logLine{t, appTime(t) + " " + level + " " + text}})
}

// between returns pod's lines stamped in [from, to).
func (l *requestLog) between(pod types.UID, from, to time.Time) []logLine {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.lines), func(i int) bool { return !l.lines[i].t.Before(from) })
	var out []logLine
	for ; i < len(l.lines) && l.lines[i].t.Before(to); i++ {
		if l.lines[i].pod == pod {
			out = append(out, l.lines[i].logLine)
		}
	}
	return out
}

// withServed merges pod's served lines into gen's, in time order.
func withServed(gen containerLog, l *requestLog, pod types.UID) containerLog {
	return func(from, to time.Time) []logLine {
		out := append(gen(from, to), l.between(pod, from, to)...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
		return out
	}
}

// requestLine is the orchestrator's log line for an API request, in the
// format of the story's (logstory.go), plus what a refusal's reason and an
// accepted credential are: a refused request logs error="unauthorized:
// ..." (401), "denied: ..." (403) or "failed: ..." (5xx), the words the
// LLM-orchestrator incident runbook's monitoring step greps for.
func requestLine(userID int64, ip, method, path string, status int, duration time.Duration, info *requestInfo, ua string, bytes int64) (level, text string) {
	user := "-"
	if userID != 0 {
		user = strconv.FormatInt(userID, 10)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "request user_id=%s ip=%s action=api_call method=%s resource=%s status=%d duration_ms=%d",
		user, logValue(ip), logValue(method), logValue(path), status, duration.Milliseconds())
	if info.auth != "" {
		b.WriteString(" auth=" + info.auth)
	}
	if info.keyPrefix != "" {
		b.WriteString(" key_prefix=" + logValue(info.keyPrefix))
	}
	level = "INFO"
	if status >= 400 {
		level = "WARN"
		word := "failed"
		switch {
		case status == 401:
			word = "unauthorized"
		case status == 403:
			word = "denied"
		case status < 500:
			word = "rejected"
		}
		if status >= 500 {
			level = "ERROR"
		}
		reason := info.reason
		if reason == "" {
			reason = strings.ToLower(statusText(status))
		}
		fmt.Fprintf(&b, " error=%q", word+": "+reason)
	}
	fmt.Fprintf(&b, " ua=%q bytes=%d", ua, bytes)
	return level, b.String()
}

func statusText(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 503:
		return "Service Unavailable"
	}
	return "status " + strconv.Itoa(code)
}

// logValue is a logfmt value: as it is, or quoted when it holds a space,
// a quote, an equals sign or a character that is not printable (a
// request's path is the caller's to choose).
func logValue(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// requestInfo is what the API handler learnt about a request, for its log
// line.
type requestInfo struct {
	userID    int64
	auth      string // api_key or jwt, when accepted
	keyPrefix string
	reason    string // why it was refused
}
