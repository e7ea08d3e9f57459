package sandbox

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// LatencyProxy is a TCP proxy on 127.0.0.1 that delays every byte by a
// fixed duration in each direction, as a network between a responder and a
// remote control plane would. It delays without throttling: data keeps
// being read while earlier data waits out its delay, so a connection
// carrying many concurrent requests (HTTP/2) sees the delay once per
// direction, not once per request in turn. TLS passes through untouched.
type LatencyProxy struct {
	Addr  string        // host:port clients dial
	Delay time.Duration // added in each direction

	upstream string
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartLatencyProxy listens on a free 127.0.0.1 port and forwards each
// connection to upstream (host:port), adding delay in each direction.
func StartLatencyProxy(upstream string, delay time.Duration) (*LatencyProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &LatencyProxy{Addr: ln.Addr().String(), Delay: delay, upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *LatencyProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track records c for Close; it reports false (and closes c) once the proxy
// is closing.
func (p *LatencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *LatencyProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *LatencyProxy) serve(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	// The connection's set-up crosses the network too: one round trip.
	time.Sleep(p.Delay)
	server, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
	if err != nil {
		return
	}
	time.Sleep(p.Delay)
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	for _, c := range []net.Conn{client, server} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { delayCopy(server, client, p.Delay) })
	wg.Go(func() { delayCopy(client, server, p.Delay) })
	wg.Wait()
}

// chunk is data read at a time, due for writing delay later.
type chunk struct {
	data []byte
	due  time.Time
	err  error // the read's end (io.EOF or a failure), after data
}

// delayCopy copies src to dst, writing each chunk delay after it was read.
// When src ends it half-closes dst (after the delay), so that the far side
// sees the end in order; on a write failure it closes src to stop the
// reader.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	queue := make(chan chunk, 4096)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				queue <- chunk{data: buf[:n], due: time.Now().Add(delay)}
			}
			if err != nil {
				queue <- chunk{due: time.Now().Add(delay), err: err}
				return
			}
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for c := range queue {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		if c.err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(c.err, io.EOF) {
				_ = tc.CloseWrite()
			} else {
				dst.Close()
			}
			continue
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			for range queue { // let the reader finish
			}
			return
		}
	}
}

// Close stops accepting, closes every proxied connection and waits for
// the proxy's goroutines to end.
func (p *LatencyProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}
