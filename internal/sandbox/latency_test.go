package sandbox

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer echoes each connection until its client half-closes, then
// closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func TestLatencyProxyDelaysEachDirection(t *testing.T) {
	const delay = 25 * time.Millisecond
	p, err := StartLatencyProxy(echoServer(t), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	// A byte cannot come back before it has waited out the delay on the
	// way there and on the way back: a lower bound, which no slowness of
	// the machine can break.
	for i := range 3 {
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*delay {
			t.Errorf("round trip %d took %s, want at least %s", i, rtt, 2*delay)
		}
		if buf[0] != byte(i) {
			t.Errorf("echoed %d, want %d", buf[0], i)
		}
	}
}

func TestLatencyProxyCarriesStreamsIntactAndHalfCloses(t *testing.T) {
	p, err := StartLatencyProxy(echoServer(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			want := make([]byte, 3<<20)
			_, _ = rand.Read(want)
			var got []byte
			var readErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, readErr = io.ReadAll(c) // ends when the echo server closes
			}()
			if _, err := c.Write(want); err != nil {
				t.Error(err)
				return
			}
			// The half-close must reach the server, or it never closes
			// and ReadAll never ends.
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Error("the echo did not end after the client's half-close")
				return
			}
			if readErr != nil || !bytes.Equal(got, want) {
				t.Errorf("echoed %d bytes (err %v), want the %d sent, unchanged", len(got), readErr, len(want))
			}
		})
	}
	wg.Wait()
}

func TestLatencyProxyCloseEndsConnections(t *testing.T) {
	p, err := StartLatencyProxy(echoServer(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes after Close, want the connection closed", n)
	}
	if _, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}
