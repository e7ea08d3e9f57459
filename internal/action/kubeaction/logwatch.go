package kubeaction

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

// LogWatch follows the logs of the pods a selector matches for a bounded
// time and reports the lines matching a pattern: the seed's `kubectl logs
// -f -l ... | grep -E ...`, which has no end, made an incident step that
// ends, keeps what it saw as evidence and can fail a validation. Pods that
// appear during the watch (a rollout's replacements) are followed as they
// start.
type LogWatch struct{}

const (
	defaultWatchFor   = 2 * time.Minute
	defaultWatchShown = 20
	// watchRetry is how long a follower waits before asking again for a
	// log it could not open or whose stream broke.
	watchRetry = time.Second
)

func (LogWatch) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.log-watch",
		Timeout: 30 * time.Minute, // the step's default deadline; `for` is cut to fit it
		Description: "Follow the logs of the pods a selector matches, and of pods that appear meanwhile (a rollout's replacements), for a bounded time; " +
			"report the lines matching a pattern (per-pod counts, the first matches shown), save every match as evidence (JSON lines); optionally fail on a match.",
		Uses:  []string{runbook.UsesKubernetes},
		Table: true, // expect: can count the matches
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the pods"},
			{Name: "selector", Type: runbook.String, Required: true, Description: "label selector of the pods to follow, e.g. app=orchestrator; pods it matches later are followed too"},
			{Name: "pattern", Type: runbook.String, Required: true, Description: "regular expression (RE2) a line must match, e.g. (unauthorized|denied|failed)"},
			{Name: "for", Type: runbook.Duration, Default: defaultWatchFor, Description: "how long to watch (cut to fit the step's deadline)"},
			{Name: "since", Type: runbook.Duration, Description: "also read the lines printed this long before the watch starts (unset: only lines printed from its start)"},
			{Name: "containers", Type: runbook.Strings, Description: "only these containers (unset: all)"},
			{Name: "fail_on_match", Type: runbook.Bool, Default: false, Description: "fail the step if any line matches (for validation: no unauthorized requests any more)"},
			{Name: "show", Type: runbook.Int, Default: int64(defaultWatchShown), Description: "how many of the first matches the result table shows (every match is in the evidence)"},
			{Name: "name", Type: runbook.String, Default: "log-watch", Description: "evidence file name without extension"},
		},
		Validate: func(p runbook.Params) error {
			if p.Duration("for") <= 0 {
				return fmt.Errorf("for must be more than 0")
			}
			if p.Duration("since") < 0 {
				return fmt.Errorf("since must not be negative")
			}
			if p.Int("show") < 0 {
				return fmt.Errorf("show must not be negative")
			}
			if p.String("name") == "" {
				return fmt.Errorf("name is empty")
			}
			if _, err := regexp.Compile(p.String("pattern")); err != nil {
				return fmt.Errorf("pattern: %v", err)
			}
			if _, err := labels.Parse(p.String("selector")); err != nil {
				return fmt.Errorf("invalid selector %q: %v", p.String("selector"), err)
			}
			return nil
		},
	}
}

func (LogWatch) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	return []kube.Permission{
		{Verb: "list", Resource: "pods", Namespace: ns},
		{Verb: "watch", Resource: "pods", Namespace: ns},
		{Verb: "get", Resource: "pods", Subresource: "log", Namespace: ns},
	}
}

// watchWindow is when the watch ends, from its start and the step's
// deadline: `for` after the start, or earlier, leaving time to save the
// evidence before the deadline. cut says the deadline shortened it.
func watchWindow(ctx context.Context, start time.Time, want time.Duration) (end time.Time, cut bool) {
	end = start.Add(want)
	if dl, ok := ctx.Deadline(); ok {
		margin := min(10*time.Second, dl.Sub(start)/10)
		if limit := dl.Add(-margin); limit.Before(end) {
			return limit, true
		}
	}
	return end, false
}

func (LogWatch) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, sel := p.String("namespace"), p.String("selector")
	list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
	}
	if len(list.Items) == 0 {
		// Watching nothing for minutes and reporting no match would read
		// as "all clear".
		return nil, fmt.Errorf("selector %q matches no pods in namespace %s: nothing to watch", sel, ns)
	}
	targets := logTargets(list.Items, p.Strings("containers"))
	var names []string
	for _, t := range targets {
		if !t.Previous {
			names = append(names, t.String())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("the %d pod(s) chosen have no container named %s", len(list.Items), strings.Join(p.Strings("containers"), " or "))
	}
	want := p.Duration("for")
	from := "from the start of the watch"
	if s := p.Duration("since"); s > 0 {
		from = "from " + durationText(s) + " before it starts"
	}
	plan := &action.Plan{
		Summary: fmt.Sprintf("follow the logs of %d container(s) of %d pod(s) in %s matching %s, and of pods that appear, for %s (lines %s) and report those matching /%s/; matches saved as evidence%s%s",
			len(names), len(list.Items), ns, sel, durationText(want), from, p.String("pattern"), failNote(p), collectNote(env)),
		Targets: action.Abbreviate(names, 20),
	}
	if end, cut := watchWindow(ctx, time.Now(), want); cut {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("the step's deadline cuts the watch to about %s: allow longer with `timeout:` on the step", durationText(time.Until(end).Round(time.Second))))
	}
	return plan, nil
}

func failNote(p runbook.Params) string {
	if p.Bool("fail_on_match") {
		return "; a match fails the step"
	}
	return ""
}

// watchMatch is one matching line, as saved in the evidence.
type watchMatch struct {
	Time      time.Time `json:"time"`
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Container string    `json:"container"`
	Line      string    `json:"line"`
}

// watchCount is what one container printed during the watch.
type watchCount struct{ lines, matches int64 }

// logWatcher is one step's watch: the followers it started and what they
// saw.
type logWatcher struct {
	c         *kube.Clients
	env       *action.Env
	pattern   *regexp.Regexp
	red       *redact.Set
	only      map[string]bool // containers; empty: all
	start     time.Time
	from, end time.Time // lines printed in [from, end) are read
	show      int
	nodes     *nodeCache

	followers sync.WaitGroup
	mu        sync.Mutex // guards what follows, and w
	w         *evidence.Writer
	werr      error
	started   map[string]bool // container instances followed
	objects   []evidence.Object
	counts    map[string]*watchCount // "pod\x00container"
	shown     []watchMatch
	matches   int64
	failed    map[string]string // target -> why its log could not be read
}

func (s LogWatch) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	c, store, err := collector(env)
	if err != nil {
		return nil, err
	}
	ns, sel, pattern := p.String("namespace"), p.String("selector"), p.String("pattern")
	start := env.Now()
	end, cut := watchWindow(ctx, start, p.Duration("for"))
	wt := &logWatcher{
		c: c, env: env, pattern: regexp.MustCompile(pattern), red: redact.New(env.Secrets...),
		only: map[string]bool{}, start: start, from: start.Add(-p.Duration("since")), end: end, show: int(p.Int("show")),
		nodes: newNodeCache(c), started: map[string]bool{}, counts: map[string]*watchCount{}, failed: map[string]string{},
	}
	for _, name := range p.Strings("containers") {
		wt.only[name] = true
	}
	wt.w, err = store.Create("log-watch/"+evidence.SafeName(p.String("name"))+".jsonl", evidence.Source{
		Kind: evidence.KindKubernetes, Server: c.Config.Host,
		Query: fmt.Sprintf("lines matching /%s/ printed from %s to %s by the containers of pods matching %s in %s (followed; one JSON object per line)",
			pattern, wt.from.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), sel, ns),
	})
	if err != nil {
		return nil, err
	}
	defer wt.w.Close()
	env.Progress.Start(0, "log lines")

	wctx, cancel := context.WithDeadline(ctx, end)
	werr := wt.watchPods(wctx, ns, sel)
	cancel()
	wt.followers.Wait()
	if werr != nil && ctx.Err() == nil {
		return nil, werr
	}
	if wt.werr != nil {
		return nil, wt.werr
	}
	return wt.finish(ctx, p, cut)
}

// watchPods lists the pods and follows each running container, then
// watches for pods that appear or change (a container starting, a
// restart) until ctx ends.
func (wt *logWatcher) watchPods(ctx context.Context, ns, sel string) error {
	pods := wt.c.Core.CoreV1().Pods(ns)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("list pods in %s: %s", ns, kube.Short(err))
	}
	for i := range list.Items {
		wt.consider(ctx, &list.Items[i])
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return pods.Watch(ctx, o)
		},
	})
	if err != nil {
		return fmt.Errorf("watch pods in %s: %s", ns, kube.Short(err))
	}
	defer rw.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-rw.ResultChan():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watching pods in %s stopped", ns)
			}
			if pod, isPod := ev.Object.(*corev1.Pod); isPod && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				wt.consider(ctx, pod)
			}
		}
	}
}

// consider starts a follower for each container instance of pod that runs
// (or ran during the watch) and has none yet.
func (wt *logWatcher) consider(ctx context.Context, pod *corev1.Pod) {
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, st := range statuses {
		if len(wt.only) > 0 && !wt.only[st.Name] {
			continue
		}
		var started time.Time
		switch {
		case st.State.Running != nil:
			started = st.State.Running.StartedAt.Time
		case st.State.Terminated != nil && !st.State.Terminated.FinishedAt.Time.Before(wt.from):
			started = st.State.Terminated.StartedAt.Time
		default:
			continue
		}
		key := string(pod.UID) + "/" + st.Name + "/" + started.UTC().Format(time.RFC3339Nano)
		wt.mu.Lock()
		seen := wt.started[key]
		wt.started[key] = true
		if !seen {
			o := podObject(pod)
			o.Container = st.Name
			wt.objects = append(wt.objects, o)
			if wt.counts[pod.Name+"\x00"+st.Name] == nil {
				wt.counts[pod.Name+"\x00"+st.Name] = &watchCount{}
			}
		}
		wt.mu.Unlock()
		if !seen {
			p := pod.DeepCopy()
			wt.followers.Go(func() { wt.follow(ctx, p, st.Name) })
		}
	}
}

// followRetry is the pause before following a log again whose stream
// ended while its container still runs.
const followRetry = 500 * time.Millisecond

// stillRunning reports whether the container instance pod had when the
// watch found it is still running: same container ID, pod not deleted.
func (wt *logWatcher) stillRunning(ctx context.Context, pod *corev1.Pod, container string) bool {
	id := containerID(pod, container)
	cur, err := wt.c.Core.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || cur.DeletionTimestamp != nil || cur.UID != pod.UID {
		return false
	}
	for _, st := range cur.Status.ContainerStatuses {
		if st.Name == container {
			return st.State.Running != nil && (id == "" || st.ContainerID == id)
		}
	}
	return false
}

func containerID(pod *corev1.Pod, container string) string {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == container {
			return st.ContainerID
		}
	}
	return ""
}

// follow streams one container instance's log until ctx ends or the
// stream does (the container stopped). A log it cannot open yet, or a
// stream that breaks, is asked for again, from the last line seen.
func (wt *logWatcher) follow(ctx context.Context, pod *corev1.Pod, container string) {
	target := pod.Namespace + "/" + pod.Name + "/" + container
	since := wt.from
	var lastT time.Time
	atLast := 0 // lines seen stamped lastT, skipped when the stream is opened again
	for ctx.Err() == nil {
		// The API takes whole seconds: lines before `since` are dropped
		// here.
		st := metav1.NewTime(since.Truncate(time.Second))
		rc, err := wt.c.Stream.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
			Container: container, Follow: true, Timestamps: true, SinceTime: &st,
		}).Stream(ctx)
		if err == nil {
			wt.mu.Lock()
			delete(wt.failed, target)
			wt.mu.Unlock()
			skip := atLast
			err = ReadLines(rc, func(raw []byte) {
				t, text := splitTimestamp(raw)
				switch {
				case t.Before(since), !lastT.IsZero() && t.Before(lastT):
					return
				case t.Equal(lastT) && skip > 0:
					skip--
					return
				case t.Equal(lastT):
					atLast++
				default:
					lastT, atLast = t, 1
				}
				wt.line(pod, container, t, text)
			})
			rc.Close()
			if ctx.Err() != nil {
				return // the watch is over
			}
			if !lastT.IsZero() {
				since = lastT
			}
			if err == nil {
				// A stream can end while the container runs on (a
				// kubelet or proxy closing a long request): follow it
				// again unless this instance stopped.
				if !wt.stillRunning(ctx, pod, container) {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(followRetry):
				}
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		if apierrors.IsNotFound(err) && !lastT.IsZero() {
			return // deleted after its last line was read
		}
		wt.mu.Lock()
		wt.failed[target] = explainLogError(ctx, wt.nodes, pod, err)
		wt.mu.Unlock()
		if apierrors.IsNotFound(err) {
			return // deleted before its log could be read
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
}

// splitTimestamp cuts the kubelet's RFC 3339 timestamp off a line; a line
// without one is taken as printed now.
func splitTimestamp(raw []byte) (time.Time, []byte) {
	if i := bytes.IndexByte(raw, ' '); i > 0 {
		if t, err := time.Parse(time.RFC3339Nano, string(raw[:i])); err == nil {
			return t, raw[i+1:]
		}
	}
	return time.Now(), raw
}

// line counts one line and keeps it if it matches.
func (wt *logWatcher) line(pod *corev1.Pod, container string, t time.Time, text []byte) {
	wt.env.Progress.Add(1)
	match := wt.pattern.Match(text)
	wt.mu.Lock()
	defer wt.mu.Unlock()
	n := wt.counts[pod.Name+"\x00"+container]
	n.lines++
	if !match {
		return
	}
	n.matches++
	wt.matches++
	m := watchMatch{Time: t.UTC(), Namespace: pod.Namespace, Pod: pod.Name, Container: container, Line: wt.red.String(string(text))}
	wt.keepEarliest(m)
	b, err := json.Marshal(m)
	if err == nil {
		_, err = wt.w.Write(append(b, '\n'))
	}
	if err != nil && wt.werr == nil {
		wt.werr = err
	}
}

// keepEarliest keeps m among the show earliest matches, in time order:
// lines from several pods (and, with since, from before the watch)
// arrive in no particular order.
func (wt *logWatcher) keepEarliest(m watchMatch) {
	if wt.show == 0 || (len(wt.shown) == wt.show && !m.Time.Before(wt.shown[len(wt.shown)-1].Time)) {
		return
	}
	i := sort.Search(len(wt.shown), func(i int) bool { return m.Time.Before(wt.shown[i].Time) })
	wt.shown = slices.Insert(wt.shown, i, m)
	if len(wt.shown) > wt.show {
		wt.shown = wt.shown[:wt.show]
	}
}

// finish saves the evidence and reports.
func (wt *logWatcher) finish(ctx context.Context, p runbook.Params, cut bool) (*action.Result, error) {
	var failed []action.Failure
	for target, why := range wt.failed {
		failed = append(failed, action.Failure{Target: target, Error: why})
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	keys := make([]string, 0, len(wt.counts))
	var lines int64
	for k, n := range wt.counts {
		keys = append(keys, k)
		lines += n.lines
	}
	sort.Strings(keys)
	var perPod []string
	for _, k := range keys {
		if n := wt.counts[k]; n.matches > 0 {
			pod, ctr, _ := strings.Cut(k, "\x00")
			perPod = append(perPod, fmt.Sprintf("%s/%s %d", pod, ctr, n.matches))
		}
	}
	watched := wt.end.Sub(wt.start)
	if ctx.Err() != nil {
		watched = time.Since(wt.start)
	}
	note := fmt.Sprintf("%d line(s) read from %d container instance(s), %d matching", lines, len(wt.objects), wt.matches)
	if ctx.Err() != nil {
		note += "; interrupted before the end of the watch"
	}
	e, err := wt.w.Commit(evidence.Extra{Objects: wt.objects, Note: note})
	if err != nil {
		return nil, err
	}
	summary := fmt.Sprintf("watched %d container instance(s) for %s: %d line(s), %d matching /%s/", len(wt.objects), durationText(watched.Round(time.Second)), lines, wt.matches, p.String("pattern"))
	if len(perPod) > 0 {
		summary += " (" + strings.Join(action.Abbreviate(perPod, 10), ", ") + ")"
	}
	summary += "; saved as evidence " + e.Name + collectNote(wt.env)
	if cut {
		summary += "; cut short by the step's deadline"
	}
	// The table is there without a match too: its row count (Total) is
	// what an expectation on the step judges.
	res := &action.Result{Summary: summary, Failed: failed,
		Table: &action.Table{Columns: []string{"POD", "CONTAINER", "TIME", "LINE"}, Rows: [][]string{}, Total: int(wt.matches)}}
	for _, m := range wt.shown {
		res.Table.Rows = append(res.Table.Rows, []string{m.Pod, m.Container, m.Time.Format(time.RFC3339Nano), m.Line})
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if p.Bool("fail_on_match") && wt.matches > 0 {
		when := "during the watch"
		if since := p.Duration("since"); since > 0 {
			when = "from " + durationText(since) + " before the watch to its end"
		}
		return nil, fmt.Errorf("%d line(s) matched /%s/ %s (%s); saved as evidence %s", wt.matches, p.String("pattern"), when, strings.Join(action.Abbreviate(perPod, 10), ", "), e.Name)
	}
	return res, nil
}
