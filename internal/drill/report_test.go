package drill

import (
	"context"
	"strings"
	"testing"
)

// A report that cannot be written fails the drill's report case; the
// score still comes out (and with it the JUnit file), rather than the
// whole drill's result being lost.
func TestAFailedReportIsAFailingCaseNotALostScore(t *testing.T) {
	sc := &Scenario{Name: "s", Runbook: "rb", Description: "d", Attacker: Attacker{Interval: "10ms"}, Phases: []Phase{{Phase: "contain"}}}
	var calls []string
	irctl := func(_ context.Context, args []string, _ string) (int, string, string) {
		cmd := strings.Join(args, " ")
		calls = append(calls, cmd)
		switch {
		case strings.HasPrefix(cmd, "declare"):
			return 0, "INC-1\n", ""
		case strings.Contains(cmd, " contain "):
			return 0, "[]", ""
		case strings.Contains(cmd, " status "):
			return 0, `{"clocks":null,"journal":[]}`, ""
		case strings.Contains(cmd, " report "):
			return 1, "", "irctl: open /nope/report.md: no such file or directory\n"
		}
		return 0, "", ""
	}
	s, err := Run(context.Background(), Options{Scenario: sc, Irctl: irctl, Report: "/nope/report.md"})
	if err != nil {
		t.Fatalf("the drill's result is lost: %v", err)
	}
	var report *Case
	for i := range s.Cases {
		if s.Cases[i].Group == "report" {
			report = &s.Cases[i]
		}
	}
	if s.Passed || report == nil || report.Result != "fail" || !strings.Contains(report.Message, "no such file or directory") {
		t.Fatalf("passed %v, report case %+v", s.Passed, report)
	}
	if last := calls[len(calls)-1]; !strings.Contains(last, "evidence verify") {
		t.Errorf("the evidence was not verified after the report: %v", calls)
	}
}
