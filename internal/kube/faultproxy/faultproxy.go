// Package faultproxy is a reverse proxy, for tests, that stands in front of
// a real kube-apiserver and injects the faults a write can meet on a bad
// day: a 409 Conflict, a 429 with Retry-After, a 500, and a connection
// dropped either before the request reaches the server or after the server
// has applied it (the response is lost). Faults are deterministic: every
// Nth matching write (and optionally read) gets one, chosen by a seeded
// generator from the menu given.
//
// It also keeps a ledger of the writes the server applied (2xx responses
// to POST, PUT, PATCH and DELETE, dry runs excluded), so a test can show
// that nothing was applied twice. Only tests import this package; the
// irctl binary does not link it.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kind is what goes wrong.
type Kind string

const (
	Conflict    Kind = "409"  // Status Conflict
	TooMany     Kind = "429"  // Status TooManyRequests with Retry-After
	ServerError Kind = "500"  // Status InternalError with Retry-After
	Drop        Kind = "drop" // the connection is closed without a response
)

// When is whether the fault hits before the request reaches the server, or
// after the server has handled it (the server's response is thrown away).
type When string

const (
	Before When = "before"
	After  When = "after"
)

// Fault is one kind of fault at one moment.
type Fault struct {
	Kind Kind
	When When
}

func (f Fault) String() string { return string(f.Kind) + "-" + string(f.When) }

// AllWriteFaults is every fault a write can meet. A 409 or 429 comes from
// the server before it applies anything, so they come only Before.
var AllWriteFaults = []Fault{
	{Conflict, Before}, {TooMany, Before}, {ServerError, Before}, {Drop, Before},
	{ServerError, After}, {Drop, After},
}

// Options configures a Proxy.
type Options struct {
	// Upstream is the real API server, with its credentials.
	Upstream *rest.Config
	// Match chooses the requests faults may hit and the ledger records;
	// nil matches all.
	Match func(*http.Request) bool
	// EveryNthWrite injects a fault into every Nth matching write (POST,
	// PUT, PATCH, DELETE); 0 never.
	EveryNthWrite int
	// WriteFaults is the menu for writes (default AllWriteFaults).
	WriteFaults []Fault
	// EveryNthRead and ReadFaults do the same for GETs (not watches).
	EveryNthRead int
	ReadFaults   []Fault
	// Seed seeds the choice of faults.
	Seed uint64
	// RetryAfter is the Retry-After of injected 429s and 500s, in seconds
	// (default 1).
	RetryAfter int
}

// Injection is one fault injected.
type Injection struct {
	Fault  Fault
	Method string
	Path   string
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	opts     Options
	srv      *httptest.Server
	upstream *url.URL
	rt       http.RoundTripper
	rp       *httputil.ReverseProxy

	mu       sync.Mutex
	rng      *rand.Rand
	enabled  bool
	writes   int
	reads    int
	injected []Injection
	applied  map[string]int
}

// Start starts a proxy in front of opts.Upstream, injecting faults.
func Start(opts Options) (*Proxy, error) {
	if opts.RetryAfter == 0 {
		opts.RetryAfter = 1
	}
	if opts.WriteFaults == nil {
		opts.WriteFaults = AllWriteFaults
	}
	if opts.ReadFaults == nil {
		opts.ReadFaults = []Fault{{TooMany, Before}, {Drop, Before}}
	}
	up, err := url.Parse(opts.Upstream.Host)
	if err != nil {
		return nil, fmt.Errorf("upstream host: %w", err)
	}
	// The proxy speaks to the server as the upstream config's identity;
	// clients of the proxy present none.
	rt, err := rest.TransportFor(opts.Upstream)
	if err != nil {
		return nil, err
	}
	p := &Proxy{opts: opts, upstream: up, rt: rt, enabled: true, applied: map[string]int{},
		rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(up); r.Out.Host = up.Host },
		Transport:     rt,
		FlushInterval: -1, // watches and log streams pass through at once
	}
	// HTTP/1.1 only (httptest's default): a dropped connection is then
	// one request's connection, as with a proxy or load balancer failing.
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.StartTLS()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// SetEnabled turns fault injection (not the ledger) on or off.
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// Config is a client config for the proxy (which authenticates upstream).
func (p *Proxy) Config() *rest.Config {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	return &rest.Config{Host: p.srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
}

// WriteKubeconfig writes a kubeconfig for the proxy to path, with the
// given default namespace.
func (p *Proxy) WriteKubeconfig(path, namespace string) error {
	c := p.Config()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["faultproxy"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	kc.AuthInfos["faultproxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["faultproxy"] = &clientcmdapi.Context{Cluster: "faultproxy", AuthInfo: "faultproxy", Namespace: namespace}
	kc.CurrentContext = "faultproxy"
	return clientcmd.WriteToFile(*kc, path)
}

// Injected returns the faults injected so far, in order.
func (p *Proxy) Injected() []Injection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Injection(nil), p.injected...)
}

// Counts sums Injected by fault.
func (p *Proxy) Counts() map[Fault]int {
	out := map[Fault]int{}
	for _, in := range p.Injected() {
		out[in.Fault]++
	}
	return out
}

// Applied returns, for every matching "METHOD path" that the server
// applied at least once, how many times it did, and clears the ledger.
func (p *Proxy) Applied() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.applied
	p.applied = map[string]int{}
	return out
}

// Twice lists the entries of an Applied ledger applied more than once.
func Twice(applied map[string]int) []string {
	var out []string
	for k, n := range applied {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s applied %d times", k, n))
		}
	}
	sort.Strings(out)
	return out
}

func isWrite(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch || m == http.MethodDelete
}

// pick decides whether r gets a fault, and which.
func (p *Proxy) pick(r *http.Request) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return Fault{}, false
	}
	var n, every int
	var menu []Fault
	switch {
	case isWrite(r.Method):
		p.writes++
		n, every, menu = p.writes, p.opts.EveryNthWrite, p.opts.WriteFaults
	case r.Method == http.MethodGet && r.URL.Query().Get("watch") != "true":
		p.reads++
		n, every, menu = p.reads, p.opts.EveryNthRead, p.opts.ReadFaults
	}
	if every == 0 || n%every != 0 || len(menu) == 0 {
		return Fault{}, false
	}
	f := menu[p.rng.IntN(len(menu))]
	p.injected = append(p.injected, Injection{Fault: f, Method: r.Method, Path: r.URL.Path})
	return f, true
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	r.Header.Del("Authorization")
	matched := p.opts.Match == nil || p.opts.Match(r)
	var f Fault
	var hit bool
	if matched {
		f, hit = p.pick(r)
	}
	ledger := matched && isWrite(r.Method) && r.URL.Query().Get("dryRun") == ""
	if !hit && !ledger {
		p.rp.ServeHTTP(w, r)
		return
	}
	if hit && f.When == Before {
		p.fail(w, r, f)
		return
	}
	resp, err := p.forward(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if ledger && resp.StatusCode/100 == 2 {
		p.mu.Lock()
		p.applied[r.Method+" "+r.URL.Path]++
		p.mu.Unlock()
	}
	if hit {
		p.fail(w, r, f) // After: the server's answer is lost
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// forward sends r to the server and returns its response.
func (p *Proxy) forward(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	u := *p.upstream
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		if k != "Connection" && k != "Authorization" {
			out.Header[k] = v
		}
	}
	return p.rt.RoundTrip(out)
}

// fail answers r with fault f.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, f Fault) {
	if f.Kind == Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection too
	}
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  fmt.Sprintf("faultproxy: injected %s on %s %s", f, r.Method, r.URL.Path),
	}
	switch f.Kind {
	case Conflict:
		st.Code, st.Reason = http.StatusConflict, metav1.StatusReasonConflict
	case TooMany:
		st.Code, st.Reason = http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: int32(p.opts.RetryAfter)}
		w.Header().Set("Retry-After", strconv.Itoa(p.opts.RetryAfter))
	case ServerError:
		st.Code, st.Reason = http.StatusInternalServerError, metav1.StatusReasonInternalError
		w.Header().Set("Retry-After", strconv.Itoa(p.opts.RetryAfter))
	}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_, _ = w.Write(b)
}

// InNamespace matches requests for objects in namespace ns.
func InNamespace(ns string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/namespaces/"+ns+"/") }
}
