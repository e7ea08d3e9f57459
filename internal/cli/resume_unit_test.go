package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

// journaled declares an incident at `at` in a state directory of its own,
// with recs in its journal, and returns a runner of irctl on it in-process
// (the given stdin, the incident and state directory set).
func journaled(t *testing.T, at time.Time, recs []incident.Record) (*incident.Incident, func(stdin string, args ...string) result) {
	t.Helper()
	dir := t.TempDir()
	inc, err := incident.Declare(dir, "P1", "t", "tester", at)
	if err != nil {
		t.Fatal(err)
	}
	j, err := inc.Journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	return inc, func(stdin string, args ...string) result {
		var out, errb bytes.Buffer
		code := Run(context.Background(), append([]string{"--state-dir", dir, "--incident", inc.ID}, args...), IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb})
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
}

// offline runs irctl on an incident whose journal holds recs; none of
// these commands talk to a server.
func offline(t *testing.T, recs []incident.Record, args ...string) result {
	t.Helper()
	_, run := journaled(t, time.Now(), recs)
	return run("", args...)
}

func TestResumeAsksAgainForSecretParams(t *testing.T) {
	r := offline(t, []incident.Record{{Kind: incident.KindRun, Command: "contain", Phases: []string{"contain"}, RunbookRef: "security-incident", DryRun: "none", Set: map[string]string{"namespace": "x", "jwt": "[redacted]"}}}, "resume", "--yes")
	if r.code != exitcode.Usage || !strings.Contains(r.stderr, "--set jwt=...") || !strings.Contains(r.stderr, "secret") {
		t.Errorf("exit %d, stderr %q; want exit 2 asking for --set jwt", r.code, r.stderr)
	}
}

func TestResumeWithoutARunSaysSo(t *testing.T) {
	r := offline(t, nil, "resume", "--yes")
	if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "no run to resume") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestResumeRefusesAChangedRunbook(t *testing.T) {
	r := offline(t, []incident.Record{{Kind: incident.KindRun, Command: "contain", Phases: []string{"contain"}, RunbookRef: "security-incident", RunbookHash: "0000", DryRun: "none"}}, "resume", "--yes")
	if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "changed since the run") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// status prints what the attacked systems said (targets, errors) with
// terminal escapes neutralised.
func TestStatusNeutralisesTerminalEscapes(t *testing.T) {
	r := offline(t, []incident.Record{
		{Kind: incident.KindOutcome, Phase: "contain", Step: "label", Result: "labelled pod/\x1b]0;owned\x07x", Error: ""},
		{Kind: incident.KindOutcome, Phase: "contain", Step: "evil\x1b[2J", Error: "server said \x1b[31mred\u202e"},
	}, "status")
	if r.code != 0 {
		t.Fatalf("status: exit %d %s", r.code, r.stderr)
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07\u202e") {
		t.Errorf("raw escape in status output: %q", r.stdout)
	}
	for _, want := range []string{`pod/\x1b]0;owned\x07x`, `evil\x1b[2J`, `\x1b[31mred\u202e`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output lacks %s:\n%s", want, r.stdout)
		}
	}
}
