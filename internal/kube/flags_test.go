package kube

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod.example:6443"}
- name: stage
  cluster: {server: "https://stage.example:6443"}
users:
- name: alice
  user: {token: from-kubeconfig}
contexts:
- name: prod
  context: {cluster: prod, user: alice, namespace: payments}
- name: stage
  context: {cluster: stage, user: alice}
current-context: prod
`

// The flags select and amend the kubeconfig as kubectl's do.
func TestConfigFlagsFollowKubectl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args              []string
		host, ns, token   string
		impersonate       string
		impersonateGroups int
	}{
		{args: nil, host: "https://prod.example:6443", ns: "payments", token: "from-kubeconfig"},
		{args: []string{"--context", "stage"}, host: "https://stage.example:6443", ns: "default", token: "from-kubeconfig"},
		{args: []string{"-n", "llm-orchestrator"}, host: "https://prod.example:6443", ns: "llm-orchestrator", token: "from-kubeconfig"},
		{args: []string{"-s", "https://10.0.0.1:6443", "--token", "t0k"}, host: "https://10.0.0.1:6443", ns: "payments", token: "t0k"},
		{args: []string{"--as", "bob", "--as-group", "a", "--as-group", "b"}, host: "https://prod.example:6443", ns: "payments", token: "from-kubeconfig", impersonate: "bob", impersonateGroups: 2},
	} {
		f := NewConfigFlags()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		f.AddFlags(fs)
		if err := fs.Parse(append([]string{"--kubeconfig", path}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.ToRESTConfig()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		ns, _, err := f.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != tc.host || ns != tc.ns || cfg.BearerToken != tc.token || cfg.Impersonate.UserName != tc.impersonate || len(cfg.Impersonate.Groups) != tc.impersonateGroups {
			t.Errorf("%v: host %s ns %s token %q as %q groups %v", tc.args, cfg.Host, ns, cfg.BearerToken, cfg.Impersonate.UserName, cfg.Impersonate.Groups)
		}
	}
}

// A missing kubeconfig named by --kubeconfig is an error, not a silent
// fallback to another cluster.
func TestConfigFlagsMissingKubeconfig(t *testing.T) {
	f := NewConfigFlags()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--kubeconfig", filepath.Join(t.TempDir(), "nope")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ToRESTConfig(); err == nil {
		t.Fatal("a missing --kubeconfig file gave no error")
	}
}
