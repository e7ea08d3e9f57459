package cli

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// With -o json on a terminal the human output is not printed, but the
// operator still sees a step's targets before being asked about them.
func TestJSONOutputOnATerminalShowsTheTargetsBeforeAsking(t *testing.T) {
	h := newHarness(t, 2)
	pods, err := h.cs.CoreV1().Pods(h.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods: %v %d", err, len(pods.Items))
	}
	term := h.startOnPTY("contain", "-o", "json")
	term.waitFor("quarantine-pods: label 2 of 2 pods", 1)
	screen := term.screen()
	prompt := strings.LastIndex(screen, "quarantine-pods: label 2 of 2 pods")
	for _, p := range pods.Items {
		if i := strings.Index(screen, h.ns+"/"+p.Name); i < 0 || i > prompt {
			t.Errorf("target %s/%s not shown before the prompt:\n%s", h.ns, p.Name, screen)
		}
	}
	term.send("n")
	if code := term.wait(); code != 3 {
		t.Fatalf("answering no: exit %d\n%s", code, term.screen())
	}
}
