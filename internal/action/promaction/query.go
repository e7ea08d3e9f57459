// Package promaction holds the Prometheus actions: instant queries over
// the Prometheus HTTP API (the cluster-compromise runbook: `promtool query instant ...` on the
// monitoring pod), whose raw response is kept as evidence.
package promaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/runbook"
)

// Query runs an instant PromQL query.
type Query struct {
	// Client is the HTTP client; nil means http.DefaultClient (the step's
	// timeout bounds each request either way).
	Client *http.Client
}

// minInterval keeps retries from hammering Prometheus back to back.
const minInterval = 100 * time.Millisecond

// maxResponse bounds the response read into memory and saved.
const maxResponse = 64 << 20

func (Query) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "prom.query",
		Timeout:     2 * time.Minute, // the step's default deadline
		Table:       true,            // `expect:` judges its rows
		Description: "Run an instant PromQL query (GET /api/v1/query) against Prometheus; show the series as a table and save the raw response as evidence.",
		Params: []runbook.ParamDef{
			{Name: "url", Type: runbook.String, Required: true, Description: "Prometheus base URL, e.g. http://prometheus.monitoring.svc:9090"},
			{Name: "query", Type: runbook.String, Required: true, Description: "PromQL, e.g. rate(container_network_receive_bytes_total[5m]) > 1000000"},
			{Name: "time", Type: runbook.String, Description: "evaluation time, RFC 3339 (unset: now)"},
			{Name: "timeout", Type: runbook.Duration, Default: 30 * time.Second, Description: "request timeout"},
			{Name: "name", Type: runbook.String, Default: "prometheus-query", Description: "evidence file name without extension"},
			{Name: "retries", Type: runbook.Int, Description: "further queries, interval apart, while the result has no series: for a metric or rule that is not there yet (rules a ConfigMap volume and reload sidecar still have to bring in); only for checks that expect a series, and bounded by the step's deadline (the last answer is judged and saved)"},
			{Name: "interval", Type: runbook.Duration, Default: 2 * time.Second, Description: "wait between queries when retrying (at least 100ms)"},
		},
		Validate: func(p runbook.Params) error {
			if p.Duration("timeout") <= 0 {
				return fmt.Errorf("timeout must be more than 0")
			}
			if p.String("name") == "" {
				return fmt.Errorf("name is empty")
			}
			if n := p.Int("retries"); n < 0 || n > 1000 {
				return fmt.Errorf("retries %d: want 0 to 1000", n)
			}
			if p.Int("retries") > 0 && p.Duration("interval") < minInterval {
				return fmt.Errorf("interval %s: want at least %s between retries", p.Duration("interval"), minInterval)
			}
			if _, err := baseURL(p.String("url")); err != nil {
				return err
			}
			if t := p.String("time"); t != "" {
				if _, err := time.Parse(time.RFC3339, t); err != nil {
					return fmt.Errorf("time %q: want RFC 3339, like 2026-11-22T03:00:00Z", t)
				}
			}
			return nil
		},
	}
}

// baseURL checks a Prometheus URL: http or https with a host.
func baseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http(s)://host[:port][/path]", redact(s))
	}
	return u, nil
}

// redact hides a password in a URL, for messages and the manifest.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "[unparseable URL]"
}

func (q Query) Plan(_ context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	if _, err := baseURL(p.String("url")); err != nil {
		return nil, err
	}
	note := ""
	if env.DryRun == action.DryRunServer {
		note = " (collected under --dry-run=server too: a query is a read)"
	}
	if n := p.Int("retries"); n > 0 {
		note = fmt.Sprintf("; while it has no series, asked again up to %d times, %s apart (up to %s, within the step's deadline)", n, p.Duration("interval"), time.Duration(n)*p.Duration("interval")) + note
	}
	return &action.Plan{Summary: fmt.Sprintf("instant query %q on %s; the response saved as evidence %s%s", p.String("query"), redact(p.String("url")), evidenceName(p), note)}, nil
}

func evidenceName(p runbook.Params) string {
	base := p.String("name")
	return "prometheus/" + evidence.SafeName(base) + ".json"
}

// Response is the Prometheus API envelope.
type Response struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type series struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`  // vector: [ts, "v"]
	Values [][]any           `json:"values"` // matrix: [[ts, "v"], ...]
}

func (q Query) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	store, err := env.Evidence()
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	retries := int(p.Int("retries"))
	var a *answer
	for attempt := 0; ; attempt++ {
		if a, err = q.query(ctx, p); err != nil {
			return nil, err
		}
		// Another try must fit in the step's deadline with its wait and
		// a whole request; else this answer is the one judged and saved.
		last := attempt >= retries
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < p.Duration("interval")+p.Duration("timeout") {
			last = true
		}
		if a.n > 0 || last {
			a.attempts = attempt + 1
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(p.Duration("interval")):
		}
	}
	rows := int64(a.n)
	note := fmt.Sprintf("GET /api/v1/query, HTTP %d, resultType %s, %s", a.status, a.resultType, a.took.Round(time.Millisecond))
	if retries > 0 {
		note += fmt.Sprintf(", query %d of at most %d", a.attempts, retries+1)
	}
	e, err := store.WriteFile(evidenceName(p), evidence.Source{
		Kind: evidence.KindPrometheus, Server: redact(p.String("url")), Query: p.String("query"), Rows: &rows, Note: note,
	}, a.body, evidence.Extra{})
	if err != nil {
		return nil, err
	}
	summary := fmt.Sprintf("%d series (%s); response saved as evidence %s (sha256 %s)", a.n, a.resultType, e.Name, e.SHA256[:12])
	if retries > 0 {
		summary += fmt.Sprintf("; %d of at most %d queries", a.attempts, retries+1)
	}
	if len(a.warnings) > 0 {
		summary += "; prometheus warns: " + strings.Join(a.warnings, "; ")
	}
	return &action.Result{Summary: summary, Table: a.table}, nil
}

// answer is one successful query's response.
type answer struct {
	body       []byte
	status     int
	took       time.Duration
	table      *action.Table
	n          int
	resultType string
	warnings   []string
	attempts   int
}

// query runs the instant query once, within the timeout param.
func (q Query) query(ctx context.Context, p runbook.Params) (*answer, error) {
	u, err := baseURL(p.String("url"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.Duration("timeout"))
	defer cancel()
	u = u.JoinPath("api", "v1", "query")
	v := url.Values{"query": {p.String("query")}}
	if t := p.String("time"); t != "" {
		v.Set("time", t)
	}
	u.RawQuery = v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	client := q.Client
	if client == nil {
		client = http.DefaultClient
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("prometheus %s: %v", redact(p.String("url")), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: reading the response: %v", redact(p.String("url")), err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("prometheus response larger than %d MiB; narrow the query", maxResponse>>20)
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus %s answered HTTP %d with something that is not its API's JSON", redact(p.String("url")), resp.StatusCode)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus query failed (HTTP %d, %s): %s", resp.StatusCode, r.ErrorType, r.Error)
	}
	table, n, resultType, err := ResultTable(r.Data)
	if err != nil {
		return nil, err
	}
	return &answer{body: body, status: resp.StatusCode, took: time.Since(start), table: table, n: n, resultType: resultType, warnings: r.Warnings}, nil
}

// ResultTable turns a query's data into a table: one row per series for a
// vector (metric, value, time) or matrix (metric, samples, last value,
// last time), one row for a scalar or string.
func ResultTable(raw json.RawMessage) (*action.Table, int, string, error) {
	var d queryData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, 0, "", fmt.Errorf("prometheus data: %v", err)
	}
	switch d.ResultType {
	case "vector", "matrix":
		var ss []series
		if err := json.Unmarshal(d.Result, &ss); err != nil {
			return nil, 0, "", fmt.Errorf("prometheus %s: %v", d.ResultType, err)
		}
		t := &action.Table{Columns: []string{"METRIC", "VALUE", "TIME"}}
		if d.ResultType == "matrix" {
			t.Columns = []string{"METRIC", "SAMPLES", "LAST VALUE", "LAST TIME"}
		}
		for _, s := range ss {
			if d.ResultType == "vector" {
				val, ts := sample(s.Value)
				t.Rows = append(t.Rows, []string{metricText(s.Metric), val, ts})
				continue
			}
			val, ts := "", ""
			if len(s.Values) > 0 {
				val, ts = sample(s.Values[len(s.Values)-1])
			}
			t.Rows = append(t.Rows, []string{metricText(s.Metric), strconv.Itoa(len(s.Values)), val, ts})
		}
		t.Total = len(t.Rows)
		return t, len(ss), d.ResultType, nil
	case "scalar", "string":
		var v []any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, 0, "", fmt.Errorf("prometheus %s: %v", d.ResultType, err)
		}
		val, ts := sample(v)
		return &action.Table{Columns: []string{"VALUE", "TIME"}, Rows: [][]string{{val, ts}}, Total: 1}, 1, d.ResultType, nil
	}
	return nil, 0, "", fmt.Errorf("prometheus: unknown resultType %q", d.ResultType)
}

// sample renders [unix seconds, "value"].
func sample(v []any) (string, string) {
	if len(v) != 2 {
		return "", ""
	}
	val := fmt.Sprint(v[1])
	ts := ""
	if f, ok := v[0].(float64); ok {
		sec := int64(f)
		ts = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC().Format(time.RFC3339)
	}
	return val, ts
}

// metricText prints a label set as name{a="b",...}.
func metricText(m map[string]string) string {
	name := m["__name__"]
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}
