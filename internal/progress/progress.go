// Package progress carries how far a long step is from the action doing
// it to the one place that shows it: actions count through a *Counter in
// their environment and never print; on a terminal the engine draws a
// Bar on stderr, one line redrawn in place; anywhere else nothing is
// drawn.
package progress

import (
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/term"
)

// Counter is what an action reports progress through. A nil *Counter
// ignores every report, so actions call it unconditionally.
type Counter struct {
	done, total atomic.Int64
	unit        atomic.Pointer[string]
	// sink is told each change; it must be safe for concurrent calls.
	sink func(done, total int64, unit string)
}

// NewCounter returns a counter that passes every change to sink.
func NewCounter(sink func(done, total int64, unit string)) *Counter {
	return &Counter{sink: sink}
}

// Start says how many units of work there are (0: not known) and what
// they are ("pods", "rows"), and resets the count.
func (c *Counter) Start(total int64, unit string) {
	if c == nil {
		return
	}
	c.unit.Store(&unit)
	c.total.Store(total)
	c.done.Store(0)
	c.notify()
}

// Grow adds n units to the total, for work discovered as it goes.
func (c *Counter) Grow(n int64) {
	if c == nil {
		return
	}
	c.total.Add(n)
	c.notify()
}

// Add counts n more units done; safe from many goroutines.
func (c *Counter) Add(n int64) {
	if c == nil {
		return
	}
	c.done.Add(n)
	c.notify()
}

// Set reports done of total units.
func (c *Counter) Set(done, total int64) {
	if c == nil {
		return
	}
	c.total.Store(total)
	c.done.Store(done)
	c.notify()
}

// Done returns the count so far.
func (c *Counter) Done() int64 {
	if c == nil {
		return 0
	}
	return c.done.Load()
}

func (c *Counter) notify() {
	if c.sink == nil {
		return
	}
	unit := ""
	if u := c.unit.Load(); u != nil {
		unit = *u
	}
	c.sink(c.done.Load(), c.total.Load(), unit)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Color reports whether w may get colour: a terminal, and NO_COLOR
// (https://no-color.org) unset or empty.
func Color(w io.Writer) bool {
	return IsTerminal(w) && os.Getenv("NO_COLOR") == ""
}

// Bars makes one Bar per step on w when w is a terminal and the output is
// for people (not -o json); otherwise it returns nil, and nothing is drawn.
func Bars(w io.Writer, jsonOutput bool) func(label string) *Bar {
	if jsonOutput || !IsTerminal(w) {
		return nil
	}
	color := Color(w)
	return func(label string) *Bar { return NewBar(w, label, color) }
}
