package kubeaction

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/runbook"
	"irctl.dev/irctl/internal/sandbox"
)

// findRows runs k8s.find and returns its table's rows by "kind ns/name".
func (f *fixture) find(dry action.DryRun, p runbook.Params) (map[string]string, *action.Result, error) {
	f.t.Helper()
	a := Find{}
	plan := f.plan(a, dry, p)
	if plan.Noop || plan.Count != 0 {
		f.t.Errorf("a search changes nothing, but is never skipped: %+v", plan)
	}
	res, err := a.Apply(f.t.Context(), f.env(dry), p, plan)
	if err != nil {
		return nil, nil, err
	}
	rows := map[string]string{}
	for _, r := range res.Table.Rows {
		rows[r[0]+" "+nsName(r[1], r[2])] = r[3]
	}
	if res.Table.Total != len(res.Table.Rows) {
		f.t.Errorf("table total %d, %d rows", res.Table.Total, len(res.Table.Rows))
	}
	return rows, res, nil
}

func TestFindLocatesTheSeededAttack(t *testing.T) {
	f := newFixture(t)
	ks := metav1.NamespaceSystem
	cj, err := f.cs.BatchV1().CronJobs(ks).Get(t.Context(), sandbox.AttackCronJob, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the sandbox's seeded attack: %v", err)
	}

	// The attacker's service account, wherever it appears; a server dry run
	// searches as well, and writes nothing.
	rows, res, err := f.find(action.DryRunServer, Find{}.Spec().MustBind(map[string]any{"indicators": []string{"KUBE-cleanup"}}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"cronjob.batch " + ks + "/" + sandbox.AttackCronJob:                     {"name kube-cleanup", "label app=kube-cleanup", "service account kube-cleanup"},
		"job.batch " + ks + "/" + sandbox.AttackJob:                             {"name kube-cleanup-init", "service account kube-cleanup"},
		"serviceaccount " + ks + "/" + sandbox.AttackServiceAccount:             {"name kube-cleanup"},
		"clusterrolebinding.rbac.authorization.k8s.io " + sandbox.AttackBinding: {"subject ServiceAccount kube-system/kube-cleanup"},
		"deployment.apps " + ks + "/" + sandbox.AttackDeployment:                {"service account kube-cleanup"},
	}
	for obj, whats := range want {
		for _, w := range whats {
			if !strings.Contains(rows[obj], w) {
				t.Errorf("%s: matched %q, want %q (all rows: %v)", obj, rows[obj], w, rows)
			}
		}
	}
	if !strings.Contains(res.Summary, "match indicators kube-cleanup") {
		t.Errorf("summary: %s", res.Summary)
	}
	if now, _ := f.cs.BatchV1().CronJobs(ks).Get(t.Context(), sandbox.AttackCronJob, metav1.GetOptions{}); now.ResourceVersion != cj.ResourceVersion {
		t.Error("a search changed the CronJob")
	}

	// Images from the attacker's registry, and from any registry the
	// platform does not use.
	rows, _, err = f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"registries": []string{"203.0.113.66:5000"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rows["deployment.apps "+ks+"/"+sandbox.AttackDeployment], "from registry 203.0.113.66:5000") {
		t.Errorf("rogue registry: %v", rows)
	}
	rows, _, err = f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"namespace": ks,
		"allowed_registries": []string{"ghcr.io/llm-orchestrator", "docker.io/library", "quay.io/prometheus", "registry.k8s.io"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"job.batch " + ks + "/" + sandbox.AttackJob, "deployment.apps " + ks + "/" + sandbox.AttackDeployment} {
		if !strings.Contains(rows[obj], "not allowed") {
			t.Errorf("%s should use a registry not allowed: %v", obj, rows)
		}
	}
	if r := rows["cronjob.batch "+ks+"/"+sandbox.AttackCronJob]; r != "" {
		t.Errorf("the CronJob runs docker.io/library/busybox, which is allowed: %s", r)
	}

	// Validate: expect_none fails while the indicators are there, and
	// passes where there are none.
	_, _, err = f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"indicators": []string{"kube-cleanup"}, "expect_none": true}))
	if err == nil || !strings.Contains(err.Error(), "expected no match") || !strings.Contains(err.Error(), sandbox.AttackCronJob) {
		t.Errorf("expect_none with the attack in place: %v", err)
	}
	rows, _, err = f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"indicators": []string{"no-such-indicator-" + randHex(4)}, "patterns": []string{`^xmrig-[0-9]{9}$`}, "expect_none": true}))
	if err != nil || len(rows) != 0 {
		t.Errorf("expect_none with nothing to find: %v %v", rows, err)
	}
}

func TestFindSearchesSecretsByMetadataOnlyAndEveryKind(t *testing.T) {
	f := newFixture(t)
	marker := "ioc-" + randHex(4)
	value := "value-" + marker
	if _, err := f.cs.CoreV1().Secrets(f.ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "planted-" + marker, Labels: map[string]string{"dropper": marker}},
		Data:       map[string][]byte{"payload": []byte(value)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, res, err := f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"kinds": []string{"secrets"}, "indicators": []string{marker}, "namespace": f.ns}))
	if err != nil {
		t.Fatal(err)
	}
	got := rows["secret "+f.ns+"/planted-"+marker]
	if !strings.Contains(got, "name planted-"+marker) || !strings.Contains(got, "label dropper="+marker) {
		t.Errorf("secret by metadata: %v", rows)
	}
	f.noLeak([]byte(value), res)
	// Only metadata is read: an indicator in the value alone finds nothing.
	if rows, _, _ := f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"kinds": []string{"secrets"}, "indicators": []string{"value-" + marker}, "namespace": f.ns})); len(rows) != 0 {
		t.Errorf("a Secret's value was searched: %v", rows)
	}

	// Every listable kind: the Secret and the attack's binding are found.
	plan := f.plan(Find{}, action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"kinds": []string{"*"}, "indicators": []string{marker}}))
	if len(plan.State.([]resolvedResource)) <= len(DefaultFindKinds) {
		t.Errorf("every listable kind should be more than the defaults: %s", plan.Summary)
	}
	rows, _, err = f.find(action.DryRunNone, Find{}.Spec().MustBind(map[string]any{"kinds": []string{"*"}, "indicators": []string{marker, sandbox.AttackBinding}}))
	if err != nil {
		t.Fatal(err)
	}
	if rows["secret "+f.ns+"/planted-"+marker] == "" || rows["clusterrolebinding.rbac.authorization.k8s.io "+sandbox.AttackBinding] == "" {
		t.Errorf("kinds *: %v", rows)
	}
	perms := Find{}.Permissions(Find{}.Spec().MustBind(map[string]any{"kinds": []string{"*"}, "indicators": []string{"x"}}))
	if len(perms) != 1 || perms[0].Resource != "*" || perms[0].Group != "*" {
		t.Errorf("kinds * must declare list on everything: %v", perms)
	}
}

func TestFindValidatesItsParams(t *testing.T) {
	v := Find{}.Spec().Validate
	for _, p := range []map[string]any{
		{},
		{"indicators": []string{" "}},
		{"patterns": []string{"("}},
		{"patterns": []string{".*"}},
		{"indicators": []string{"x"}, "kinds": []string{"nonsense"}},
	} {
		if err := v(Find{}.Spec().MustBind(p)); err == nil {
			t.Errorf("%v: want an error", p)
		}
	}
}

// Pods kept as this incident's evidence (quarantined, forensic copies) still
// run the attacker's image on purpose, behind the isolation policy: they
// are reported apart, not as indicators left, so validate can pass while
// the evidence is kept. A pod merely labelled like a copy still counts.
func TestFindReportsThisIncidentsEvidenceApart(t *testing.T) {
	f := newFixture(t)
	image := "docker.io/xmrig/xmrig:" + randHex(3)
	pod := func(name string, labels, annotations map[string]string) {
		t.Helper()
		if _, err := f.cs.CoreV1().Pods(f.ns).Create(context.Background(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("miner", nil, nil)
	pod("quarantined", map[string]string{"quarantine": "true"}, map[string]string{QuarantinedForIncident: f.incident})
	pod("miner-forensic", map[string]string{LabelForensicCopyOf: "miner"}, map[string]string{AnnoIncident: f.incident})
	pod("lookalike", map[string]string{LabelForensicCopyOf: "miner"}, map[string]string{AnnoIncident: "SEC-20200101-001"})
	p := Find{}.Spec().MustBind(map[string]any{"kinds": []string{"pods"}, "indicators": []string{image}, "namespace": f.ns})
	rows, res, err := f.find(action.DryRunNone, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows["pod "+f.ns+"/miner"] == "" || rows["pod "+f.ns+"/lookalike"] == "" {
		t.Errorf("rows %v, want the miner and the lookalike only", rows)
	}
	if !strings.Contains(res.Summary, "2 more are pods kept as this incident's evidence") {
		t.Errorf("summary: %s", res.Summary)
	}
}
