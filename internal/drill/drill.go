package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"irctl.dev/irctl/internal/clocks"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
)

// Irctl runs irctl's own command line in-process (cli.Run) against the
// drill's sandbox and state directory, with stdin: the drill runs phases
// exactly as `irctl PHASE --yes` would, through the same code.
type Irctl func(ctx context.Context, args []string, stdin string) (code int, stdout, stderr string)

// Options are a drill's inputs.
type Options struct {
	Scenario *Scenario
	// Env is the sandbox's environment (DIR/env: ORCHESTRATOR_URL,
	// ATTACKER_API_KEY, ATTACKER_JWT, ...), for the scenario's ${VAR}s.
	Env   map[string]string
	Irctl Irctl
	// Kube is the sandbox's admin connection: to mint a compromised
	// ServiceAccount's token and reach kube-apiserver as the attacker.
	Kube *rest.Config
	Log  io.Writer
	// Report, when set, is where the incident report (Markdown) is
	// written once the phases ran, with the scenario as its summary; it is
	// saved as evidence too, before the evidence is verified.
	Report string
}

// PhaseRun is one phase's run.
type PhaseRun struct {
	Phase    string          `json:"phase"`
	Exit     int             `json:"exit"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Reports  []engine.Report `json:"-"`
	Stderr   string          `json:"stderr,omitempty"`
}

// Run runs the drill: declare, attacker on, the phases in order, attacker
// off, then the score.
func Run(ctx context.Context, o Options) (*Score, error) {
	sc, err := o.Scenario.Expand(o.Env)
	if err != nil {
		return nil, err
	}
	shots, err := uses(ctx, sc.Attacker.Credentials, o.Env["ORCHESTRATOR_URL"], o.Kube)
	if err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	at := startAttacker(ctx, sc.Attacker, shots, sc.Interval())
	attacking := true
	defer func() {
		if attacking {
			at.Stop()
		}
	}()
	// Let the attacker in before the incident is declared, as it was.
	time.Sleep(2 * sc.Interval())

	sev := sc.Severity
	if sev == "" {
		sev = "P0"
	}
	code, out, errOut := o.Irctl(ctx, []string{"declare", "--severity", sev, "--title", "drill: " + sc.Name}, "")
	if code != 0 {
		return nil, exitcode.New(code, "declare: %s", strings.TrimSpace(errOut))
	}
	id := strings.TrimSpace(out)
	logf("drill %s: incident %s declared; attacker using %d credential(s)", sc.Name, id, len(sc.Attacker.Credentials))

	var runs []PhaseRun
	for _, p := range sc.Phases {
		args, stdin := phaseArgs(sc, id, p)
		r := PhaseRun{Phase: p.Phase, Started: time.Now()}
		r.Exit, out, r.Stderr = o.Irctl(ctx, args, stdin)
		r.Finished = time.Now()
		if err := json.Unmarshal([]byte(out), &r.Reports); err != nil && r.Exit == 0 {
			return nil, fmt.Errorf("%s: the report is not JSON: %v", p.Phase, err)
		}
		logf("  %-9s exit %d in %s", p.Phase, r.Exit, r.Finished.Sub(r.Started).Round(time.Millisecond))
		runs = append(runs, r)
		if ctx.Err() != nil {
			return nil, exitcode.Wrap(exitcode.Interrupted, ctx.Err())
		}
	}
	// Keep attacking a little after the last phase: lockout is judged on
	// attempts after containment, so there must be some.
	time.Sleep(3 * sc.Interval())
	attempts := at.Stop()
	attacking = false

	code, out, errOut = o.Irctl(ctx, []string{"--incident", id, "status", "-o", "json"}, "")
	if code != 0 {
		return nil, exitcode.New(code, "status: %s", strings.TrimSpace(errOut))
	}
	var st struct {
		Clocks  *clocks.Clocks    `json:"clocks"`
		Journal []incident.Record `json:"journal"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status: %v", err)
	}
	var reportCase *Case
	if o.Report != "" {
		summary := fmt.Sprintf("Drill %s (%s): %s.", sc.Name, sc.Runbook, sc.Description)
		if code, _, errOut = o.Irctl(ctx, []string{"--incident", id, "note", "add", "--kind", "summary", summary}, ""); code == 0 {
			code, _, errOut = o.Irctl(ctx, []string{"--incident", id, "report", "--file", o.Report}, "")
		}
		// A report that cannot be written fails the drill's report case;
		// the score and the JUnit file still come out.
		report := Case{Group: "report", Name: "incident report", Result: "pass"}
		if code != 0 {
			report.Result, report.Message = "fail", fmt.Sprintf("expected the report written to %s, saw exit %d: %s", o.Report, code, firstLine(errOut))
			logf("  report    failed: %s", firstLine(errOut))
		} else {
			logf("  report    %s", o.Report)
		}
		reportCase = &report
	}
	code, _, errOut = o.Irctl(ctx, []string{"--incident", id, "evidence", "verify"}, "")
	ev := Evidence{Verified: code == 0, Message: strings.TrimSpace(errOut)}
	s := score(sc, id, runs, attempts, st.Clocks, st.Journal, ev)
	if reportCase != nil {
		s.Cases = append(s.Cases, *reportCase)
		s.Passed = s.Passed && reportCase.Result == "pass"
	}
	return s, nil
}

// phaseArgs is `irctl PHASE --yes -o json -f RUNBOOK --set ... --set-stdin ...`
// and the stdin carrying the secrets, one a line in flag order.
func phaseArgs(sc *Scenario, id string, p Phase) ([]string, string) {
	args := []string{"--incident", id, p.Phase, "--yes", "-o", "json", "-f", sc.Runbook}
	if p.AllowExternal {
		args = append(args, "--allow-external")
	}
	sets := map[string]string{}
	for k, v := range sc.Set {
		sets[k] = v
	}
	for k, v := range p.Set {
		sets[k] = v
	}
	for _, k := range sortedKeys(sets) {
		args = append(args, "--set", k+"="+sets[k])
	}
	var stdin strings.Builder
	for _, k := range sortedKeys(p.Stdin) {
		args = append(args, "--set-stdin", k)
		stdin.WriteString(p.Stdin[k] + "\n")
	}
	return args, stdin.String()
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
