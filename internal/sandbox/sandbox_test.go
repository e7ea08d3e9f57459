package sandbox_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	// Up starts `exe sandbox serve ...`; TestUpDown passes this test binary
	// as exe, which then plays the CLI's part.
	if len(os.Args) > 2 && os.Args[1] == "sandbox" && os.Args[2] == "serve" {
		os.Exit(fakeServe(os.Args[3:]))
	}
	sandboxtest.Main(m)
}

// fakeServe does what `irctl sandbox serve` does.
func fakeServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	binDir := fs.String("bin-dir", "", "")
	seed := fs.Bool("seed", false, "")
	latency := fs.Duration("api-latency", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := sandbox.Serve(ctx, sandbox.Options{Dir: *dir, BinDir: *binDir, Seed: *seed, Log: os.Stdout, APILatency: *latency}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestSeededSandbox(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != "v1.36.3" {
			t.Errorf("gitVersion = %q, want v1.36.3", v.GitVersion)
		}
	})

	t.Run("kubeconfig", func(t *testing.T) {
		fi, err := os.Stat(s.KubeconfigPath)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("kubeconfig mode = %v, want 0600", fi.Mode().Perm())
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", s.KubeconfigPath)
		if err != nil {
			t.Fatal(err)
		}
		fromFile, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fromFile.CoreV1().Secrets(sandbox.DemoNamespace).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("admin kubeconfig cannot list secrets: %v", err)
		}
	})

	t.Run("nodes", func(t *testing.T) {
		for _, name := range sandbox.NodeNames {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !nodeReady(n) {
				t.Errorf("node %s is not Ready: %+v", name, n.Status.Conditions)
			}
		}
	})

	t.Run("pods", func(t *testing.T) {
		orch := listPods(t, cs, sandbox.DemoNamespace, "app=orchestrator")
		if len(orch) != 3 {
			t.Fatalf("%d orchestrator pods, want 3", len(orch))
		}
		nodes := map[string]bool{}
		for _, p := range orch {
			nodes[p.Spec.NodeName] = true
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "ReplicaSet" {
				t.Errorf("pod %s owners = %+v, want its ReplicaSet", p.Name, p.OwnerReferences)
			}
			if g := p.Spec.TerminationGracePeriodSeconds; g == nil || *g != 0 {
				t.Errorf("pod %s terminationGracePeriodSeconds = %v, want 0", p.Name, g)
			}
			if p.Spec.Containers[0].Image != sandbox.OrchestratorImage {
				t.Errorf("pod %s image = %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		if len(nodes) != 3 {
			t.Errorf("orchestrator pods on nodes %v, want spread over 3", nodes)
		}
		dep, err := cs.AppsV1().Deployments(sandbox.DemoNamespace).Get(ctx, "orchestrator", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *dep.Spec.Replicas != 3 || dep.Status.ReadyReplicas != 3 {
			t.Errorf("deployment replicas %d, ready %d; want 3, 3", *dep.Spec.Replicas, dep.Status.ReadyReplicas)
		}
		if n := len(listPods(t, cs, sandbox.DemoNamespace, "app=postgres")); n != 1 {
			t.Errorf("%d postgres pods, want 1", n)
		}
		if n := len(listPods(t, cs, sandbox.DemoNamespace, "app=forensics")); n != 1 {
			t.Errorf("%d forensics pods, want 1", n)
		}
		exporters := listPods(t, cs, sandbox.MonitoringNamespace, "app=node-exporter")
		if len(exporters) != 3 {
			t.Errorf("%d node-exporter pods, want 3", len(exporters))
		}
		for _, p := range exporters {
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "DaemonSet" {
				t.Errorf("pod %s owners = %+v, want the DaemonSet", p.Name, p.OwnerReferences)
			}
		}
	})

	t.Run("storage", func(t *testing.T) {
		pvc, err := cs.CoreV1().PersistentVolumeClaims(sandbox.DemoNamespace).Get(ctx, "postgres-pvc", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			t.Errorf("postgres-pvc phase = %s, want Bound", pvc.Status.Phase)
		}
		ext, err := apiextensionsclient.NewForConfig(s.RESTConfig)
		if err != nil {
			t.Fatal(err)
		}
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "volumesnapshots.snapshot.storage.k8s.io", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
		}
		if !established {
			t.Errorf("VolumeSnapshot CRD not established: %+v", crd.Status.Conditions)
		}
		dyn, err := dynamic.NewForConfig(s.RESTConfig)
		if err != nil {
			t.Fatal(err)
		}
		gvr := schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"}
		if _, err := dyn.Resource(gvr).Get(ctx, sandbox.SnapshotClass, metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
	})

	t.Run("secrets and persistence", func(t *testing.T) {
		db, err := cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(ctx, "orchestrator-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(db.Data["password"]) != s.DBPassword {
			t.Error("Secret orchestrator-db does not hold the database password")
		}
		jwt, err := cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(ctx, "orchestrator-jwt-secret", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(jwt.Data["secret"]) == 0 {
			t.Error("Secret orchestrator-jwt-secret is empty")
		}
		cj, err := cs.BatchV1().CronJobs(metav1.NamespaceSystem).Get(ctx, "kube-cleanup", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cj.Labels["malicious"] != "true" {
			t.Errorf("CronJob kube-cleanup labels = %v", cj.Labels)
		}
		crb, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "cleanup-admin", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if crb.RoleRef.Name != "cluster-admin" {
			t.Errorf("cleanup-admin binds %s", crb.RoleRef.Name)
		}
		for _, sa := range []string{"default", "orchestrator", "forensics"} {
			if _, err := cs.CoreV1().ServiceAccounts(sandbox.DemoNamespace).Get(ctx, sa, metav1.GetOptions{}); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("database", func(t *testing.T) {
		checkRows(t, s.DatabaseURL)
		sandboxtest.ResetDB(t, s)
		checkRows(t, s.DatabaseURL)
	})

	t.Run("non-admin user", func(t *testing.T) {
		cfg, err := s.AddKubeUser("intruder", []string{"contractors"})
		if err != nil {
			t.Fatal(err)
		}
		intruder, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = intruder.CoreV1().Secrets(sandbox.DemoNamespace).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing secrets as a non-admin: err = %v, want Forbidden", err)
		}
	})
}

// checkRows checks the seeded row counts, as the application role.
func checkRows(t *testing.T, url string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	queries := []struct{ sql, want string }{
		{"SELECT count(*) FROM users", "50"},
		{"SELECT max(id) FROM users", "50"},
		{"SELECT role FROM users WHERE email = 'breakglass@example.com'", "admin"},
		{"SELECT count(*) FROM api_keys", "121"},
		{"SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL", "12"},
		// The break-glass keys by id and prefix, and the attacker's key named like one.
		{"SELECT string_agg(id || ':' || name || ':' || key_prefix || ':' || user_id, ',' ORDER BY id) FROM api_keys WHERE name LIKE 'break-glass-%'",
			"119:break-glass-primary:sk_live_bg01a7f3:1,120:break-glass-secondary:sk_live_bg02c9e8:1,121:break-glass-primary:sk_live_7e41c0d9:13"},
		{"SELECT count(*) FROM audit_events", "3034"},
		{`SELECT count(*) FROM audit_events
		  WHERE (ip_address << '203.0.113.0/24' OR ip_address = '198.51.100.23' OR ip_address << '2001:db8::/32')
		    AND timestamp > now() - interval '24 hours'`, "434"},
		{`SELECT string_agg(DISTINCT user_id::text, ',') FROM audit_events
		  WHERE event_type = 'login_success' AND NOT (ip_address << '10.0.0.0/8' OR ip_address << '172.16.0.0/12'
		    OR ip_address << '192.168.0.0/16' OR ip_address << 'fd00::/8' OR ip_address << '::ffff:10.0.0.0/104')`, "13,21,7"},
		{"SELECT count(*) FROM audit_events WHERE timestamp < now() - interval '8 days' OR timestamp > now()", "0"},
	}
	for _, q := range queries {
		var got string
		if err := conn.QueryRow(ctx, "SELECT ("+q.sql+")::text").Scan(&got); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
		if got != q.want {
			t.Errorf("%s = %s, want %s", q.sql, got, q.want)
		}
	}
}

func listPods(t *testing.T, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s/%s phase = %s, want Running", ns, p.Name, p.Status.Phase)
		}
	}
	return pods.Items
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestSeedPods(t *testing.T) {
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	ns := "seedpods-test"
	start := time.Now()
	if err := sandbox.SeedPods(t.Context(), cs, ns, n, map[string]string{"app": "bench"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("SeedPods(%d) took %s", n, time.Since(start))
	if got := len(listPods(t, cs, ns, "app=bench")); got != n {
		t.Errorf("%d pods, want %d", got, n)
	}
}

// TestSeededPodsServeLogs reads the seeded pods' logs as a client would:
// through the real API server, which proxies pods/log to the sandbox's
// simulated kubelet of the pod's node.
func TestSeededPodsServeLogs(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	logs := func(ns, pod string, o corev1.PodLogOptions) (string, error) {
		rc, err := cs.CoreV1().Pods(ns).GetLogs(pod, &o).Stream(ctx)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	for _, name := range sandbox.NodeNames {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var internal, hostname string
		for _, a := range n.Status.Addresses {
			switch a.Type {
			case corev1.NodeInternalIP:
				internal = a.Address
			case corev1.NodeHostName:
				hostname = a.Address
			}
		}
		if n.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 || internal != "127.0.0.1" || hostname != name {
			t.Errorf("node %s: kubelet port %d, InternalIP %q, Hostname %q", name, n.Status.DaemonEndpoints.KubeletEndpoint.Port, internal, hostname)
		}
	}

	orch := listPods(t, cs, sandbox.DemoNamespace, "app=orchestrator")
	day := int64(24 * 3600)
	total := 0
	for _, p := range orch {
		text, err := logs(p.Namespace, p.Name, corev1.PodLogOptions{Container: "orchestrator", SinceSeconds: &day})
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if len(lines) < 500 {
			t.Errorf("%s: %d lines in 24h, want a day of traffic", p.Name, len(lines))
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 3 {
				t.Fatalf("%s: line %q", p.Name, l)
			}
			ts, err := time.Parse(time.RFC3339, f[0])
			if err != nil || time.Since(ts) > 24*time.Hour+time.Minute || time.Until(ts) > 0 {
				t.Errorf("%s: line outside sinceSeconds=%d: %q (%v)", p.Name, day, l, err)
			}
			if !largeTransfer(l) {
				continue
			}
			total++
			if !regexp.MustCompile(` user_id=(7|13|21) ip=(198\.51\.100\.23|203\.0\.113\.77|2001:db8:bad:1::21) `).MatchString(l) {
				t.Errorf("a large transfer not from the attacker: %q", l)
			}
		}
	}
	if total != 60 {
		t.Errorf("%d large transfers in the last 24h over the 3 replicas, want the attack's 60 (each logged once)", total)
	}

	pod := orch[0].Name
	t.Run("kubelet options", func(t *testing.T) {
		limit, tail := int64(100), int64(5)
		if text, err := logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{LimitBytes: &limit}); err != nil || len(text) != 100 {
			t.Errorf("limitBytes=100: %d bytes, %v", len(text), err)
		}
		text, err := logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{TailLines: &tail, Timestamps: true})
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if err != nil || len(lines) != 5 {
			t.Fatalf("tailLines=5: %d lines, %v", len(lines), err)
		}
		for _, l := range lines {
			kubeletTime, rest, _ := strings.Cut(l, " ")
			appTime, _, _ := strings.Cut(rest, " ")
			// The runtime's time, in nanoseconds, of the line the program
			// stamped in milliseconds.
			k, err1 := time.Parse(time.RFC3339Nano, kubeletTime)
			a, err2 := time.Parse(time.RFC3339Nano, appTime)
			if err1 != nil || err2 != nil || k.Before(a) || k.Sub(a) >= time.Millisecond {
				t.Errorf("timestamps=true: %q", l)
			}
		}
		since := metav1.NewTime(time.Now().Add(-10 * time.Minute))
		text, err = logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{SinceTime: &since})
		if err != nil {
			t.Errorf("sinceTime 10m ago: %v", err)
		}
		// The story's lines, and those of the requests earlier tests made.
		for l := range strings.Lines(text) {
			at, _, _ := strings.Cut(l, " ")
			if ts, err := time.Parse(time.RFC3339Nano, at); err != nil || ts.Before(since.Time) {
				t.Errorf("sinceTime 10m ago: line %q", l)
			}
		}
		// The same window reads the same: the log is generated, not random.
		to := time.Now().Add(-time.Minute)
		a, _ := logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{Timestamps: true})
		b, _ := logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{Timestamps: true})
		if cut(a, to) != cut(b, to) || len(cut(a, to)) < 100_000 {
			t.Errorf("two reads differ before %s (%d and %d bytes)", to, len(cut(a, to)), len(cut(b, to)))
		}
		_, err = logs(sandbox.DemoNamespace, pod, corev1.PodLogOptions{Previous: true})
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `previous terminated container "orchestrator" in pod "`+pod+`" not found`) {
			t.Errorf("previous of a container that never restarted: %v", err)
		}
	})

	t.Run("other programs", func(t *testing.T) {
		if text, err := logs(sandbox.DemoNamespace, "postgres-0", corev1.PodLogOptions{}); err != nil || !strings.Contains(text, "database system is ready to accept connections") {
			t.Errorf("postgres-0: %v\n%.300s", err, text)
		}
		if text, err := logs(sandbox.DemoNamespace, "forensics", corev1.PodLogOptions{}); err != nil || text != "" {
			t.Errorf("forensics (sleep infinity) printed %q, %v", text, err)
		}
		exporters := listPods(t, cs, sandbox.MonitoringNamespace, "app=node-exporter")
		if text, err := logs(sandbox.MonitoringNamespace, exporters[0].Name, corev1.PodLogOptions{}); err != nil || !strings.Contains(text, `msg="Listening on" address=[::]:9100`) {
			t.Errorf("node-exporter: %v\n%s", err, text)
		}
	})

	t.Run("pods the sandbox did not seed", func(t *testing.T) {
		ns := "kubelet-test"
		if err := sandbox.SeedPods(ctx, cs, ns, 2, map[string]string{"app": "orchestrator"}); err != nil {
			t.Fatal(err)
		}
		pods := listPods(t, cs, ns, "app=orchestrator")
		// Pods running the orchestrator's image log its traffic, and share
		// the attack's requests between them.
		transfers := 0
		for _, p := range pods {
			text, err := logs(ns, p.Name, corev1.PodLogOptions{SinceSeconds: &day})
			if err != nil {
				t.Fatal(err)
			}
			for l := range strings.Lines(text) {
				if largeTransfer(l) {
					transfers++
				}
			}
		}
		if transfers != 60 {
			t.Errorf("%d gigabyte transfers over 2 replicas, want 60", transfers)
		}
		// Another image printed nothing; a container with no status is not
		// available (400), as the kubelet says. kwok runs the pod first;
		// then its status loses the second container's, which kwok, done
		// with a Running pod, leaves so.
		other := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "other"},
			Spec: corev1.PodSpec{NodeName: sandbox.NodeNames[1], Containers: []corev1.Container{
				{Name: "app", Image: "example.com/app:1"}, {Name: "late", Image: "example.com/app:1"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		other = waitPod(t, cs, ns, "other", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		other.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "example.com/app:1", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, other, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if text, err := logs(ns, "other", corev1.PodLogOptions{Container: "app"}); err != nil || text != "" {
			t.Errorf("another image: %q, %v", text, err)
		}
		if _, err := logs(ns, "other", corev1.PodLogOptions{Container: "late"}); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `container "late" in pod "other" is not available`) {
			t.Errorf("a container without status: %v", err)
		}
	})
}

// waitPod waits up to a minute for pod ns/name to satisfy ok and returns it.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, name string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("phase %s, conditions %+v", p.Status.Phase, p.Status.Conditions)
			}
			t.Fatalf("pod %s/%s: %v", ns, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// largeTransfer is the runbook's exfiltration-in-logs test: a download,
// export or bulk query whose last number (bytes) exceeds 1,000,000.
func largeTransfer(line string) bool {
	f := strings.Fields(line)
	n, _ := strconv.ParseInt(strings.TrimPrefix(f[len(f)-1], "bytes="), 10, 64)
	return regexp.MustCompile(`(download|export|bulk_query)`).MatchString(line) && n > 1_000_000
}

// cut keeps the timestamped lines of text before t.
func cut(text string, t time.Time) string {
	var b strings.Builder
	for l := range strings.Lines(text) {
		ts, _, _ := strings.Cut(l, " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.Before(t) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestSnapshotControllerReadiesSnapshots takes VolumeSnapshots through the
// real API, which the sandbox's stand-in for the snapshot controller and
// CSI sidecar answers.
func TestSnapshotControllerReadiesSnapshots(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := t.Context()
	sc, err := snapclient.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	api := sc.SnapshotV1().VolumeSnapshots(sandbox.DemoNamespace)
	create := func(name, pvc string, class *string) {
		t.Helper()
		_, err := api.Create(ctx, &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}, VolumeSnapshotClassName: class},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { api.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	// wait returns the snapshot once done says so, or fails after 10s.
	wait := func(name string, done func(*snapv1.VolumeSnapshot) bool) *snapv1.VolumeSnapshot {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			vs, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if done(vs) {
				return vs
			}
			if time.Now().After(deadline) {
				t.Fatalf("VolumeSnapshot %s after 10s: %+v", name, vs.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ready := func(vs *snapv1.VolumeSnapshot) bool {
		return vs.Status != nil && ptr.Deref(vs.Status.ReadyToUse, false)
	}
	failed := func(vs *snapv1.VolumeSnapshot) bool { return vs.Status != nil && vs.Status.Error != nil }

	start := time.Now()
	create("postgres-snap", "postgres-pvc", ptr.To(sandbox.SnapshotClass))
	vs := wait("postgres-snap", ready)
	t.Logf("ready after %s", time.Since(start).Round(time.Millisecond))
	st := vs.Status
	if st.BoundVolumeSnapshotContentName == nil || st.CreationTime == nil || st.RestoreSize == nil || st.RestoreSize.String() != "10Gi" || st.Error != nil {
		t.Fatalf("status: %+v", st)
	}
	content, err := sc.SnapshotV1().VolumeSnapshotContents().Get(ctx, *st.BoundVolumeSnapshotContentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref := content.Spec.VolumeSnapshotRef
	if content.Name != "snapcontent-"+string(vs.UID) || ref.UID != vs.UID || ref.Name != vs.Name || ref.Namespace != vs.Namespace ||
		content.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentDelete || content.Spec.Driver != sandbox.CSIDriver ||
		ptr.Deref(content.Spec.Source.VolumeHandle, "") != "vol-postgres-7f3c2a" || ptr.Deref(content.Spec.VolumeSnapshotClassName, "") != sandbox.SnapshotClass {
		t.Errorf("content: %+v", content.Spec)
	}
	if cst := content.Status; cst == nil || !ptr.Deref(cst.ReadyToUse, false) || cst.SnapshotHandle == nil || ptr.Deref(cst.RestoreSize, 0) != 10<<30 {
		t.Errorf("content status: %+v", content.Status)
	}

	// Without a class, the driver's default class is written in.
	create("postgres-snap-default", "postgres-pvc", nil)
	if vs := wait("postgres-snap-default", ready); ptr.Deref(vs.Spec.VolumeSnapshotClassName, "") != sandbox.SnapshotClass {
		t.Errorf("default class: %v", vs.Spec.VolumeSnapshotClassName)
	}

	// What keeps a snapshot from being taken is reported as the real
	// controller reports it.
	create("no-class", "postgres-pvc", ptr.To("no-such-class"))
	vs = wait("no-class", failed)
	if msg := *vs.Status.Error.Message; msg != `Failed to create snapshot content with error failed to get input parameters to create snapshot no-class: "volumesnapshotclass.snapshot.storage.k8s.io \"no-such-class\" not found"` || ptr.Deref(vs.Status.ReadyToUse, true) {
		t.Errorf("missing class: %q, ready %v", msg, vs.Status.ReadyToUse)
	}
	create("no-claim", "no-such-pvc", ptr.To(sandbox.SnapshotClass))
	vs = wait("no-claim", failed)
	if msg := *vs.Status.Error.Message; msg != "Failed to create snapshot content with error snapshot controller failed to update no-claim on API server: cannot get claim from snapshot" {
		t.Errorf("missing claim: %q", msg)
	}

	// Another driver's snapshots are not this controller's.
	classes := sc.SnapshotV1().VolumeSnapshotClasses()
	if _, err := classes.Create(ctx, &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "other-driver"}, Driver: "other.csi.example.com",
		DeletionPolicy: snapv1.VolumeSnapshotContentRetain}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { classes.Delete(context.Background(), "other-driver", metav1.DeleteOptions{}) })
	create("other-driver", "postgres-pvc", ptr.To("other-driver"))
	time.Sleep(time.Second)
	if vs, err := api.Get(ctx, "other-driver", metav1.GetOptions{}); err != nil || vs.Status != nil {
		t.Errorf("another driver's snapshot: %+v, %v", vs.Status, err)
	}
}
