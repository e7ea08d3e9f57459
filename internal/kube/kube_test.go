package kube

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// A container log that streams for longer than the request timeout: the
// ordinary client cuts it, Stream reads it to the end (the step's context
// is what bounds it).
func TestLogStreamsOutliveTheRequestTimeout(t *testing.T) {
	requestTimeout = 300 * time.Millisecond
	t.Cleanup(func() { requestTimeout = RequestTimeout })
	const lines = 15
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/pods/p/log") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		for i := range lines {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, err := NewClients(&rest.Config{Host: srv.URL}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.Timeout != requestTimeout {
		t.Errorf("ordinary requests: timeout %s, want %s", c.Config.Timeout, requestTimeout)
	}
	get := func(stream bool) (string, error) {
		cs := c.Core
		if stream {
			cs = c.Stream
		}
		rc, err := cs.CoreV1().Pods("ns").GetLogs("p", &corev1.PodLogOptions{}).Stream(t.Context())
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	if out, err := get(false); err == nil {
		t.Errorf("the ordinary client read a %d-line stream past its timeout (%d lines): the test proves nothing", lines, strings.Count(out, "\n"))
	}
	out, err := get(true)
	if err != nil || strings.Count(out, "\n") != lines {
		t.Fatalf("Stream: %d of %d lines, %v", strings.Count(out, "\n"), lines, err)
	}
}

// An explicit --request-timeout applies to streams too, as in kubectl.
func TestExplicitRequestTimeoutAppliesToStreams(t *testing.T) {
	c, err := NewClients(&rest.Config{Host: "https://example.invalid", Timeout: 5 * time.Second}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.Timeout != 5*time.Second {
		t.Errorf("timeout %s", c.Config.Timeout)
	}
	rc, ok := c.Stream.CoreV1().RESTClient().(*rest.RESTClient)
	if !ok || rc.Client == nil || rc.Client.Timeout != 5*time.Second {
		t.Errorf("Stream's HTTP client timeout: %v", rc)
	}
}
