package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/runbook"
)

// Check is one line of a validate phase's pass/fail table.
type Check struct {
	Check    string `json:"check"`    // the step's name
	Expected string `json:"expected"` // its expectation, or what its plan checks
	Seen     string `json:"seen"`     // what the result measured, or the error
	Result   string `json:"result"`   // pass, fail or skipped
}

// Outcomes of a check.
const (
	CheckPass    = "pass"
	CheckFail    = "fail"
	CheckSkipped = "skipped" // a no-op step, or not run (client dry run)
)

// judge evaluates step s's expectation on its result: the measured values
// ("rows 12") and, when a condition does not hold, an error saying what
// was expected and what was got ("expected rows = 0, got 12").
func judge(x *runbook.Expect, res *action.Result) (seen string, err error) {
	if x == nil {
		return "", nil
	}
	t := res.Table
	if t == nil {
		return "no table", fmt.Errorf("expected %s, but the step returned no table", x)
	}
	rows := max(t.Total, len(t.Rows))
	var seenParts, fails []string
	measured := map[string]string{}
	for _, c := range x.Conds {
		got, ok := measured[c.Subject]
		if !ok {
			var merr error
			switch c.Subject {
			case runbook.SubjectRows:
				got = strconv.Itoa(rows)
			case runbook.SubjectValue:
				got, merr = singleValue(t, rows)
			}
			if merr != nil {
				fails = append(fails, fmt.Sprintf("expected %s, but %v", c, merr))
				measured[c.Subject] = ""
				seenParts = append(seenParts, c.Subject+" "+merr.Error())
				continue
			}
			measured[c.Subject] = got
			seenParts = append(seenParts, c.Subject+" "+got)
		} else if got == "" && c.Subject == runbook.SubjectValue {
			continue // already failed to measure
		}
		holds, herr := c.Holds(got)
		switch {
		case herr != nil:
			fails = append(fails, fmt.Sprintf("expected %s, got %s (%v)", c, got, herr))
		case !holds:
			fails = append(fails, fmt.Sprintf("expected %s, got %s", c, got))
		}
	}
	seen = strings.Join(seenParts, ", ")
	if len(fails) > 0 {
		return seen, errors.New(strings.Join(fails, "; "))
	}
	return seen, nil
}

// singleValue is the one value of a one-row result: its only column, or
// the column named "value" (a Prometheus vector's table).
func singleValue(t *action.Table, rows int) (string, error) {
	if rows != 1 || len(t.Rows) != 1 {
		return "", fmt.Errorf("the result has %d rows, not one", rows)
	}
	col := -1
	if len(t.Columns) == 1 {
		col = 0
	} else {
		for i, c := range t.Columns {
			if strings.EqualFold(c, runbook.SubjectValue) {
				col = i
			}
		}
	}
	if col < 0 || col >= len(t.Rows[0]) {
		return "", fmt.Errorf("the result has %d columns (%s) and none named value", len(t.Columns), strings.Join(t.Columns, ", "))
	}
	return t.Rows[0][col], nil
}

// expectation judges an applied step's result and prints the verdict; a
// failed expectation marks the step failed (the caller journals the error
// in the outcome) without stopping the phase.
func (e *Engine) expectation(s runbook.Step, res *action.Result, sr *StepReport) error {
	if s.Expect == nil {
		return nil
	}
	seen, err := judge(s.Expect, res)
	sr.Expect, sr.Seen = s.Expect.String(), seen
	if err != nil {
		sr.Status, sr.Error = "failed", err.Error()
		e.printf("  expect %s: FAILED: %s\n", s.Expect, Clean(err.Error()))
		return err
	}
	e.printf("  expect %s: passed (%s)\n", s.Expect, Clean(seen))
	return nil
}

// printExpect shows a step's expectation under its plan and puts it in
// the step's report, judged or not (a client dry run never judges it).
func (e *Engine) printExpect(s runbook.Step, sr *StepReport) {
	if s.Expect != nil {
		sr.Expect = s.Expect.String()
		e.printf("  expect: %s\n", s.Expect)
	}
}

// journalError is a journal that could not be written: it stops every
// phase, validate included.
type journalError struct{ error }

func (j journalError) Unwrap() error { return j.error }

// keepChecking says whether a validate phase goes on after a step that
// failed with err: it runs every assertion, so a failed check does not
// stop it; an interrupt, a journal that cannot be written or a refusal
// (any error that is not a plain failure) still does.
func keepChecking(ctx context.Context, phase string, err error) bool {
	var je journalError
	return phase == runbook.PhaseValidate && ctx.Err() == nil && !errors.As(err, &je) && exitcode.Code(err) == exitcode.Error
}

// checks builds a validate phase's pass/fail table from its steps.
func checks(rep *Report) []Check {
	out := make([]Check, 0, len(rep.Steps))
	for _, sr := range rep.Steps {
		c := Check{Check: sr.Step, Expected: sr.Expect, Seen: sr.Seen}
		if c.Expected == "" {
			c.Expected = "the step succeeds"
			if sr.Plan != nil {
				c.Expected = sr.Plan.Summary
			}
		}
		switch sr.Status {
		case "applied", "dry-run":
			c.Result = CheckPass
		case "done-before":
			c.Result, c.Seen = CheckPass, "passed in the run this one resumes"
		case "noop", "planned":
			c.Result = CheckSkipped
			if c.Seen == "" && sr.Plan != nil {
				c.Seen = sr.Plan.Summary
			}
			if sr.Status == "planned" {
				c.Seen = "not run (client dry run)"
			}
		default: // failed, partial, interrupted
			c.Result = CheckFail
		}
		if c.Result == CheckFail && sr.Error != "" && sr.Expect == "" {
			c.Seen = sr.Error
		} else if c.Result == CheckFail && sr.Status == "partial" && sr.Result != nil {
			c.Seen = fmt.Sprintf("%s; %d target(s) could not be checked", sr.Result.Summary, len(sr.Result.Failed))
		}
		if c.Seen == "" && sr.Result != nil {
			c.Seen = sr.Result.Summary
		}
		// A check's error or summary often repeats what it checked
		// ("GET ... expecting 401: failed ..."): show only what it saw.
		c.Seen = dropRepeat(c.Seen, c.Expected)
		out = append(out, c)
	}
	return out
}

// dropRepeat drops the longest "PREFIX: " of seen whose PREFIX begins
// expected: a summary or error that restates the check.
func dropRepeat(seen, expected string) string {
	cut := 0
	for i := 0; ; {
		j := strings.Index(seen[i:], ": ")
		if j < 0 {
			break
		}
		if strings.HasPrefix(expected, seen[:i+j]) {
			cut = i + j + 2
		}
		i += j + 2
	}
	return seen[cut:]
}

// printStopped shows what a failed step returned: what it changed before
// it stopped, for undo, or for a check that changed nothing, its result.
func (e *Engine) printStopped(s runbook.Step, res *action.Result) {
	if res.Changed == 0 && len(res.Undo) == 0 && len(res.Failed) == 0 {
		e.printf("  result: %s\n", Clean(res.Summary))
		if res.Table != nil {
			e.printTable(res.Table)
		}
		return
	}
	e.printf("  changed before it stopped: %s (recorded; `irctl undo %s` reverses it)\n", Clean(res.Summary), s.Phase)
	e.printFailures(res.Failed)
}

// endChecks closes a phase whose steps carried expectations or, for
// validate, were all assertions: it prints the pass/fail table (validate
// only) and returns exit 1 naming the failed checks, once all have run.
func (e *Engine) endChecks(phase string, rep *Report, failed []string) error {
	if phase == runbook.PhaseValidate {
		rep.Checks = checks(rep)
		e.printChecks(rep.Checks)
	}
	if len(failed) == 0 {
		return nil
	}
	return exitcode.New(exitcode.Error, "phase %s: %d of %d check(s) failed: %s", phase, len(failed), len(rep.Steps), strings.Join(failed, ", "))
}
