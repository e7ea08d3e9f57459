package runbook

import (
	"strings"
	"testing"
	"time"
)

// A step's `timeout:` is parsed like any duration and a bad one is reported
// with the line it is on.
func TestStepTimeoutIsParsedAndBadOnesNamedWithLine(t *testing.T) {
	rb, err := Load("t.yaml", []byte(`apiVersion: irctl/v1
kind: Runbook
name: t
phases:
  contain:
    - name: slow
      action: k8s.label
      timeout: 90m
      with: {namespace: x}
    - name: default
      action: k8s.label
      with: {namespace: x}
`), Options{Catalog: testCatalog})
	if err != nil {
		t.Fatal(err)
	}
	if got := rb.Phases["contain"][0].Timeout; got != 90*time.Minute {
		t.Errorf("timeout: %s, want 1h30m", got)
	}
	if got := rb.Phases["contain"][1].Timeout; got != 0 {
		t.Errorf("a step without timeout: %s, want 0 (the action's default)", got)
	}
	for _, bad := range []string{"soon", "0s", "-5m"} {
		_, err := Load("t.yaml", []byte(`apiVersion: irctl/v1
kind: Runbook
name: t
phases:
  contain:
    - name: slow
      action: k8s.label
      timeout: `+bad+`
      with: {namespace: x}
`), Options{Catalog: testCatalog})
		if err == nil || !strings.Contains(err.Error(), "t.yaml:8: step slow: timeout:") {
			t.Errorf("timeout %q: %v, want a problem at t.yaml:8", bad, err)
		}
	}
}
