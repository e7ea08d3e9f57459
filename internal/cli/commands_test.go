package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	irctl "irctl.dev/irctl"
	"irctl.dev/irctl/internal/action/builtin"
	"irctl.dev/irctl/internal/exitcode"
)

// runOffline runs irctl with commands that need no server.
func runOffline(args ...string) result {
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestShippedRunbooksValidate(t *testing.T) {
	files, err := fs.Glob(irctl.Runbooks, "runbooks/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped runbooks: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".yaml")
		r := runOffline("runbook", "validate", name)
		if r.code != 0 || !strings.Contains(r.stdout, ": ok") {
			t.Errorf("%s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	if r := runOffline("runbook", "list"); r.code != 0 || !strings.Contains(r.stdout, "security-incident") {
		t.Errorf("runbook list: %+v", r)
	}
}

func TestValidateReportsEveryProblemAndExits2(t *testing.T) {
	r := runOffline("runbook", "validate", "../../testdata/runbooks/typos.yaml")
	if r.code != exitcode.Usage {
		t.Errorf("exit %d, want 2", r.code)
	}
	if n := strings.Count(r.stdout, "typos.yaml:"); n < 6 {
		t.Errorf("want every problem on its own line, got %d:\n%s", n, r.stdout)
	}
}

func TestActionsListsEveryRegisteredAction(t *testing.T) {
	r := runOffline("actions", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var specs []struct {
		Name        string
		Destructive bool
		Params      []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &specs); err != nil {
		t.Fatal(err)
	}
	names := builtin.Registry().Names()
	if len(specs) != len(names) {
		t.Fatalf("listed %d actions, registry has %d", len(specs), len(names))
	}
	for i, s := range specs {
		if s.Name != names[i] || len(s.Params) == 0 {
			t.Errorf("action %d: %+v", i, s)
		}
	}
}

func TestOfflineCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"version"}, 0, "irctl "},
		{[]string{"completion", "bash"}, 0, "bash completion"},
		{[]string{"contain", "--help"}, 0, "--dry-run"},
		{[]string{"contain", "--incident", "nope"}, exitcode.Usage, "SEC-YYYYMMDD-NNN"},
		{[]string{"declare", "--severity", "P9", "--title", "x", "--state-dir", "/nonexistent/x"}, exitcode.Usage, "P0, P1"},
		{[]string{"declare", "--title", "x"}, exitcode.Usage, "severity"},
		{[]string{"undo", "cleanup"}, exitcode.Usage, "unknown phase"},
		{[]string{"-o", "yaml", "actions"}, exitcode.Usage, "--output=yaml"},
		{[]string{"notify", "--incident", "SEC-20260101-001", "--state-dir", "/nonexistent"}, exitcode.Usage, "not found"},
	} {
		r := runOffline(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("%v: exit %d, output %q; want %d and %q", tc.args, r.code, r.stdout+r.stderr, tc.code, tc.want)
		}
	}
}

func TestPhaseWithoutStepsSaysSo(t *testing.T) {
	dir := t.TempDir()
	r := runOffline("declare", "--severity", "P2", "--title", "t", "--state-dir", dir)
	id := strings.TrimSpace(r.stdout)
	// A runbook of its own: the shipped ones have steps in every phase.
	rb := filepath.Join(dir, "contain-only.yaml")
	if err := os.WriteFile(rb, []byte("apiVersion: irctl/v1\nkind: Runbook\nname: contain-only\nphases:\n  contain:\n    - name: look\n      action: manual\n      with: {instructions: look}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runOffline("notify", "--incident", id, "--state-dir", dir, "-f", rb)
	if r.code != exitcode.Usage || !strings.Contains(r.stderr, "no steps for phase notify") {
		t.Errorf("notify: exit %d %q", r.code, r.stderr)
	}
}
