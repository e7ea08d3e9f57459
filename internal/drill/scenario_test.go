package drill

import (
	"strings"
	"testing"

	"irctl.dev/irctl/internal/exitcode"
)

func TestShippedScenariosLoad(t *testing.T) {
	names := Names()
	for _, want := range []string{"break-glass-stolen", "cluster-compromise", "leaked-api-keys"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("scenario %s is not shipped: %v", want, names)
		}
	}
	for _, n := range names {
		sc, err := Find(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if sc.Name != n {
			t.Errorf("%s: name is %q", n, sc.Name)
		}
	}
}

func TestUnknownFieldIsAUsageErrorWithItsLine(t *testing.T) {
	data := "name: x\nrunbook: security-incident\nphases:\n  - phase: contain\n    sett: {a: b}\n"
	_, err := Load("x.yaml", []byte(data))
	if err == nil || exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "x.yaml:5:") || !strings.Contains(err.Error(), `unknown field "sett"`) {
		t.Fatalf("got %v (exit %d), want a usage error at x.yaml:5 naming sett", err, exitcode.Code(err))
	}
	data = "name: x\nrunbook: security-incident\nphases:\n  - phase: contian\nattacker:\n  credentials:\n    - {name: k, header: X-API-Key, value: v, stopped_by: nowhere}\n"
	_, err = Load("x.yaml", []byte(data))
	if err == nil || !strings.Contains(err.Error(), "x.yaml:4: phases[0]: unknown phase \"contian\"") || !strings.Contains(err.Error(), "x.yaml:7: attacker.credentials[0]: stopped_by") {
		t.Fatalf("got %v", err)
	}
}

func TestExpandRefusesAVariableTheSandboxLacks(t *testing.T) {
	sc, err := Find("leaked-api-keys")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Expand(map[string]string{"ORCHESTRATOR_URL": "http://x"}); err == nil || !strings.Contains(err.Error(), "ATTACKER_API_KEY") {
		t.Fatalf("got %v, want ${ATTACKER_API_KEY} named", err)
	}
	env := map[string]string{"ORCHESTRATOR_URL": "http://x", "ATTACKER_API_KEY": "k", "ATTACKER_JWT": "j", "MAILPIT_SMTP_HOST": "h", "MAILPIT_SMTP_PORT": "1"}
	got, err := sc.Expand(env)
	if err != nil {
		t.Fatal(err)
	}
	var validate Phase
	for _, p := range got.Phases {
		if p.Phase == "validate" {
			validate = p
		}
	}
	args, stdin := phaseArgs(got, "INC", validate)
	if strings.Contains(strings.Join(args, " "), "=k") || strings.Contains(strings.Join(args, " "), "=j") {
		t.Errorf("a secret is on the command line: %v", args)
	}
	if stdin != "k\nj\n" || !strings.Contains(strings.Join(args, " "), "--set api_url=http://x --set-stdin leaked_api_key --set-stdin stolen_jwt") {
		t.Errorf("validate: args %v stdin %q", args, stdin)
	}
}

func TestCronJobCredentialIsNamespaceAndNameAlone(t *testing.T) {
	for _, c := range []string{
		"{name: m, cronjob: kube-cleanup, stopped_by: eradicate/x}",
		"{name: m, cronjob: kube-system/kube-cleanup, header: X, value: v, stopped_by: eradicate/x}",
		"{name: m, cronjob: kube-system/kube-cleanup, target: orchestrator, stopped_by: eradicate/x}",
		"{name: m, cronjob: kube-system/kube-cleanup, path: /x, stopped_by: eradicate/x}",
	} {
		data := "name: x\nrunbook: security-incident\nphases:\n  - phase: contain\nattacker:\n  credentials:\n    - " + c + "\n"
		if _, err := Load("x.yaml", []byte(data)); err == nil || !strings.Contains(err.Error(), "x.yaml:7: attacker.credentials[0]: cronjob is NAMESPACE/NAME") {
			t.Errorf("%s: got %v", c, err)
		}
	}
	data := "name: x\nrunbook: security-incident\nphases:\n  - phase: contain\nattacker:\n  credentials:\n    - {name: m, cronjob: kube-system/kube-cleanup, stopped_by: eradicate/x}\n"
	if _, err := Load("x.yaml", []byte(data)); err != nil {
		t.Errorf("a valid cronjob credential: %v", err)
	}
}
