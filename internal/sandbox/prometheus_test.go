package sandbox_test

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// The query of the cluster compromise runbook's validate check
// security-alerts-loaded, with its default security_rule_group, and `or
// vector(0)` so that no group loaded reads 0 rather than no series.
const securityRulesQuery = `sum(prometheus_rule_group_rules{rule_group=~".*;security-incident-recurrence"}) or vector(0)`

// The sandbox's Prometheus loads the rules ConfigMaps of namespace
// monitoring as a cluster's kubelet and config-reload sidecar would make
// it: the Kubernetes cluster compromise runbook's alert rules are not
// loaded before their ConfigMap exists, are once it is applied (its 7
// rules, in the query the runbook's validate asks), stay loaded while
// another ConfigMap holds rules Prometheus refuses (the reload fails, the
// sandbox carries on), and are unloaded when the ConfigMap is deleted.
func TestSandboxPrometheusLoadsAndUnloadsTheRulesConfigMaps(t *testing.T) {
	s := sandboxtest.Get(t)
	env, err := os.ReadFile(filepath.Join(filepath.Dir(s.KubeconfigPath), "env"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "export PROMETHEUS_URL='" + s.PrometheusURL + "'\n"; s.PrometheusURL == "" || !strings.Contains(string(env), want) {
		t.Errorf("env lacks %q", want)
	}
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cms := cs.CoreV1().ConfigMaps(sandbox.MonitoringNamespace)

	if v := promValue(t, s.PrometheusURL, securityRulesQuery); v != 0 {
		t.Fatalf("before the ConfigMap exists %d security rules are loaded", v)
	}
	if g := securityGroups(t, s.PrometheusURL); len(g) != 0 {
		t.Fatalf("before the ConfigMap exists Prometheus has the rule groups %v", g)
	}

	data, err := os.ReadFile("../../runbooks/manifests/k8s-cluster-compromise/monitoring/enhanced-security-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := &corev1.ConfigMap{}
	if err := yaml.UnmarshalStrict(data, alerts); err != nil {
		t.Fatal(err)
	}
	if alerts.Namespace != sandbox.MonitoringNamespace || alerts.Labels[sandbox.RulesLabel] != sandbox.RulesLabelValue {
		t.Fatalf("the runbook's manifest is %s/%s labelled %v", alerts.Namespace, alerts.Name, alerts.Labels)
	}
	if _, err := cms.Create(ctx, alerts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(ctx, alerts.Name, metav1.DeleteOptions{}) })
	waitProm(t, "the runbook's rules loaded", func() bool {
		g := securityGroups(t, s.PrometheusURL)
		return g["security-incident-recurrence"] == 7 && promValue(t, s.PrometheusURL, securityRulesQuery) == 7
	})

	// Rules Prometheus refuses: the reload fails, the rules it had stay.
	broken := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "broken-rules", Namespace: sandbox.MonitoringNamespace,
			Labels: map[string]string{sandbox.RulesLabel: sandbox.RulesLabelValue}},
		Data: map[string]string{"broken.yaml": "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(\n"},
	}
	if _, err := cms.Create(ctx, broken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(ctx, broken.Name, metav1.DeleteOptions{}) })
	const reloadOK = "prometheus_config_last_reload_successful"
	waitProm(t, "the reload of broken rules refused", func() bool { return promValue(t, s.PrometheusURL, reloadOK) == 0 })
	if v := promValue(t, s.PrometheusURL, securityRulesQuery); v != 7 {
		t.Errorf("after a refused reload %d security rules are loaded, want the 7 loaded before", v)
	}
	if err := cms.Delete(ctx, broken.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProm(t, "a reload accepted again once the broken rules are gone", func() bool { return promValue(t, s.PrometheusURL, reloadOK) == 1 })

	if err := cms.Delete(ctx, alerts.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProm(t, "the runbook's rules unloaded", func() bool {
		return len(securityGroups(t, s.PrometheusURL)) == 0 && promValue(t, s.PrometheusURL, securityRulesQuery) == 0
	})
}

// waitProm polls cond until it holds or 30s pass.
func waitProm(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("integration: %s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s after %s", what, time.Since(start).Round(10*time.Millisecond))
}

// promValue runs an instant query whose result is one sample and returns
// its value as an integer (0 for an empty result).
func promValue(t *testing.T, base, query string) int {
	t.Helper()
	var out struct {
		Status string
		Data   struct {
			Result []struct{ Value [2]any }
		}
	}
	sandboxtest.GetJSON(t, base+"/api/v1/query?query="+url.QueryEscape(query), &out)
	if out.Status != "success" || len(out.Data.Result) > 1 {
		t.Fatalf("%s: %+v", query, out)
	}
	if len(out.Data.Result) == 0 {
		return 0
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: value %q", query, s)
	}
	return int(v)
}

// securityGroups returns the loaded rule groups whose name or file says
// security, with their number of rules (GET /api/v1/rules).
func securityGroups(t *testing.T, base string) map[string]int {
	t.Helper()
	var out struct {
		Data struct {
			Groups []struct {
				Name  string
				File  string
				Rules []json.RawMessage
			}
		}
	}
	sandboxtest.GetJSON(t, base+"/api/v1/rules", &out)
	groups := map[string]int{}
	for _, g := range out.Data.Groups {
		if strings.Contains(strings.ToLower(g.Name+g.File), "security") {
			groups[g.Name] = len(g.Rules)
		}
	}
	return groups
}
