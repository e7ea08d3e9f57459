package cli

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/redact"
	"irctl.dev/irctl/internal/runbook"
)

// setStdinRunbook has a secret param for a new provider key and an
// eradicate step writing it into a Secret with k8s.secret-set.
const setStdinRunbook = `apiVersion: irctl/v1
kind: Runbook
name: set-stdin-test
params:
  namespace: {required: true}
  new_llm_key: {secret: true, required: true, description: the new provider key}
  other_key: {secret: true}
phases:
  eradicate:
    - name: store-new-llm-key
      action: k8s.secret-set
      with: {namespace: "{{ .namespace }}", name: llm-provider-keys, key: openai, value: "{{ .new_llm_key }}"}
`

func writeStdinRunbook(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rb.yaml")
	if err := os.WriteFile(p, []byte(setStdinRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withStdin runs irctl in-process with stdin and a declared incident in a
// state directory of its own; the refusals tested with it happen before
// any server is contacted.
func withStdin(t *testing.T, stdin string, recs []incident.Record, args ...string) result {
	t.Helper()
	_, run := journaled(t, time.Now(), recs)
	return run(stdin, append([]string{"--kubeconfig", filepath.Join(t.TempDir(), "no-such-kubeconfig")}, args...)...)
}

func TestSetStdinRefusesWhatIsNotAnUnsetSecretParam(t *testing.T) {
	rb := writeStdinRunbook(t)
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"x\n", []string{"--set-stdin", "namespace"}, "--set-stdin namespace: param namespace of runbook " + rb + " is not secret (secret: true): give it with --set namespace=..."},
		{"x\n", []string{"--set-stdin", "no_such"}, `--set-stdin no_such: runbook ` + rb + ` has no param "no_such"`},
		{"x\n", []string{"--set-stdin", "new_llm_key", "--set", "new_llm_key=y"}, "--set-stdin new_llm_key and --set new_llm_key=... both given: use one"},
		{"x\nx\n", []string{"--set-stdin", "new_llm_key", "--set-stdin", "new_llm_key"}, "--set-stdin new_llm_key is given twice"},
		{"", []string{"--set-stdin", "new_llm_key"}, "--set-stdin new_llm_key: stdin ended before its value (one line per --set-stdin name, in the order given)"},
		{"x\n", []string{"--set-stdin", "new_llm_key", "--set-stdin", "other_key"}, "--set-stdin other_key: stdin ended before its value"},
		{"\r\n", []string{"--set-stdin", "new_llm_key"}, "--set-stdin new_llm_key: its line on stdin is empty"},
	} {
		r := withStdin(t, c.stdin, nil, append([]string{"eradicate", "-f", rb, "--set", "namespace=x", "--yes"}, c.args...)...)
		if r.code != exitcode.Usage || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// resume asks for the secret params again; --set-stdin gives them.
func TestResumeTakesSecretParamsFromStdin(t *testing.T) {
	rb := writeStdinRunbook(t)
	recs := []incident.Record{{Kind: incident.KindRun, Command: "eradicate", Phases: []string{"eradicate"}, RunbookRef: rb, RunbookHash: "0000", DryRun: "none",
		Set: map[string]string{"namespace": "x", "new_llm_key": "[redacted]"}}}
	r := withStdin(t, "", recs, "resume", "--yes")
	if r.code != exitcode.Usage || !strings.Contains(r.stderr, "--set new_llm_key=... or --set-stdin new_llm_key") {
		t.Errorf("without the secret: exit %d, stderr %q", r.code, r.stderr)
	}
	// Given from stdin, resume gets past the secret to the next check:
	// the runbook's hash (this record's is made up).
	r = withStdin(t, "sk-new\n", recs, "resume", "--yes", "--set-stdin", "new_llm_key")
	if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "changed since the run") {
		t.Errorf("with --set-stdin: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A new provider key piped to --set-stdin ends up in the Secret the
// orchestrator reads, and nowhere else: not in stdout or stderr (at trace
// level, text and JSON), the journal, the evidence or any other file of
// the incident. The fingerprint shown is the value's, under the
// incident's key.
func TestSetStdinSecretReachesTheClusterAndNothingElse(t *testing.T) {
	h := newHarness(t, 0)
	ctx := context.Background()
	old := "canary-old-" + randHex(8)
	if _, err := h.cs.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-provider-keys"},
		Data: map[string][]byte{"openai": []byte(old)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	canary := "canary-stdin-" + randHex(12)
	rb := writeStdinRunbook(t)
	var outputs []string
	for _, args := range [][]string{
		{"eradicate", "--dry-run=server", "-o", "json"},
		{"eradicate", "--yes", "--log-format", "json"},
		{"eradicate", "--yes"}, // the second time: the key already holds it
	} {
		r := h.runIn(ctx, canary+"\n", append(args, "-f", rb, "--set-stdin", "new_llm_key", "--log-level", "trace")...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		outputs = append(outputs, r.stdout, r.stderr)
	}
	st := h.run("status", "-o", "json")
	outputs = append(outputs, st.stdout, st.stderr)

	s, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "llm-provider-keys", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data["openai"]) != canary {
		t.Fatal("the Secret does not hold the value given on stdin")
	}
	incDir := filepath.Join(h.stateDir, h.incident)
	key, err := redact.LoadKey(incDir)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(outputs, "\n")
	fp := redact.Fingerprint(key, []byte(canary))
	if !strings.Contains(outputs[2], `set key "openai" of Secret `+h.ns+`/llm-provider-keys to `+fp+" (was "+redact.Fingerprint(key, []byte(old))+")") {
		t.Errorf("the result should show the value's fingerprint %s:\n%s", fp, outputs[2])
	}
	if !strings.Contains(outputs[4], "already holds the given value ("+fp+")") {
		t.Errorf("the second run should find the value in place:\n%s", outputs[4])
	}
	var reps []map[string]any
	if err := json.Unmarshal([]byte(outputs[0]), &reps); err != nil || !strings.Contains(outputs[0], fp) {
		t.Errorf("server dry run's JSON report should show the fingerprint: %v\n%s", err, outputs[0])
	}

	sources := map[string]string{"stdout/stderr": all}
	err = filepath.WalkDir(incDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		sources[strings.TrimPrefix(path, incDir+"/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sources["journal.jsonl"], `"new_llm_key":"[redacted]"`) {
		t.Errorf("the journal should record the param as redacted:\n%s", sources["journal.jsonl"])
	}
	for where, text := range sources {
		for what, c := range map[string]string{"the value from stdin": canary, "the previous value": old} {
			if strings.Contains(text, c) {
				t.Errorf("%s found in %s", what, where)
			}
		}
	}
}

// Every secret param of a runbook can come from stdin: the flag is on
// every command that runs steps.
func TestSetStdinIsOnEveryRunningCommand(t *testing.T) {
	root := newRootCmd(newFactory(IOStreams{}))
	for _, c := range root.Commands() {
		runs := runbook.IsPhase(c.Name()) || c.Name() == "run" || c.Name() == "resume"
		if has := c.Flags().Lookup("set-stdin") != nil; has != runs {
			t.Errorf("%s: --set-stdin offered %v, want %v", c.Name(), has, runs)
		}
	}
}

// On a terminal --set-stdin asks for the value and does not echo it; the
// step's confirmation follows. Ctrl-C at the question changes nothing and
// exits 130.
func TestSetStdinAsksWithoutEchoOnATerminal(t *testing.T) {
	h := newHarness(t, 0)
	ctx := context.Background()
	if _, err := h.cs.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-provider-keys"},
		Data: map[string][]byte{"openai": []byte("old")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := writeStdinRunbook(t)
	read := func() string {
		s, err := h.cs.CoreV1().Secrets(h.ns).Get(ctx, "llm-provider-keys", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["openai"])
	}

	term := h.startOnPTY("eradicate", "-f", rb, "--set-stdin", "new_llm_key")
	term.waitFor("new_llm_key (secret, not echoed): ", 1)
	term.send("\x03")
	if code := term.wait(); code != 130 || read() != "old" {
		t.Fatalf("Ctrl-C at the question: exit %d, Secret %q\n%s", code, read(), term.screen())
	}

	canary := "canary-typed-" + randHex(8)
	term = h.startOnPTY("eradicate", "-f", rb, "--set-stdin", "new_llm_key")
	term.waitFor("new_llm_key (secret, not echoed): ", 1)
	term.send(canary + "\r")
	term.waitFor("store-new-llm-key: set key", 1)
	term.send("y")
	if code := term.wait(); code != 0 {
		t.Fatalf("exit %d\n%s", code, term.screen())
	}
	if read() != canary {
		t.Error("the Secret does not hold the value typed")
	}
	if strings.Contains(term.screen(), canary) {
		t.Errorf("the value typed was shown:\n%s", term.screen())
	}
}
