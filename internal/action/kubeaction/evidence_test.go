package kubeaction

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

const testIncident = "SEC-20261122-042"

// evEnv is an action environment on the shared sandbox with an evidence
// store in a fresh incident directory.
type evEnv struct {
	*action.Env
	c   *kube.Clients
	dir string // incident directory
	ns  string // a namespace of the test's own
}

func newEvEnv(t *testing.T) *evEnv {
	t.Helper()
	sb := sandboxtest.Get(t)
	c, err := kube.NewClients(sb.RESTConfig, "irctl-test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := evidence.Open(dir, evidence.Meta{Operator: "test@host", KubeIdentity: "admin", DBUser: "unknown: not used", ToolVersion: "test", RunbookHash: "none"})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	e := &evEnv{c: c, dir: dir, ns: "ev-" + hex.EncodeToString(b)}
	e.Env = &action.Env{
		Kube:     func() (*kube.Clients, error) { return c, nil },
		DryRun:   action.DryRunNone,
		Log:      zerolog.Nop(),
		Now:      time.Now,
		Incident: testIncident,
		Evidence: func() (*evidence.Store, error) { return store, nil },
	}
	if _, err := c.Core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller manager makes the namespace's default ServiceAccount,
	// maybe not before the test needs it.
	if _, err := c.Core.CoreV1().ServiceAccounts(e.ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return e
}

// run plans and applies a like the engine does.
func run(t *testing.T, a action.Action, env *action.Env, p runbook.Params) (*action.Plan, *action.Result) {
	t.Helper()
	if v := a.Spec().Validate; v != nil {
		if err := v(p); err != nil {
			t.Fatalf("%s: invalid params: %v", a.Spec().Name, err)
		}
	}
	plan, err := a.Plan(context.Background(), env, p)
	if err != nil {
		t.Fatalf("%s plan: %v", a.Spec().Name, err)
	}
	if plan.Noop {
		return plan, nil
	}
	res, err := a.Apply(context.Background(), env, p, plan)
	if err != nil {
		t.Fatalf("%s apply: %v", a.Spec().Name, err)
	}
	return plan, res
}

func (e *evEnv) verify(t *testing.T) []evidence.Entry {
	t.Helper()
	r, err := evidence.Verify(e.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("evidence does not verify: %v", r.Problems)
	}
	entries, err := evidence.ReadManifest(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func (e *evEnv) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(evidence.Dir(e.dir), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kubeletStub serves the kubelet's containerLogs endpoint over TLS, so that
// the real kube-apiserver's log proxy, and client-go, can be exercised
// end to end in a sandbox that runs no kubelet. It answers like a
// kubelet: previous=true for a container that never restarted is an error,
// limitBytes cuts the stream.
type kubeletStub struct {
	srv  *httptest.Server
	mu   sync.Mutex
	logs map[string]string // "ns/pod/container" or ".../previous" -> log text
	seen []string          // request query strings
}

func newKubeletStub(t *testing.T) *kubeletStub {
	k := &kubeletStub{logs: map[string]string{}}
	k.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		key := strings.Join(parts, "/")
		q := r.URL.Query()
		if q.Get("previous") == "true" {
			key += "/previous"
		}
		k.mu.Lock()
		k.seen = append(k.seen, r.URL.RawQuery)
		text, ok := k.logs[key]
		k.mu.Unlock()
		if !ok {
			http.Error(w, "container not found", http.StatusBadRequest)
			return
		}
		if n, err := strconv.Atoi(q.Get("limitBytes")); err == nil && n < len(text) {
			text = text[:n]
		}
		fmt.Fprint(w, text)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// node registers a Node whose kubelet endpoint is the stub.
func (k *kubeletStub) node(t *testing.T, c *kube.Clients, name string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	ctx := context.Background()
	n, err := c.Core.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Core.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	updateNodeStatus(t, c.Core, n.Name, func(n *corev1.Node) {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(p)
	})
}

// runningPod creates a pod on node with the given containers and restart
// counts, reported Running through the status subresource.
func runningPod(t *testing.T, c *kube.Clients, ns, name, node string, labels map[string]string, restarts map[string]int32) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0)}}
	for cn := range restarts {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: cn, Image: "example.com/app:1"})
	}
	got, err := c.Core.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updatePodStatus(t, c.Core, ns, got.Name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = nil
		for cn, r := range restarts {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: cn, Image: "example.com/app:1", RestartCount: r, Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}})
		}
	})
}

func TestLogsCurrentAndPreviousAsEvidence(t *testing.T) {
	e := newEvEnv(t)
	k := newKubeletStub(t)
	node := e.ns + "-node"
	k.node(t, e.c, node)
	runningPod(t, e.c, e.ns, "web-1", node, map[string]string{"app": "web"}, map[string]int32{"app": 2, "sidecar": 0})
	runningPod(t, e.c, e.ns, "web-2", node, map[string]string{"app": "web"}, map[string]int32{"app": 0})
	k.logs[e.ns+"/web-1/app"] = "current line 1\ncurrent line 2\n"
	k.logs[e.ns+"/web-1/app/previous"] = "before the crash\n"
	k.logs[e.ns+"/web-1/sidecar"] = "sidecar\n"
	k.logs[e.ns+"/web-2/app"] = strings.Repeat("x", 5000)

	plan, res := run(t, Logs{}, e.Env, runbook.Params{"namespace": e.ns, "selector": "app=web", "since": 2 * time.Hour, "limit_bytes": int64(1000)})
	if len(plan.Targets) != 4 || !strings.Contains(plan.Summary, "(1 previous)") {
		t.Fatalf("plan: %+v", plan)
	}
	if len(res.Failed) != 0 {
		t.Fatalf("failures: %+v", res.Failed)
	}
	if !strings.Contains(res.Summary, "saved 4 of 4") || !strings.Contains(res.Summary, "1 reached limit_bytes") {
		t.Errorf("summary: %s", res.Summary)
	}
	if got := e.read(t, "logs/"+e.ns+"/web-1/app.previous.log"); got != "before the crash\n" {
		t.Errorf("previous log: %q", got)
	}
	if got := e.read(t, "logs/"+e.ns+"/web-2/app.log"); len(got) != 1000 {
		t.Errorf("limit_bytes not applied: %d bytes", len(got))
	}
	for _, q := range k.seen {
		if !strings.Contains(q, "sinceSeconds=7200") || !strings.Contains(q, "limitBytes=1000") || !strings.Contains(q, "timestamps=true") {
			t.Errorf("kubelet request %q lacks since/limit/timestamps", q)
		}
	}
	entries := e.verify(t)
	var prev *evidence.Entry
	for i := range entries {
		if strings.HasSuffix(entries[i].Name, "app.previous.log") {
			prev = &entries[i]
		}
	}
	if prev == nil || len(prev.Source.Objects) != 1 || !prev.Source.Objects[0].Previous || prev.Source.Objects[0].UID == "" || prev.Source.Objects[0].ResourceVersion == "" || prev.Source.Server == "" {
		t.Fatalf("previous log's source not recorded: %+v", prev)
	}
}

// nodeWithoutKubelet registers a Node that no kubelet ever reported for:
// no kubelet port, and an address (its name) that does not resolve.
func nodeWithoutKubelet(t *testing.T, c *kube.Clients, name string) {
	t.Helper()
	ctx := context.Background()
	n, err := c.Core.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Core.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	updateNodeStatus(t, c.Core, n.Name, func(n *corev1.Node) {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}}
	})
}

// The seeded nodes' kubelets (the sandbox's stand-ins) serve the logs of
// the pods on them; a node without a kubelet is named plainly.
func TestLogsSayPlainlyWhenNoKubeletServesTheNode(t *testing.T) {
	e := newEvEnv(t)
	if err := sandbox.SeedPods(context.Background(), e.c.Core, e.ns, 2, map[string]string{"app": "orchestrator"}); err != nil {
		t.Fatal(err)
	}
	gone := e.ns + "-gone"
	nodeWithoutKubelet(t, e.c, gone)
	runningPod(t, e.c, e.ns, "stranded-1", gone, map[string]string{"app": "orchestrator"}, map[string]int32{"app": 0})
	runningPod(t, e.c, e.ns, "stranded-2", gone, map[string]string{"app": "orchestrator"}, map[string]int32{"app": 0})
	_, res := run(t, Logs{}, e.Env, runbook.Params{"namespace": e.ns, "selector": "app=orchestrator", "since": 24 * time.Hour})
	if len(res.Failed) != 2 || !strings.Contains(res.Summary, "saved 2 of 4 container log(s)") {
		t.Fatalf("want the 2 seeded-node pods' logs saved and 2 failures, got %+v", res)
	}
	for _, f := range res.Failed {
		if !strings.HasPrefix(f.Target, e.ns+"/stranded-") || f.Error != "no kubelet serves logs for node "+gone+" (the sandbox has none)" {
			t.Errorf("failure not explained plainly: %s: %s", f.Target, f.Error)
		}
	}
	entries := e.verify(t)
	if len(entries) != 2 {
		t.Fatalf("want the 2 logs read as evidence, got %+v", entries)
	}
	for _, en := range entries {
		text := e.read(t, en.Name)
		if strings.Contains(en.Name, "stranded") || !strings.Contains(text, " INFO request user_id=") || strings.Count(text, "\n") < 500 {
			t.Errorf("%s: not a day of the orchestrator's log (%d bytes)", en.Name, len(text))
		}
	}
}

// TestLogScanFindsTheSeededExfiltration runs the runbook's
// exfiltration-in-logs check on the seeded platform, whose logs the
// sandbox's kubelets serve: the attack's 60 gigabyte transfers, spread over
// the 3 replicas, and nothing else.
func TestLogScanFindsTheSeededExfiltration(t *testing.T) {
	e := newEvEnv(t)
	_, res := run(t, LogScan{}, e.Env, runbook.Params{"namespace": sandbox.DemoNamespace, "selector": "app=orchestrator", "since": 24 * time.Hour,
		"pattern": "(download|export|bulk_query)", "threshold": int64(1000000), "name": "exfiltration-in-logs"})
	if len(res.Failed) != 0 || !strings.Contains(res.Summary, "60 matching line(s) in 3 of 3 container(s) (largest number 6904019200)") {
		t.Fatalf("scan: %+v", res)
	}
	for _, row := range res.Table.Rows {
		if n, _ := strconv.Atoi(row[3]); n < 10 {
			t.Errorf("replica %s: %s matches, want its share of the 60", row[0], row[3])
		}
	}
	got := e.read(t, "log-scan/exfiltration-in-logs.txt")
	attacker := regexp.MustCompile(`^orchestrator-[a-z0-9]{6,10}-[a-z0-9]{5}/orchestrator\t\S+ INFO request user_id=(7|13|21) ip=(198\.51\.100\.23|203\.0\.113\.77|2001:db8:bad:1::21) action=(export|bulk_query) .* bytes=\d{10}$`)
	for l := range strings.Lines(got) {
		if !attacker.MatchString(strings.TrimSuffix(l, "\n")) {
			t.Errorf("a match that is not the attacker's transfer: %q", l)
		}
	}
	e.verify(t)
}

func TestLogScanKeepsLargeTransfers(t *testing.T) {
	e := newEvEnv(t)
	k := newKubeletStub(t)
	node := e.ns + "-node"
	k.node(t, e.c, node)
	runningPod(t, e.c, e.ns, "api-1", node, map[string]string{"app": "api"}, map[string]int32{"api": 0})
	runningPod(t, e.c, e.ns, "api-2", node, map[string]string{"app": "api"}, map[string]int32{"api": 0})
	gone := e.ns + "-gone"
	nodeWithoutKubelet(t, e.c, gone)
	runningPod(t, e.c, e.ns, "api-3", gone, map[string]string{"app": "api"}, map[string]int32{"api": 0}) // no kubelet
	k.logs[e.ns+"/api-1/api"] = "GET /health 200 12\n" +
		"export dataset/prompts user=7 bytes=2500000000\n" +
		"export dataset/small user=8 bytes=1200\n" +
		"bulk_query table/users user=13 9000000\n" +
		"download without a number\n"
	k.logs[e.ns+"/api-2/api"] = "download report.pdf 1000001\r\nlogin ok 99999999\n"

	_, res := run(t, LogScan{}, e.Env, runbook.Params{"namespace": e.ns, "selector": "app=api", "since": 24 * time.Hour,
		"pattern": "(download|export|bulk_query)", "threshold": int64(1000000), "name": "exfil"})
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error, "no kubelet serves logs for node "+gone) {
		t.Errorf("failed: %+v", res.Failed)
	}
	got := e.read(t, "log-scan/exfil.txt")
	for _, want := range []string{"api-1/api\texport dataset/prompts user=7 bytes=2500000000\n", "api-1/api\tbulk_query table/users user=13 9000000\n", "api-2/api\tdownload report.pdf 1000001\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("matches lack %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 3 {
		t.Errorf("want exactly 3 matching lines:\n%s", got)
	}
	want := [][]string{{"api-1", "api", "5", "2", "2500000000"}, {"api-2", "api", "2", "1", "1000001"}}
	if fmt.Sprint(res.Table.Rows) != fmt.Sprint(want) {
		t.Errorf("per-pod counts %v, want %v", res.Table.Rows, want)
	}
	if !strings.Contains(res.Summary, "3 matching line(s) in 2 of 3 container(s)") {
		t.Errorf("summary: %s", res.Summary)
	}
	e.verify(t)
}

func TestLastNumberAndScanLines(t *testing.T) {
	for line, want := range map[string]uint64{"bytes=2500000": 2500000, "a 12 b 34": 34, "x 99999999999999999999999": ^uint64(0), "v1.2.3 end": 3} {
		if n, ok := LastNumber([]byte(line)); !ok || n != want {
			t.Errorf("LastNumber(%q) = %d, %v", line, n, ok)
		}
	}
	if _, ok := LastNumber([]byte("no digits")); ok {
		t.Error("a line without digits has a number")
	}
	long := strings.Repeat("a", 3<<20) + " export 5000000\nexport 7\n"
	th := uint64(10)
	var kept []string
	n, err := ScanLines(strings.NewReader(long), LineFilter{Pattern: regexp.MustCompile("export"), Threshold: &th}, func(l []byte) { kept = append(kept, string(l)) })
	if err != nil || n.Lines != 2 || n.Matches != 0 || len(kept) != 0 {
		// The 3 MiB line is matched on its first MiB, which has no "export".
		t.Fatalf("long line: %+v %v %d", n, err, len(kept))
	}
}

func TestDumpWritesOneFilePerKindWithProvenance(t *testing.T) {
	e := newEvEnv(t)
	_, res := run(t, Dump{}, e.Env, runbook.Params{})
	if len(res.Failed) != 0 {
		t.Fatalf("failed: %+v", res.Failed)
	}
	entries := e.verify(t)
	if len(entries) != len(DumpKinds) {
		t.Fatalf("%d files, want %d", len(entries), len(DumpKinds))
	}
	byName := map[string]evidence.Entry{}
	for _, en := range entries {
		byName[en.Name] = en
		if en.Source.Kind != evidence.KindKubernetes || en.Source.Server == "" || en.Source.ListResourceVersion == "" {
			t.Errorf("%s: source %+v", en.Name, en.Source)
		}
	}
	// The seeded persistence (a CronJob bound to cluster-admin) is in the dump.
	cj := e.read(t, "dump/cronjobs.yaml")
	if !strings.Contains(cj, "name: kube-cleanup") || !strings.Contains(cj, "203.0.113.66") {
		t.Errorf("cronjobs.yaml lacks the seeded kube-cleanup CronJob")
	}
	objs := byName["dump/cronjobs.yaml"].Source.Objects
	if len(objs) == 0 || objs[0].UID == "" || objs[0].ResourceVersion == "" {
		t.Errorf("cronjob provenance: %+v", objs)
	}
	if !strings.Contains(e.read(t, "dump/clusterrolebindings.yaml"), "name: cleanup-admin") {
		t.Error("clusterrolebindings.yaml lacks cleanup-admin")
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := yaml.Unmarshal([]byte(e.read(t, "dump/pods.yaml")), &list); err != nil || len(list.Items) == 0 || list.Items[0]["kind"] != "Pod" {
		t.Fatalf("pods.yaml is not a List of Pods: %v", err)
	}
	if img := e.read(t, "dump/images.yaml"); !strings.Contains(img, sandbox.OrchestratorImage) {
		t.Errorf("images.yaml lacks %s", sandbox.OrchestratorImage)
	}
	sa := e.read(t, "dump/serviceaccounts.yaml")
	// The orchestrator's pods, named by their Deployment's ReplicaSet.
	if !strings.Contains(sa, "serviceAccount: orchestrator") || !regexp.MustCompile(`\borchestrator-[a-z0-9]{6,10}-[a-z0-9]{5}\b`).MatchString(sa) {
		t.Errorf("serviceaccounts.yaml lacks the orchestrator account and its pods:\n%s", sa)
	}
	if d := e.read(t, "dump/pod-descriptions.txt"); !strings.Contains(d, "Name:") || !strings.Contains(d, "Env DATABASE_PASSWORD:") || !strings.Contains(d, "<secret orchestrator-db key password>") {
		t.Errorf("pod-descriptions.txt is not describe-like")
	}
}

func TestDumpSortsDeploymentsByCreation(t *testing.T) {
	type d struct{ metav1.ObjectMeta }
	now := time.Now()
	items := []d{
		{metav1.ObjectMeta{Name: "new", CreationTimestamp: metav1.NewTime(now)}},
		{metav1.ObjectMeta{Name: "old", CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}},
		{metav1.ObjectMeta{Name: "mid", CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))}},
	}
	SortByCreation(items, func(x *d) *metav1.ObjectMeta { return &x.ObjectMeta })
	if items[0].Name != "old" || items[2].Name != "new" {
		t.Fatalf("order: %s %s %s", items[0].Name, items[1].Name, items[2].Name)
	}
	ev := []corev1.Event{{InvolvedObject: corev1.ObjectReference{Kind: "ClusterRoleBinding"}}, {Reason: "Scheduled"}, {Message: "bound to role admin"}}
	if n := len(RBACEvents(ev)); n != 2 {
		t.Fatalf("RBACEvents kept %d, want 2", n)
	}
}

// boundPVC creates a claim reported Bound (no controller binds it here).
func boundPVC(t *testing.T, c *kube.Clients, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	ctx := context.Background()
	pvc, err := c.Core.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	pvc, err = c.Core.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc
}

func TestSnapshotWaitsForReadyAndRetainsContent(t *testing.T) {
	e := newEvEnv(t)
	boundPVC(t, e.c, e.ns, "data")
	sc, err := snapclient.NewForConfig(e.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := runbook.Params{"namespace": e.ns, "pvcs": []string{"data"}, "timeout": 30 * time.Second}

	// A server dry run creates nothing and records no evidence.
	dry := *e.Env
	dry.DryRun = action.DryRunServer
	_, res := run(t, Snapshot{}, &dry, p)
	if res.Changed != 1 || !strings.Contains(res.Summary, "nothing was created") {
		t.Fatalf("server dry run: %+v", res)
	}
	if l, _ := sc.SnapshotV1().VolumeSnapshots(e.ns).List(context.Background(), metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatal("server dry run created a VolumeSnapshot")
	}

	// The sandbox's snapshot controller readies it.
	plan, res := run(t, Snapshot{}, e.Env, p)
	if len(plan.Warnings) == 0 || !strings.Contains(plan.Warnings[0], "deletionPolicy Delete") {
		t.Errorf("plan should warn about the class's deletionPolicy: %+v", plan.Warnings)
	}
	if len(res.Failed) != 0 || res.Changed != 1 || !strings.Contains(res.Summary, "content switched to deletionPolicy Retain") {
		t.Fatalf("snapshot: %+v", res)
	}
	name := "data-" + IncidentSuffix(testIncident)
	vs, err := sc.SnapshotV1().VolumeSnapshots(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *vs.Spec.VolumeSnapshotClassName != DefaultSnapshotClass || *vs.Spec.Source.PersistentVolumeClaimName != "data" || vs.Labels[LabelIncident] != IncidentSuffix(testIncident) {
		t.Errorf("snapshot spec/labels: %+v", vs)
	}
	vsc, err := sc.SnapshotV1().VolumeSnapshotContents().Get(context.Background(), *vs.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil || vsc.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
		t.Errorf("content not switched to Retain: %v %v", vsc.Spec.DeletionPolicy, err)
	}
	if vsc.Spec.VolumeSnapshotRef.UID != vs.UID || vsc.Spec.Driver != sandbox.CSIDriver || vs.Status.RestoreSize == nil || vs.Status.RestoreSize.String() != "1Gi" {
		t.Errorf("content %+v not bound to snapshot %+v", vsc.Spec, vs.Status)
	}
	entries := e.verify(t)
	if len(entries) != 1 || len(entries[0].Source.Objects) != 3 || !strings.Contains(e.read(t, entries[0].Name), "readyToUse: true") {
		t.Fatalf("snapshot evidence: %+v", entries)
	}
	// Running again finds this incident's snapshot and does not create another.
	plan, _ = run(t, Snapshot{}, e.Env, p)
	if plan.Count != 0 || !strings.Contains(plan.Targets[0], "exists") {
		t.Errorf("second run: %+v", plan)
	}
}

func TestSnapshotTimesOutAndReportsMissingClass(t *testing.T) {
	e := newEvEnv(t)
	boundPVC(t, e.c, e.ns, "data")
	_, err := Snapshot{}.Plan(context.Background(), e.Env, runbook.Params{"namespace": e.ns, "pvcs": []string{"data"}, "class": "no-such-class"})
	if err == nil || !strings.Contains(err.Error(), `VolumeSnapshotClass "no-such-class" not found`) {
		t.Fatalf("missing class: %v", err)
	}
	_, err = Snapshot{}.Plan(context.Background(), e.Env, runbook.Params{"namespace": e.ns, "pvcs": []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), "PersistentVolumeClaim nope not found") {
		t.Fatalf("missing claim: %v", err)
	}
	// A cluster without the CRDs is told so plainly.
	if err := requireAPI(e.c, "snapshot.example.com/v1", "volumesnapshots", "install them"); err == nil || !strings.Contains(err.Error(), "the volumesnapshots API (snapshot.example.com/v1) is not installed in this cluster: install them") {
		t.Errorf("missing API: %v", err)
	}
	if err := snapshotAPI(e.c); err != nil {
		t.Errorf("the sandbox serves the VolumeSnapshot API: %v", err)
	}
	// No snapshot controller for the class's driver (the sandbox runs one
	// for its own driver only): the wait ends at the timeout, saying why.
	sc, err := snapclient.NewForConfig(e.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	class := e.ns + "-elsewhere"
	if _, err := sc.SnapshotV1().VolumeSnapshotClasses().Create(context.Background(), &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: class}, Driver: "csi.elsewhere.example.com", DeletionPolicy: snapv1.VolumeSnapshotContentRetain,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sc.SnapshotV1().VolumeSnapshotClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})
	_, res := run(t, Snapshot{}, e.Env, runbook.Params{"namespace": e.ns, "pvcs": []string{"data"}, "class": class, "timeout": 2 * time.Second})
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error, "not ready after 2s") || !strings.Contains(res.Failed[0].Error, "no snapshot controller") {
		t.Fatalf("timeout: %+v", res)
	}

	// What the controller reports ends the wait at once: a claim whose
	// volume is not a CSI volume cannot be snapshotted.
	ctx := context.Background()
	pvc := boundPVC(t, e.c, e.ns, "legacy")
	pv, err := e.c.Core.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-legacy"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/legacy"}},
			ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: e.ns, Name: pvc.Name},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.c.Core.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	pvc.Spec.VolumeName = pv.Name
	if _, err := e.c.Core.CoreV1().PersistentVolumeClaims(e.ns).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	plan, res := run(t, Snapshot{}, e.Env, runbook.Params{"namespace": e.ns, "pvcs": []string{"legacy"}, "timeout": time.Minute})
	if len(plan.Warnings) < 2 || !strings.Contains(plan.Warnings[1], "not a CSI volume") {
		t.Errorf("plan should warn that the volume is not CSI: %q", plan.Warnings)
	}
	want := "the snapshot controller reports: Failed to create snapshot content with error cannot find CSI PersistentVolumeSource for volume " + pv.Name
	if len(res.Failed) != 1 || res.Failed[0].Error != want || time.Since(start) > 20*time.Second {
		t.Fatalf("controller error, after %s: %+v", time.Since(start), res)
	}
}

func TestDebugCopyLeavesOriginalAndStripsLabels(t *testing.T) {
	e := newEvEnv(t)
	ctx := context.Background()
	orig := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-1", Labels: map[string]string{"app": "orchestrator", "quarantine": "true"}, Annotations: map[string]string{"note": "x"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "default",
			NodeName:                      "node-a",
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "app", Image: sandbox.OrchestratorImage,
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}},
		},
	}
	if _, err := e.c.Core.CoreV1().Pods(e.ns).Create(ctx, orig, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// node-a's simulated kubelet (kwok) reports the pod Ready; after that
	// only a change of the pod itself changes its resourceVersion.
	got := waitPodReady(t, e.c.Core, e.ns, orig.Name)
	p := runbook.Params{"namespace": e.ns, "selector": "app=orchestrator", "keep_labels": []string{"quarantine"}, "debug_image": "nicolaka/netshoot:v0.13"}
	plan, res := run(t, DebugCopy{}, e.Env, p)
	if plan.Count != 1 || res.Changed != 1 || len(res.Failed) != 0 {
		t.Fatalf("plan %+v result %+v", plan, res)
	}
	name := CopyName("app-1", testIncident)
	if name != "app-1-forensic-20261122-042" {
		t.Fatalf("copy name %s", name)
	}
	cp, err := e.c.Core.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.Labels) != 2 || cp.Labels[LabelForensicCopyOf] != "app-1" || cp.Labels["quarantine"] != "true" || cp.Labels["app"] != "" {
		t.Errorf("copy labels: %v", cp.Labels)
	}
	// Not pinned to the original's node: created without one, it is placed
	// by the scheduler, which alone reports PodScheduled.
	if (cp.Spec.NodeName != "" && !scheduled(cp)) || cp.Spec.AutomountServiceAccountToken == nil || *cp.Spec.AutomountServiceAccountToken {
		t.Errorf("copy spec: node %q (scheduled %t) automount %v", cp.Spec.NodeName, scheduled(cp), cp.Spec.AutomountServiceAccountToken)
	}
	if len(cp.Spec.Containers) != 2 || cp.Spec.Containers[1].Image != "nicolaka/netshoot:v0.13" || !*cp.Spec.ShareProcessNamespace {
		t.Errorf("debug container: %+v", cp.Spec.Containers)
	}
	for _, v := range cp.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-abcde") {
			t.Errorf("the token volume was copied")
		}
	}
	after, _ := e.c.Core.CoreV1().Pods(e.ns).Get(ctx, "app-1", metav1.GetOptions{})
	if after.ResourceVersion != got.ResourceVersion {
		t.Error("the original pod was modified")
	}
	e.verify(t)
	if s := e.read(t, "forensic-copies/"+e.ns+"/app-1.yaml"); !strings.Contains(s, "name: app-1\n") || !strings.Contains(s, "name: "+name) {
		t.Error("evidence lacks the original or the copy")
	}

	// Idempotent: a second plan finds the copy and does nothing; copies
	// are never copied.
	plan2, res2 := run(t, DebugCopy{}, e.Env, p)
	if !plan2.Noop || res2 != nil || !strings.Contains(plan2.Summary, "1 already exist") {
		t.Errorf("second run: %+v", plan2)
	}
	// Undo deletes the copy and only the copy.
	if _, err := (DebugCopy{}).Undo(ctx, e.Env, res.Undo); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Core.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("copy still there after undo: %v", err)
	}
	if _, err := e.c.Core.CoreV1().Pods(e.ns).Get(ctx, "app-1", metav1.GetOptions{}); err != nil {
		t.Errorf("undo touched the original: %v", err)
	}
}

// waitPodReady waits up to a minute for the pod to report Ready.
func waitPodReady(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s not Ready after a minute: %+v", ns, name, p.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scheduled reports whether the scheduler bound the pod to its node.
func scheduled(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
