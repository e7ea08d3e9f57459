package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/prompt"
)

// Run-only flags live on the commands that run steps; everything else
// neither offers nor accepts them.
func TestRunFlagsOnlyOnCommandsThatRun(t *testing.T) {
	runFlags := []string{"--dry-run", "--yes", "--set", "--runbook"}
	for _, args := range [][]string{{"contain"}, {"validate"}, {"run"}} {
		r := runOffline(append(args, "--help")...)
		for _, fl := range runFlags {
			if !strings.Contains(r.stdout, fl) {
				t.Errorf("%v --help does not offer %s", args, fl)
			}
		}
	}
	for _, args := range [][]string{{"version"}, {"actions"}, {"status"}, {"declare"}, {"evidence", "list"}, {"runbook", "list"}, {}} {
		r := runOffline(append(args, "--help")...)
		_, flags, _ := strings.Cut(r.stdout, "Flags:") // the root's prose mentions --dry-run
		for _, fl := range runFlags {
			if strings.Contains(flags, fl) {
				t.Errorf("irctl %v --help offers %s", args, fl)
			}
		}
	}
	if r := runOffline("undo", "--help"); !strings.Contains(r.stdout, "--dry-run") || !strings.Contains(r.stdout, "--yes") || strings.Contains(r.stdout, "--runbook") {
		t.Errorf("undo --help: want --dry-run and --yes, no --runbook:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"runbook", "show"}, {"runbook", "validate"}} {
		r := runOffline(append(args, "--help")...)
		if !strings.Contains(r.stdout, "--runbook") || !strings.Contains(r.stdout, "--set") || strings.Contains(r.stdout, "--dry-run") {
			t.Errorf("%v --help: want -f and --set, no --dry-run:\n%s", args, r.stdout)
		}
	}
	if r := runOffline("version", "--dry-run=server"); r.code != exitcode.Usage || !strings.Contains(r.stderr, "unknown flag: --dry-run") {
		t.Errorf("version --dry-run: exit %d %q", r.code, r.stderr)
	}
	if r := runOffline("runbook", "show", "-f", "security-incident", "--set", "namespace=prod"); r.code != 0 {
		t.Errorf("runbook show -f --set: exit %d %q", r.code, r.stderr)
	}
	// A step its only_if skips says so, until the value is given.
	if r := runOffline("runbook", "show"); !strings.Contains(r.stdout, "skipped, only_if is empty: no suspicious_ips given") {
		t.Errorf("runbook show does not say compromised-accounts is skipped:\n%s", r.stdout)
	}
	if r := runOffline("runbook", "show", "--set", "suspicious_ips=203.0.113.7"); strings.Contains(r.stdout, "skipped, only_if is empty") {
		t.Errorf("runbook show --set suspicious_ips still says skipped:\n%s", r.stdout)
	}
}

// The factory parses --dry-run and -o once, as the flags are set.
func TestDryRunAndOutputParsedOnce(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		dryRun action.DryRun
		json   bool
	}{
		{[]string{"contain"}, action.DryRunNone, false},
		{[]string{"contain", "--dry-run"}, action.DryRunClient, false},
		{[]string{"contain", "--dry-run=server", "-o", "json"}, action.DryRunServer, true},
	} {
		f := newFactory(IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
		root := newRootCmd(f)
		cmd, rest, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if f.dryRun != tc.dryRun || f.jsonOutput() != tc.json {
			t.Errorf("%v: dry run %q json %v", tc.args, f.dryRun, f.jsonOutput())
		}
	}
	for args, want := range map[string]string{"contain --dry-run=maybe": "--dry-run=maybe: want none, client or server", "actions -o yaml": "--output=yaml: want text or json"} {
		r := runOffline(strings.Fields(args)...)
		if r.code != exitcode.Usage || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d %q", args, r.code, r.stderr)
		}
	}
}

type answer bool

func (a answer) Confirm(context.Context, string, string) (bool, error) { return bool(a), nil }
func (a answer) CanConfirm() bool                                      { return true }

// The factory builds the prompter once; a test can put its own in.
func TestFactoryPrompterCanBeInjected(t *testing.T) {
	f := newFactory(IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	if _, err := f.prompt().Confirm(context.Background(), "x", ""); err != prompt.ErrNoTerminal {
		t.Errorf("without a terminal the default prompter must refuse, got %v", err)
	}
	f = newFactory(IOStreams{})
	f.prompter = answer(true)
	if ok, err := f.prompt().Confirm(context.Background(), "x", ""); !ok || err != nil {
		t.Errorf("injected prompter not used: %v %v", ok, err)
	}
}

func TestActionsShowTypesDefaultsRequiredAndSecret(t *testing.T) {
	r := runOffline("actions", "-o", "json")
	var views []actionView
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil {
		t.Fatal(err)
	}
	params := map[string]paramView{}
	for _, v := range views {
		for _, p := range v.Params {
			params[v.Name+"."+p.Name] = p
		}
	}
	for k, want := range map[string]paramView{
		"k8s.drain.timeout":           {Type: "duration", Default: "2m0s"},
		"k8s.drain.ignore_daemonsets": {Type: "bool", Default: true},
		"k8s.drain.grace_period":      {Type: "int", Default: float64(-1)},
		"k8s.label.namespace":         {Type: "string", Required: true},
		"sql.query.format":            {Type: "string", Default: "jsonl"},
	} {
		got := params[k]
		if got.Type != want.Type || got.Required != want.Required || got.Default != want.Default {
			t.Errorf("%s = %+v, want %+v", k, got, want)
		}
	}
	r = runOffline("actions")
	if !strings.Contains(r.stdout, "timeout               duration  2m0s") || !strings.Contains(r.stdout, "(required)") {
		t.Errorf("text listing lacks types and defaults:\n%s", r.stdout)
	}
}
