package drill

import (
	"encoding/xml"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteText prints the score card as tables.
func (s *Score) WriteText(w io.Writer) {
	verdict := "PASSED"
	if !s.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "drill %s (runbook %s, incident %s): %s\n\n", s.Scenario, s.Runbook, s.Incident, verdict)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CREDENTIAL\tATTEMPTS\tGOT IN\tLAST IN (AFTER DECLARE)\tIN AFTER ITS PHASE\tLOCKED OUT")
	for _, l := range s.Lockout {
		last := "never"
		if l.LastSuccess != nil {
			last = l.LastSuccess.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d (%s)\t%v\n", l.Credential, l.Attempts, l.Successes, last, l.AfterContain, l.JudgedAfter, l.LockedOut)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tEXIT\tRAN\tDONE AFTER DECLARE\tWINDOW\tIN WINDOW")
	for _, p := range s.Phases {
		win := "-"
		if p.Window > 0 {
			win = p.Window.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%v\n", p.Phase, p.Exit, p.Ran, p.Done, win, p.InWindow)
	}
	tw.Flush()
	if s.TimeToContain > 0 {
		goal := "met"
		if s.TimeToContain >= TimeToContainGoal {
			goal = "missed"
		}
		fmt.Fprintf(w, "\ntime to contain (declare to contain finished): %s, goal under %s %s", s.TimeToContain, TimeToContainGoal, goal)
	}
	fmt.Fprintf(w, "\nvalidation checks: %d/%d passed", s.Checks.Passed, s.Checks.Total)
	if s.Checks.Known > 0 {
		fmt.Fprintf(w, ", %d known failure(s)", s.Checks.Known)
	}
	fmt.Fprintf(w, "\nevidence verified: %v\nnotifications delivered: %d\nsteps failed or partial: %d\n", s.Evidence.Verified, s.Notified, s.StepsFailed)
	fmt.Fprintf(w, "changes undoable: %d, irreversible by design: %d\n", s.Undoable, s.Irreversible)
	for _, k := range s.Known {
		fmt.Fprintf(w, "known failure %s: %s\n", k.Check, k.Reason)
	}
	failed := 0
	for _, c := range s.Cases {
		if c.Result == "fail" {
			if failed == 0 {
				fmt.Fprintln(w, "\nfailures:")
			}
			failed++
			fmt.Fprintf(w, "  %s %s: %s\n", c.Group, c.Name, c.Message)
		}
	}
}

// JUnit is the JUnit XML report (the shape Jenkins, GitLab and GitHub
// test reporters read).
type JUnit struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one group of cases.
type JUnitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []JUnitCase `xml:"testcase"`
}

// JUnitCase is one judged item.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitMessage `xml:"failure,omitempty"`
	Skipped   *JUnitMessage `xml:"skipped,omitempty"`
}

// JUnitMessage is a failure or skip reason.
type JUnitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// JUnit builds the report: one suite per group, one case per lockout,
// phase, step, validation check and the evidence.
func (s *Score) JUnit() *JUnit {
	j := &JUnit{Name: "irctl drill " + s.Scenario}
	idx := map[string]int{}
	for _, c := range s.Cases {
		i, ok := idx[c.Group]
		if !ok {
			i = len(j.Suites)
			idx[c.Group] = i
			j.Suites = append(j.Suites, JUnitSuite{Name: s.Scenario + "." + c.Group})
		}
		su := &j.Suites[i]
		jc := JUnitCase{Name: c.Name, Classname: su.Name, Time: secs(c.Duration)}
		switch c.Result {
		case "fail":
			jc.Failure = &JUnitMessage{Message: c.Message, Text: c.Message}
			su.Failures++
			j.Failures++
		case "skipped":
			jc.Skipped = &JUnitMessage{Message: c.Message}
			su.Skipped++
			j.Skipped++
		}
		su.Tests++
		j.Tests++
		su.Cases = append(su.Cases, jc)
	}
	for i := range j.Suites {
		var d time.Duration
		for _, c := range s.Cases {
			if s.Scenario+"."+c.Group == j.Suites[i].Name {
				d += c.Duration
			}
		}
		j.Suites[i].Time = secs(d)
	}
	return j
}

// WriteJUnit writes the JUnit XML report.
func (s *Score) WriteJUnit(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s.JUnit()); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
