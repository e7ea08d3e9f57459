// Package report builds an incident's report from its journal and its
// evidence, following the LLM-orchestrator incident runbook v1.0's report
// template: header, summary, timeline, impact, remediation, root cause,
// prevention, compliance and the evidence manifest. Build gathers the
// facts (the JSON form); Markdown renders them. Nothing here is invented:
// a figure the journal and the evidence do not hold reads "not recorded".
package report

import (
	"bufio"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/engine"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/runbook"
)

// Input is what a report is built from.
type Input struct {
	Incident *incident.Incident
	Records  []incident.Record
	// IncidentDir holds the evidence directory; Evidence its manifest.
	IncidentDir string
	Evidence    []evidence.Entry
	// Runbook names the phases' steps (the status needs them); nil: the
	// status stays Declared and remediation is empty.
	Runbook *runbook.Runbook
	// DataCategories are the kinds of data the affected system holds
	// (personal, payment, health...), nil when the runbook declares none;
	// CategoriesFrom says where they were read.
	DataCategories []string
	CategoriesFrom string
	Now            time.Time
}

// Report is the report's facts.
type Report struct {
	ID              string     `json:"id"`
	Title           string     `json:"title"`
	Severity        string     `json:"severity"`
	Status          string     `json:"status"`
	DeclaredAt      time.Time  `json:"declared_at"`
	DeclaredBy      string     `json:"declared_by"`
	Operators       []string   `json:"operators"`
	Runbook         string     `json:"runbook,omitempty"`
	GeneratedAt     time.Time  `json:"generated_at"`
	FirstAttackSeen *time.Time `json:"first_attacker_activity,omitempty"`

	Notes         []Note  `json:"notes"`
	Timeline      []Event `json:"timeline"`
	DryRunRecords int     `json:"dry_run_records_left_out"`

	Impact         Impact         `json:"impact"`
	Remediation    []PhaseDone    `json:"remediation"`
	Notifications  []Notification `json:"notifications"`
	Compliance     []Regulation   `json:"compliance"`
	DataCategories []string       `json:"data_categories"`
	CategoriesFrom string         `json:"data_categories_from,omitempty"`
	Evidence       []Item         `json:"evidence"`
}

// Note is an operator's note.
type Note struct {
	Time     time.Time `json:"time"`
	Operator string    `json:"operator"`
	Kind     string    `json:"kind"`
	Text     string    `json:"text"`
}

// Event is one timeline entry: a step's outcome (or why it did not act),
// an undo or a note.
type Event struct {
	Time     time.Time `json:"time"`
	Phase    string    `json:"phase,omitempty"`
	Step     string    `json:"step,omitempty"`
	Action   string    `json:"action,omitempty"`
	Outcome  string    `json:"outcome"` // the journal record's kind, or "error"
	Detail   string    `json:"detail"`
	Changed  *int      `json:"changed,omitempty"`
	Failed   int       `json:"failed,omitempty"`
	Operator string    `json:"operator"`
}

// Impact is measured from the evidence and the journal; nil fields were
// not recorded.
type Impact struct {
	AccountsAffected *int     `json:"accounts_affected"`
	AccountIDs       []string `json:"account_ids,omitempty"`
	AttackerSources  []string `json:"attacker_sources,omitempty"`
	AccountsItem     string   `json:"accounts_item,omitempty"`

	Transfers       *int     `json:"large_transfers"`
	TransferBytes   *int64   `json:"large_transfer_bytes"`
	TransferSources []string `json:"large_transfer_sources,omitempty"`
	TransfersItem   string   `json:"large_transfers_item,omitempty"`

	KeysRevoked      *int `json:"keys_revoked"`
	PodsQuarantined  *int `json:"pods_quarantined"`
	AccountsDisabled *int `json:"accounts_disabled"`

	HealthChecks   int            `json:"health_checks"`
	HealthFailures int            `json:"health_check_failures"`
	Downtime       *time.Duration `json:"downtime_ns,omitempty"`
}

// PhaseDone is what one phase did: each step's last applied outcome.
type PhaseDone struct {
	Phase   string     `json:"phase"`
	Changed int        `json:"changed"`
	Failed  int        `json:"failed"`
	Steps   []StepDone `json:"steps"`
}

// StepDone is a step's last applied outcome.
type StepDone struct {
	Step    string    `json:"step"`
	Action  string    `json:"action"`
	Time    time.Time `json:"time"`
	Result  string    `json:"result"`
	Changed int       `json:"changed"`
	Failed  int       `json:"failed"`
}

// Notification is a notify step's record: sent (with how many messages),
// drafted or declined.
type Notification struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Sent    int       `json:"sent"`
	Detail  string    `json:"detail"`
}

// Item is one evidence manifest entry.
type Item struct {
	Seq    int    `json:"seq"`
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Kind   string `json:"kind"`
	Rows   *int64 `json:"rows,omitempty"`
}

// Build gathers the report's facts.
func Build(in Input) *Report {
	inc := in.Incident
	r := &Report{
		ID: inc.ID, Title: inc.Title, Severity: inc.Severity, DeclaredAt: inc.DeclaredAt.UTC(),
		DeclaredBy: inc.DeclaredBy, GeneratedAt: in.Now.UTC(), Notes: []Note{}, Timeline: []Event{},
		Remediation: []PhaseDone{}, Notifications: []Notification{}, Evidence: []Item{},
		DataCategories: in.DataCategories, CategoriesFrom: in.CategoriesFrom,
	}
	// The journal's records, the step's runbook-less status otherwise.
	info := engine.IncidentInfo(inc, in.Runbook, in.Records)
	r.Status, r.Runbook = info.Status, info.Runbook
	ops := map[string]bool{}
	if inc.DeclaredBy != "" {
		ops[inc.DeclaredBy] = true
	}
	for _, rec := range in.Records {
		if !real(rec) {
			if rec.Kind != incident.KindEvidence && rec.Kind != incident.KindRun {
				r.DryRunRecords++
			}
			continue
		}
		if rec.Operator != "" && rec.Kind != incident.KindEvidence {
			ops[rec.Operator] = true
		}
		if rec.Kind == incident.KindNote {
			n := Note{Time: rec.Time.UTC(), Operator: rec.Operator, Kind: rec.NoteKind, Text: rec.Text}
			r.Notes = append(r.Notes, n)
			r.Timeline = append(r.Timeline, Event{Time: n.Time, Outcome: "note", Detail: n.Kind + ": " + n.Text, Operator: n.Operator})
			continue
		}
		if ev, ok := event(rec); ok {
			r.Timeline = append(r.Timeline, ev)
		}
		if strings.HasPrefix(rec.Action, "notify.") {
			if n, ok := notification(rec); ok {
				r.Notifications = append(r.Notifications, n)
			}
		}
	}
	for op := range ops {
		r.Operators = append(r.Operators, op)
	}
	sort.Strings(r.Operators)
	for _, pd := range info.Done {
		p := PhaseDone{Phase: pd.Phase, Changed: pd.Changed, Failed: pd.Failed}
		for _, s := range pd.Steps {
			p.Steps = append(p.Steps, StepDone{Step: s.Step, Action: s.Action, Time: s.Time.UTC(), Result: s.Result, Changed: s.Changed, Failed: s.Failed})
		}
		r.Remediation = append(r.Remediation, p)
	}
	r.Impact, r.FirstAttackSeen = impact(in)
	r.Compliance = compliance(in.DataCategories, in.CategoriesFrom, r.Impact, r.Notifications, r.DeclaredAt, r.GeneratedAt)
	for _, e := range in.Evidence {
		r.Evidence = append(r.Evidence, Item{Seq: e.Seq, Name: e.Name, SHA256: e.SHA256, Size: e.Size, Kind: e.Source.Kind, Rows: e.Source.Rows})
	}
	return r
}

// real reports whether rec records something done for real: not a dry
// run's plan nor a rehearsal's outcome.
func real(rec incident.Record) bool {
	return rec.DryRun == "" || rec.DryRun == string(action.DryRunNone)
}

// event turns a journal record into a timeline entry; intents, plans,
// run starts and evidence anchors are not events.
func event(rec incident.Record) (Event, bool) {
	ev := Event{Time: rec.Time.UTC(), Phase: rec.Phase, Step: rec.Step, Action: rec.Action, Outcome: rec.Kind, Changed: rec.Changed, Operator: rec.Operator}
	switch rec.Kind {
	case incident.KindOutcome, incident.KindUndo:
		ev.Detail = rec.Result
	case incident.KindNoop:
		ev.Detail = rec.Plan
		if rec.Result != "" {
			ev.Detail = rec.Result
		}
	case incident.KindClose:
		ev.Detail = "incident closed"
		if rec.Result != "" {
			ev.Detail += ": " + rec.Result
		}
		return ev, true
	case incident.KindDeclined, incident.KindDrafted, incident.KindSkipped, incident.KindInterrupted:
		ev.Detail = rec.Error
		if ev.Detail == "" {
			ev.Detail = rec.Plan
		}
		return ev, true
	default:
		return ev, false
	}
	ev.Failed = failedCount(rec)
	if rec.Error != "" {
		ev.Outcome, ev.Detail = "error", rec.Error
	}
	return ev, true
}

func failedCount(rec incident.Record) int {
	if len(rec.Failed) == 0 {
		return 0
	}
	return strings.Count(string(rec.Failed), `"target"`)
}

func notification(rec incident.Record) (Notification, bool) {
	n := Notification{Time: rec.Time.UTC(), Step: rec.Phase + "/" + rec.Step, Action: rec.Action, Outcome: rec.Kind, Sent: len(rec.Sent)}
	switch rec.Kind {
	case incident.KindOutcome:
		n.Detail = rec.Result
		if rec.Error != "" {
			n.Outcome, n.Detail = "error", rec.Error
		}
	case incident.KindNoop:
		n.Detail = rec.Plan
	case incident.KindDrafted, incident.KindDeclined, incident.KindSkipped:
		n.Detail = rec.Error
	default:
		return n, false
	}
	return n, true
}

// impact measures the incident from the assess phase's evidence items
// (compromised-accounts, large-transfers: the newest of each) and the
// journal's changed counts of the containing steps.
func impact(in Input) (Impact, *time.Time) {
	var im Impact
	var first *time.Time
	if e, ok := newest(in.Evidence, "compromised-accounts"); ok {
		im.AccountsItem = e.Name
		rows, err := readRows(in.IncidentDir, e.Name)
		if err == nil {
			users, ips := map[string]bool{}, map[string]bool{}
			for _, row := range rows {
				if u := text(row["user_id"]); u != "" && !users[u] {
					users[u] = true
					im.AccountIDs = append(im.AccountIDs, u)
				}
				if ip := text(row["ip_address"]); ip != "" && !ips[ip] {
					ips[ip] = true
					im.AttackerSources = append(im.AttackerSources, ip)
				}
				if t, ok := pgTime(text(row["first_login"])); ok && (first == nil || t.Before(*first)) {
					first = &t
				}
			}
			n := len(users)
			im.AccountsAffected = &n
			sortNumeric(im.AccountIDs)
			sort.Strings(im.AttackerSources)
		}
	}
	if e, ok := newest(in.Evidence, "large-transfers"); ok {
		im.TransfersItem = e.Name
		rows, err := readRows(in.IncidentDir, e.Name)
		if err == nil {
			n, total, ips := len(rows), int64(0), map[string]bool{}
			for _, row := range rows {
				total += bytesOf(row["bytes"])
				if ip := text(row["ip_address"]); ip != "" && !ips[ip] {
					ips[ip] = true
					im.TransferSources = append(im.TransferSources, ip)
				}
			}
			sort.Strings(im.TransferSources)
			im.Transfers, im.TransferBytes = &n, &total
		}
	}
	var failedAt *time.Time
	for _, rec := range in.Records {
		if !real(rec) || rec.Kind != incident.KindOutcome {
			continue
		}
		changed := 0
		if rec.Changed != nil {
			changed = *rec.Changed
		}
		switch {
		case rec.Phase == "contain" && rec.Action == "k8s.label":
			im.PodsQuarantined = add(im.PodsQuarantined, changed)
		case strings.Contains(rec.Step, "revoke") && strings.HasPrefix(rec.Action, "sql."):
			im.KeysRevoked = add(im.KeysRevoked, changed)
		case strings.Contains(rec.Step, "disable") && strings.HasPrefix(rec.Action, "sql."):
			im.AccountsDisabled = add(im.AccountsDisabled, changed)
		case rec.Action == "http.check" && strings.Contains(rec.Step, "health"):
			// Downtime: from a failed health check to the next that
			// passed (or to now, if none has passed since).
			im.HealthChecks++
			if rec.Error != "" {
				im.HealthFailures++
				if failedAt == nil {
					t := rec.Time
					failedAt = &t
				}
			} else if failedAt != nil {
				d := addDur(im.Downtime, rec.Time.Sub(*failedAt))
				im.Downtime, failedAt = &d, nil
			}
		}
	}
	if failedAt != nil {
		d := addDur(im.Downtime, in.Now.Sub(*failedAt))
		im.Downtime = &d
	}
	return im, first
}

func add(p *int, n int) *int {
	if p == nil {
		return &n
	}
	v := *p + n
	return &v
}

func addDur(p *time.Duration, d time.Duration) time.Duration {
	if p == nil {
		return d
	}
	return *p + d
}

// newest is the last manifest entry saved under a query's name (name.jsonl,
// or name-N.jsonl when collected again).
func newest(entries []evidence.Entry, name string) (evidence.Entry, bool) {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(-[0-9]+)?\.jsonl$`)
	for i := len(entries) - 1; i >= 0; i-- {
		if re.MatchString(path.Base(entries[i].Name)) {
			return entries[i], true
		}
	}
	return evidence.Entry{}, false
}

// readRows reads a JSON-lines evidence item.
func readRows(incidentDir, name string) ([]map[string]any, error) {
	f, err := os.Open(filepath.Join(evidence.Dir(incidentDir), filepath.FromSlash(name)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc.Scan() {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.UseNumber()
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func bytesOf(v any) int64 {
	s := text(v)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return int64(f)
	}
	return 0
}

// pgTime parses a timestamptz as PostgreSQL prints it.
func pgTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// sortNumeric sorts ids as numbers where they are.
func sortNumeric(ids []string) {
	sort.Slice(ids, func(i, j int) bool {
		a, ea := strconv.ParseInt(ids[i], 10, 64)
		b, eb := strconv.ParseInt(ids[j], 10, 64)
		if ea == nil && eb == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
}
