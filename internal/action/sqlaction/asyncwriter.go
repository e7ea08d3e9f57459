package sqlaction

import (
	"io"
	"sync/atomic"
)

// asyncWriter hands what is written to it to a goroutine that writes it
// on, through a few reused buffers: memory stays bounded (asyncDepth+1
// buffers) and the producer only waits when the writer is that far behind.
type asyncWriter struct {
	ch   chan []byte
	free chan []byte
	done chan error
	err  atomic.Pointer[error]
}

const (
	asyncDepth = 8
	asyncBuf   = csvFlushAt + 64<<10
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{ch: make(chan []byte, asyncDepth), free: make(chan []byte, asyncDepth+1), done: make(chan error, 1)}
	for range asyncDepth + 1 {
		a.free <- make([]byte, 0, asyncBuf)
	}
	go func() {
		var err error
		for b := range a.ch {
			if err == nil {
				if _, err = w.Write(b); err != nil {
					a.err.Store(&err)
				}
			}
			a.free <- b[:0]
		}
		a.done <- err
	}()
	return a
}

// Write copies p into a free buffer and queues it; a failed write of an
// earlier buffer is returned here, so the producer stops early.
func (a *asyncWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if e := a.err.Load(); e != nil {
			return n, *e
		}
		b := <-a.free
		k := min(len(p), cap(b))
		b = append(b, p[:k]...)
		a.ch <- b
		p, n = p[k:], n+k
	}
	return n, nil
}

// Swap queues b, which the caller gives up, and returns a free buffer in
// exchange: the hand-over costs no copy.
func (a *asyncWriter) Swap(b []byte) ([]byte, error) {
	if e := a.err.Load(); e != nil {
		return b[:0], *e
	}
	free := <-a.free
	a.ch <- b
	return free, nil
}

// Close waits until everything queued is written.
func (a *asyncWriter) Close() error {
	close(a.ch)
	return <-a.done
}
