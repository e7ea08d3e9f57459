package cli

import (
	"strings"
	"testing"
)

// On a terminal the label step's progress is drawn on stderr, one line
// redrawn in place and cleared when the step ends; NO_COLOR keeps it plain.
func TestProgressDrawnOnATerminalOnly(t *testing.T) {
	for _, noColor := range []bool{false, true} {
		h := newHarness(t, 40)
		if noColor {
			t.Setenv("NO_COLOR", "1")
		}
		term := h.startOnPTY("contain", "--yes")
		if code := term.wait(); code != 0 {
			t.Fatalf("contain: exit %d\n%s", code, term.screen())
		}
		screen := term.screen()
		if !strings.Contains(screen, "\r\x1b[K") || !strings.Contains(screen, "  quarantine-pods  40/40 pods labelled  100%") {
			t.Errorf("no progress line for the label step:\n%q", screen)
		}
		if colour := strings.Contains(screen, "\x1b[36m"); colour == noColor {
			t.Errorf("NO_COLOR=%v but colour %v:\n%q", noColor, colour, screen)
		}
	}

	// -o json on a terminal: the output is for programs, nothing drawn.
	t.Setenv("NO_COLOR", "")
	h := newHarness(t, 40)
	term := h.startOnPTY("contain", "--yes", "-o", "json")
	if code := term.wait(); code != 0 {
		t.Fatalf("contain -o json: exit %d\n%s", code, term.screen())
	}
	if screen := term.screen(); strings.Contains(screen, "pods labelled") || strings.Contains(screen, "\x1b[36m") {
		t.Errorf("progress drawn with -o json:\n%q", screen)
	}

	// Not a terminal (the harness's stderr is a buffer): nothing drawn.
	h = newHarness(t, 40)
	r := h.run("contain", "--yes")
	if r.code != 0 {
		t.Fatalf("contain: %+v", r)
	}
	if strings.Contains(r.stderr, "\x1b[") || strings.Contains(r.stderr, "pods labelled") || strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("progress drawn off a terminal: stderr %q", r.stderr)
	}
}
