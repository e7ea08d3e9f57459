package sandbox_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := sandbox.Serve(ctx, sandbox.Options{Dir: *dir, BinDir: *binDir, Seed: *seed, Log: os.Stdout}); err != nil {
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
		{"SELECT count(*) FROM api_keys", "120"},
		{"SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL", "12"},
		{"SELECT string_agg(name, ',' ORDER BY name) FROM api_keys WHERE name LIKE 'break-glass-%'", "break-glass-primary,break-glass-secondary"},
		{"SELECT count(*) FROM audit_events", "3033"},
		{`SELECT count(*) FROM audit_events
		  WHERE (ip_address << '203.0.113.0/24' OR ip_address = '198.51.100.23' OR ip_address << '2001:db8::/32')
		    AND timestamp > now() - interval '24 hours'`, "433"},
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
