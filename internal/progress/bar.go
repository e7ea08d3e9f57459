package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// redrawEvery bounds how often a Bar redraws, so thousands of reports a
// second cost a few writes.
const redrawEvery = 100 * time.Millisecond

// Bar draws one progress line on a terminal, redrawn in place: count,
// percentage, rate and time left.
type Bar struct {
	w     io.Writer
	label string
	color bool
	now   func() time.Time

	mu     sync.Mutex
	start  time.Time
	last   time.Time
	drawn  bool
	closed bool
}

// NewBar returns a bar writing to w, which must be a terminal (Bars
// decides that); color adds ANSI colour.
func NewBar(w io.Writer, label string, color bool) *Bar {
	return &Bar{w: w, label: label, color: color, now: time.Now}
}

// Counter returns a Counter whose reports this bar draws.
func (b *Bar) Counter() *Counter { return NewCounter(b.Update) }

// Update draws done of total, at most every redrawEvery (the last unit
// always shows).
func (b *Bar) Update(done, total int64, unit string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	if b.closed || (b.drawn && now.Sub(b.last) < redrawEvery && (total == 0 || done < total)) {
		return
	}
	b.last, b.drawn = now, true
	fmt.Fprint(b.w, "\r\x1b[K"+b.line(done, total, unit, now.Sub(b.start)))
}

// Close clears the line, so the step's result prints where it was.
func (b *Bar) Close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn && !b.closed {
		fmt.Fprint(b.w, "\r\x1b[K")
	}
	b.closed = true
}

func (b *Bar) line(done, total int64, unit string, elapsed time.Duration) string {
	text := Format(b.label, done, total, unit, elapsed)
	if b.color {
		return "\x1b[36m" + text + "\x1b[0m"
	}
	return text
}

// Format is a progress line: "label  1,200/5,000 pods  24%  400/s  ~10s left".
// The rate is the average since the start; the time left assumes it holds.
func Format(label string, done, total int64, unit string, elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(label + "  " + thousands(done))
	if total > 0 {
		b.WriteString("/" + thousands(total))
	}
	if unit != "" {
		b.WriteString(" " + unit)
	}
	if total > 0 {
		fmt.Fprintf(&b, "  %d%%", min(done*100/total, 100))
	}
	if elapsed < time.Second || done == 0 {
		return b.String()
	}
	rate := float64(done) / elapsed.Seconds()
	fmt.Fprintf(&b, "  %s/s", thousands(int64(rate+0.5)))
	if total > done {
		left := time.Duration(float64(total-done) / rate * float64(time.Second))
		b.WriteString("  ~" + roundLeft(left) + " left")
	}
	return b.String()
}

// roundLeft keeps an estimate as precise as it deserves.
func roundLeft(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(10 * time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
