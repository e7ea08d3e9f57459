package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/rest"
)

// TestFaultsHitBeforeOrAfterTheServer: a Before fault never reaches the
// server, an After fault does and its answer is lost; the ledger counts
// what the server applied, and the choice of faults repeats with the seed.
func TestFaultsHitBeforeOrAfterTheServer(t *testing.T) {
	var reached atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer up.Close()

	send := func(p *Proxy, method string) (int, error) {
		c, err := rest.HTTPClientFor(p.Config())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(method, p.Config().Host+"/api/v1/namespaces/ns/pods/a", strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	for _, tc := range []struct {
		fault   Fault
		status  int // 0: the connection drops
		reached int32
	}{
		{Fault{Conflict, Before}, 409, 0},
		{Fault{TooMany, Before}, 429, 0},
		{Fault{ServerError, Before}, 500, 0},
		{Fault{Drop, Before}, 0, 0},
		{Fault{ServerError, After}, 500, 1},
		{Fault{Drop, After}, 0, 1},
	} {
		reached.Store(0)
		p, err := Start(Options{Upstream: &rest.Config{Host: up.URL}, EveryNthWrite: 1, WriteFaults: []Fault{tc.fault}})
		if err != nil {
			t.Fatal(err)
		}
		status, err := send(p, http.MethodPatch)
		if status != tc.status || (tc.status == 0) != (err != nil) || reached.Load() != tc.reached {
			t.Errorf("%s: status %d, error %v, reached the server %d times; want %d, %d", tc.fault, status, err, reached.Load(), tc.status, tc.reached)
		}
		if applied := p.Applied(); len(applied) != int(tc.reached) {
			t.Errorf("%s: ledger %v", tc.fault, applied)
		}
		// Reads pass untouched when EveryNthRead is 0.
		if status, err := send(p, http.MethodGet); status != 200 || err != nil {
			t.Errorf("%s: a read got %d, %v", tc.fault, status, err)
		}
		p.Close()
	}

	// Every third write, from a seeded menu: the same seed, the same faults.
	run := func(seed uint64) []string {
		p, err := Start(Options{Upstream: &rest.Config{Host: up.URL}, EveryNthWrite: 3, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for range 30 {
			_, _ = send(p, http.MethodPost)
		}
		var out []string
		for _, in := range p.Injected() {
			out = append(out, in.Fault.String())
		}
		return out
	}
	a, b := run(5), run(5)
	if len(a) != 10 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("seeded runs differ or miscount: %v vs %v", a, b)
	}
}
