package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBarDrawsCountRateAndTimeLeft(t *testing.T) {
	var term bytes.Buffer // stands in for the terminal
	clock := &fakeClock{t: time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)}
	b := NewBar(&term, "quarantine", false)
	b.now = clock.now
	c := b.Counter()
	c.Start(5000, "pods")
	clock.t = clock.t.Add(3 * time.Second)
	c.Add(1200)
	out := term.String()
	last := out[strings.LastIndex(out, "\r\x1b[K")+4:]
	if want := "quarantine  1,200/5,000 pods  24%  400/s  ~10s left"; last != want {
		t.Errorf("line = %q, want %q", last, want)
	}
	// Reports closer together than redrawEvery are not drawn...
	n := strings.Count(term.String(), "\r")
	clock.t = clock.t.Add(10 * time.Millisecond)
	c.Add(1)
	if strings.Count(term.String(), "\r") != n {
		t.Error("redrawn within redrawEvery")
	}
	// ...but the last one is.
	c.Set(5000, 5000)
	if !strings.HasSuffix(term.String(), "5,000/5,000 pods  100%  1,661/s") {
		t.Errorf("final line: %q", term.String())
	}
	b.Close()
	if !strings.HasSuffix(term.String(), "\r\x1b[K") {
		t.Error("Close must clear the line")
	}
	c.Add(1)
	if strings.HasSuffix(term.String(), "left") || !strings.HasSuffix(term.String(), "\r\x1b[K") {
		t.Error("drawn after Close")
	}
}

func TestBarColourOnlyWhenAsked(t *testing.T) {
	var plain, colour bytes.Buffer
	NewBar(&plain, "x", false).Update(1, 2, "rows")
	NewBar(&colour, "x", true).Update(1, 2, "rows")
	if strings.Contains(plain.String(), "\x1b[36m") || !strings.Contains(colour.String(), "\x1b[36m") {
		t.Errorf("plain %q colour %q", plain.String(), colour.String())
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		unit        string
		elapsed     time.Duration
		want        string
	}{
		{0, 0, "rows", 0, "s  0 rows"},
		{1500000, 0, "rows", 10 * time.Second, "s  1,500,000 rows  150,000/s"},
		{10, 1000, "", 10 * time.Second, "s  10/1,000  1%  1/s  ~16m30s left"},
		{3, 4, "nodes", 500 * time.Millisecond, "s  3/4 nodes  75%"},
	} {
		if got := Format("s", tc.done, tc.total, tc.unit, tc.elapsed); got != tc.want {
			t.Errorf("Format(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

// Off a terminal, or with -o json, there is no bar at all.
func TestNothingDrawnOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	if Bars(&buf, false) != nil {
		t.Error("a bar for a non-terminal writer")
	}
	var nilCounter *Counter
	nilCounter.Start(10, "pods") // actions report unconditionally
	nilCounter.Add(1)
	nilCounter.Set(2, 10)
	if buf.Len() != 0 {
		t.Errorf("drew %q", buf.String())
	}
}

func TestNoColorDisablesColour(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	var buf bytes.Buffer
	if Color(&buf) {
		t.Error("colour for a buffer")
	}
}

func TestCounterIsSafeConcurrently(t *testing.T) {
	var mu sync.Mutex
	var last int64
	c := NewCounter(func(done, _ int64, _ string) { mu.Lock(); last = max(last, done); mu.Unlock() })
	c.Start(1000, "pods")
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Add(1)
			}
		}()
	}
	wg.Wait()
	if c.Done() != 1000 || last != 1000 {
		t.Errorf("done %d, last seen %d", c.Done(), last)
	}
}
