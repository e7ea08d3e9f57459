package kubeaction

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// LogScan streams pod logs and keeps the lines that match a pattern and
// whose last number exceeds a threshold: the seed's
// `kubectl logs ... | grep -E ... | awk '$NF > 1000000'` check for large
// data transfers, without shell text processing.
type LogScan struct{}

// maxScanLine is the longest line matched whole; longer lines are matched
// on their first maxScanLine bytes.
const maxScanLine = 1 << 20

func (LogScan) Spec() runbook.Spec {
	return runbook.Spec{
		Name:        "k8s.log-scan",
		Timeout:     30 * time.Minute, // the step's default deadline
		Description: "Stream the logs of pods since a duration and keep the lines matching a pattern whose last number exceeds a threshold (e.g. bytes transferred); per-pod counts shown, matching lines saved as evidence.",
		Uses:        []string{runbook.UsesKubernetes},
		Params: append(podParams(), []runbook.ParamDef{
			{Name: "since", Type: runbook.Duration, Required: true, Description: "scan lines newer than this (e.g. 24h)"},
			{Name: "pattern", Type: runbook.String, Required: true, Description: "regular expression (RE2) a line must match, e.g. (download|export|bulk_query)"},
			{Name: "threshold", Type: runbook.Int, Description: "keep only lines whose last number is greater than this (e.g. 1000000 bytes); unset: every matching line"},
			{Name: "containers", Type: runbook.Strings, Description: "only these containers (unset: all)"},
			{Name: "limit_bytes", Type: runbook.Int, Default: int64(256 << 20), Description: "read at most this many bytes per container"},
			{Name: "name", Type: runbook.String, Default: "log-scan", Description: "evidence file name without extension"},
		}...),
		Validate: func(p runbook.Params) error {
			if p.Int("limit_bytes") <= 0 {
				return fmt.Errorf("limit_bytes must be more than 0")
			}
			if p.String("name") == "" {
				return fmt.Errorf("name is empty")
			}
			if _, err := regexp.Compile(p.String("pattern")); err != nil {
				return fmt.Errorf("pattern: %v", err)
			}
			return validatePodChoice(p.Strings("names"), p.String("selector"))
		},
	}
}

func (LogScan) Permissions(p runbook.Params) []kube.Permission {
	return podReadPermissions(p, kube.Permission{Verb: "get", Resource: "pods", Subresource: "log", Namespace: p.String("namespace")})
}

func (s LogScan) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	_, ns, pods, err := podsOf(ctx, env, p)
	if err != nil {
		return nil, err
	}
	var targets []logTarget
	for _, t := range logTargets(pods, p.Strings("containers")) {
		if !t.Previous {
			targets = append(targets, t)
		}
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.String()
	}
	return &action.Plan{
		Summary: fmt.Sprintf("scan the logs of %d container(s) of %d pod(s) in %s from the last %s for /%s/%s; matching lines saved as evidence%s",
			len(targets), len(pods), ns, durationText(p.Duration("since")), p.String("pattern"), thresholdText(p), collectNote(env)),
		Targets: action.Abbreviate(names, 20),
		State:   targets,
	}, nil
}

func thresholdText(p runbook.Params) string {
	if !p.Has("threshold") {
		return ""
	}
	return fmt.Sprintf(" whose last number exceeds %d", p.Int("threshold"))
}

// LineFilter decides which log lines a scan keeps.
type LineFilter struct {
	Pattern   *regexp.Regexp
	Threshold *uint64 // nil: no number needed
}

// Keep reports whether line matches, and the line's last number.
func (f LineFilter) Keep(line []byte) (bool, uint64) {
	if !f.Pattern.Match(line) {
		return false, 0
	}
	n, ok := LastNumber(line)
	if f.Threshold == nil {
		return true, n
	}
	return ok && n > *f.Threshold, n
}

// LastNumber returns the last run of decimal digits in line (like awk's
// $NF for "... bytes=2500000"), saturating at MaxUint64.
func LastNumber(line []byte) (uint64, bool) {
	end := len(line)
	for end > 0 && (line[end-1] < '0' || line[end-1] > '9') {
		end--
	}
	if end == 0 {
		return 0, false
	}
	start := end
	for start > 0 && line[start-1] >= '0' && line[start-1] <= '9' {
		start--
	}
	n, err := strconv.ParseUint(string(line[start:end]), 10, 64)
	if err != nil {
		return math.MaxUint64, true
	}
	return n, true
}

// ScanCount is one container's scan.
type ScanCount struct {
	Lines, Matches int64
	Largest        uint64
}

// ScanLines reads r line by line and calls keep for each line filter
// keeps; lines longer than maxScanLine are matched on their beginning.
func ScanLines(r io.Reader, f LineFilter, keep func(line []byte)) (ScanCount, error) {
	var c ScanCount
	err := ReadLines(r, func(line []byte) {
		c.Lines++
		if ok, n := f.Keep(line); ok {
			c.Matches++
			c.Largest = max(c.Largest, n)
			keep(line)
		}
	})
	return c, err
}

// ReadLines calls each for every line of r, without its line ending; a
// line longer than maxScanLine is cut to its beginning. The slice is only
// valid during the call. It returns nil at the end of r.
func ReadLines(r io.Reader, each func(line []byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line := chunk
		if err == bufio.ErrBufferFull {
			if len(long) < maxScanLine {
				long = append(long, chunk[:min(len(chunk), maxScanLine-len(long))]...)
			}
			continue
		}
		if long != nil {
			if len(long) < maxScanLine {
				long = append(long, chunk[:min(len(chunk), maxScanLine-len(long))]...)
			}
			line, long = long, nil
		}
		if len(line) > 0 {
			each(bytes.TrimRight(line, "\r\n"))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s LogScan) Apply(ctx context.Context, env *action.Env, p runbook.Params, plan *action.Plan) (*action.Result, error) {
	c, store, err := collector(env)
	if err != nil {
		return nil, err
	}
	targets := plan.State.([]logTarget)
	filter := LineFilter{Pattern: regexp.MustCompile(p.String("pattern"))}
	if p.Has("threshold") {
		t := uint64(max(p.Int("threshold"), 0))
		filter.Threshold = &t
	}
	limit := p.Int("limit_bytes")
	base := p.String("name")
	var objects []evidence.Object
	for _, t := range targets {
		objects = append(objects, t.object())
	}
	w, err := store.Create("log-scan/"+evidence.SafeName(base)+".txt", evidence.Source{
		Kind: evidence.KindKubernetes, Server: c.Config.Host, Objects: objects,
		Query: fmt.Sprintf("lines from the last %s matching /%s/%s", durationText(p.Duration("since")), p.String("pattern"), thresholdText(p)),
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()

	nodes := newNodeCache(c)
	var mu sync.Mutex // guards w and the results
	counts := map[string]ScanCount{}
	var failed []action.Failure
	var werr error
	action.ForEach(ctx, logWorkers, len(targets), func(i int) {
		t := targets[i]
		opts := logOptions(t, p.Duration("since"), limit)
		opts.Timestamps = false // the line as the application wrote it: its last number is its own
		rc, err := c.Stream.CoreV1().Pods(t.Pod.Namespace).GetLogs(t.Pod.Name, opts).Stream(ctx)
		if err == nil {
			var n ScanCount
			prefix := t.Pod.Name + "/" + t.Container + "\t"
			n, err = ScanLines(rc, filter, func(line []byte) {
				mu.Lock()
				defer mu.Unlock()
				if _, e := io.WriteString(w, prefix+string(line)+"\n"); e != nil && werr == nil {
					werr = e
				}
			})
			rc.Close()
			if err == nil {
				mu.Lock()
				counts[t.Pod.Name+"\x00"+t.Container] = n
				mu.Unlock()
				return
			}
		}
		msg := explainLogError(ctx, nodes, &t.Pod, err)
		mu.Lock()
		failed = append(failed, action.Failure{Target: t.String(), Error: msg})
		mu.Unlock()
	})
	if werr != nil {
		return nil, werr
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	table := &action.Table{Columns: []string{"POD", "CONTAINER", "LINES", "MATCHES", "LARGEST"}}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var matches int64
	var largest uint64
	for _, k := range keys {
		pod, ctr, _ := strings.Cut(k, "\x00")
		n := counts[k]
		matches += n.Matches
		largest = max(largest, n.Largest)
		table.Rows = append(table.Rows, []string{pod, ctr, strconv.FormatInt(n.Lines, 10), strconv.FormatInt(n.Matches, 10), strconv.FormatUint(n.Largest, 10)})
	}
	table.Total = len(table.Rows)
	if len(counts) == 0 {
		// Nothing could be read: an empty file would claim "no matches".
		return &action.Result{Summary: fmt.Sprintf("could not read the logs of any of the %d container(s); nothing scanned, no evidence written", len(targets)), Failed: failed}, ctx.Err()
	}
	note := fmt.Sprintf("%d of %d container(s) scanned", len(counts), len(targets))
	if len(failed) > 0 {
		note += fmt.Sprintf("; %d could not be read", len(failed))
	}
	e, err := w.Commit(evidence.Extra{Note: note})
	if err != nil {
		return nil, err
	}
	return &action.Result{
		Summary: fmt.Sprintf("%d matching line(s) in %d of %d container(s) (largest number %d); saved as evidence %s%s",
			matches, len(counts), len(targets), largest, e.Name, collectNote(env)),
		Failed: failed,
		Table:  table,
	}, ctx.Err()
}
