package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

// A real contain run on the sandbox completes the contain phase: status,
// read at injected times after the declaration, shows its window met, the
// later windows running then overdue, the escalations nobody was sent
// overdue, and the status Contained; close is refused (validate has not
// run) and nothing is journaled.
func TestStatusClocksAfterARealContainRun(t *testing.T) {
	h := newHarness(t, 3)
	if r := h.run("contain", "--yes"); r.code != 0 {
		t.Fatalf("contain: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	inc, err := incident.Open(h.stateDir, h.incident)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { timeNow = time.Now })
	read := func(after time.Duration) *clocks.Clocks {
		t.Helper()
		timeNow = func() time.Time { return inc.DeclaredAt.Add(after) }
		r := h.run("status", "-o", "json")
		var v struct {
			Clocks *clocks.Clocks `json:"clocks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || v.Clocks == nil {
			t.Fatalf("status -o json: exit %d %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
		}
		return v.Clocks
	}
	states := func(c *clocks.Clocks) string {
		var out []string
		for _, p := range c.Phases {
			out = append(out, p.Phase+"="+p.State)
		}
		for _, e := range c.Escalations {
			out = append(out, e.Step+"="+e.State)
		}
		return strings.Join(out, " ")
	}
	c := read(30 * time.Minute)
	if want := "contain=met assess=running preserve=running eradicate=running recover=running validate=running slack-security-incidents=overdue email-internal=overdue email-regulators=due"; states(c) != want || c.Status != clocks.Contained {
		t.Errorf("at 30m: %s %s\nwant %s", c.Status, states(c), want)
	}
	if c.Phases[0].CompletedAt == nil || c.Phases[0].CompletedAt.Before(inc.DeclaredAt) || c.Phases[0].CompletedAt.After(time.Now()) {
		t.Errorf("contain completed at %v (declared %v)", c.Phases[0].CompletedAt, inc.DeclaredAt)
	}
	c = read(5 * time.Hour)
	if want := "contain=met assess=overdue preserve=overdue eradicate=running"; !strings.HasPrefix(states(c), want) {
		t.Errorf("at 5h: %s\nwant prefix %s", states(c), want)
	}
	if c.GDPR == nil || c.GDPR.State != clocks.Running {
		t.Errorf("GDPR at 5h: %+v", c.GDPR)
	}
	r := h.run("status")
	if !strings.Contains(r.stdout, "status Contained") || !strings.Contains(r.stdout, "overdue !") || !strings.Contains(r.stdout, "quarantine-pods") {
		t.Errorf("status text:\n%s", r.stdout)
	}
	n := len(h.journal())
	if r := h.run("close"); r.code != exitcode.Precondition || !strings.Contains(r.stderr, "validate has not passed") || len(h.journal()) != n {
		t.Errorf("close before validate: exit %d %q, %d records (was %d)", r.code, r.stderr, len(h.journal()), n)
	}
}
