// Package incident keeps an incident's state on disk: its metadata and an
// append-only, fsync'd JSON-lines journal that is the single record of what
// irctl intended and did. Directories are 0700 and files 0600 whatever the
// umask, because a journal names targets an attacker would like to know.
package incident

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"irctl.dev/irctl/internal/fsutil"
)

// Severities accepted by declare: P0 is the seed's "Critical (P0)", P1–P4
// the cluster runbook's classification.
var Severities = []string{"P0", "P1", "P2", "P3", "P4"}

// Incident is an open incident's metadata (incident.json).
type Incident struct {
	ID         string    `json:"id"`
	Title      string    `json:"title"`
	Severity   string    `json:"severity"`
	DeclaredAt time.Time `json:"declared_at"`
	DeclaredBy string    `json:"declared_by"`

	dir string
}

// Dir is the incident's directory.
func (i *Incident) Dir() string { return i.dir }

// JournalPath is the journal file.
func (i *Incident) JournalPath() string { return JournalFile(i.dir) }

// JournalFile is the journal file of the incident directory dir.
func JournalFile(dir string) string { return filepath.Join(dir, "journal.jsonl") }

var idPattern = regexp.MustCompile(`^SEC-\d{8}-\d{3}$`)

// Declare opens a new incident in stateDir with the next free ID for the
// day, like SEC-20261122-001. Creating the directory with Mkdir is the
// claim, so two responders declaring at once get different IDs.
func Declare(stateDir, severity, title, operator string, now time.Time) (*Incident, error) {
	if !ValidSeverity(severity) {
		return nil, fmt.Errorf("severity %q: want one of P0, P1, P2, P3, P4", severity)
	}
	if title == "" {
		return nil, errors.New("an incident needs a --title")
	}
	// Only directories declare creates are made 0700: an existing state
	// directory keeps its mode (it may be /tmp).
	if err := fsutil.MkdirPrivate(stateDir); err != nil {
		return nil, err
	}
	day := now.UTC().Format("20060102")
	for n := 1; n <= 999; n++ {
		id := fmt.Sprintf("SEC-%s-%03d", day, n)
		dir := filepath.Join(stateDir, id)
		err := fsutil.Mkdir(dir) // 0700, parent fsync'd
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		inc := &Incident{ID: id, Title: title, Severity: severity, DeclaredAt: now.UTC(), DeclaredBy: operator, dir: dir}
		b, _ := json.MarshalIndent(inc, "", "  ")
		if err := fsutil.WriteFileOnce(filepath.Join(dir, "incident.json"), append(b, '\n')); err != nil {
			return nil, err
		}
		return inc, nil
	}
	return nil, fmt.Errorf("999 incidents already declared on %s", day)
}

// Open loads an existing incident.
func Open(stateDir, id string) (*Incident, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("incident ID %q: want the form SEC-YYYYMMDD-NNN", id)
	}
	dir := filepath.Join(stateDir, id)
	b, err := os.ReadFile(filepath.Join(dir, "incident.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("incident %s not found in %s (declare it with `irctl declare`)", id, stateDir)
	}
	if err != nil {
		return nil, err
	}
	var inc Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "incident.json"), err)
	}
	inc.dir = dir
	return &inc, nil
}

// List returns the IDs of the incidents in stateDir, oldest first.
func List(stateDir string) ([]string, error) {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && idPattern.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// ValidSeverity reports whether s is one of Severities.
func ValidSeverity(s string) bool {
	for _, v := range Severities {
		if v == s {
			return true
		}
	}
	return false
}

// Operator names the person running irctl: OS user and host.
func Operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	if host == "" {
		return name
	}
	return name + "@" + host
}

// Record kinds in the journal.
const (
	KindIntent      = "intent"      // about to apply a step
	KindOutcome     = "outcome"     // what the step did (or its error)
	KindPlanned     = "planned"     // client dry run: planned only
	KindNoop        = "noop"        // nothing to change
	KindDeclined    = "declined"    // the operator said no, or no terminal and no --yes
	KindDrafted     = "drafted"     // an external notice saved as evidence, not sent (nobody to confirm)
	KindSkipped     = "skipped"     // a manual step under --yes: nobody confirmed it, so it is not done
	KindInputs      = "inputs"      // params a phase took from earlier steps' results (Set), pinned for resume
	KindInterrupted = "interrupted" // SIGINT during the step
	KindUndo        = "undo"        // an undo of an earlier outcome
	// KindEvidence anchors the evidence manifest: written after each
	// commit with the number of entries and the hash of the newest line,
	// so that removing or rewriting the manifest's tail is caught.
	KindEvidence = "evidence"
	KindRun      = "run" // a run starts: what `irctl resume` needs to continue it
	// KindNote is the operator's own words (`irctl note add`): the
	// report's summary, root cause and prevention come from them.
	KindNote = "note"
)

// Note kinds say where the report places a note.
var NoteKinds = []string{"summary", "root-cause", "prevention", "other"}

// Record is one journal line.
type Record struct {
	Time         time.Time       `json:"time"`
	Kind         string          `json:"kind"`
	Incident     string          `json:"incident"`
	Operator     string          `json:"operator"`
	Runbook      string          `json:"runbook,omitempty"`
	RunbookHash  string          `json:"runbook_hash,omitempty"`
	Phase        string          `json:"phase,omitempty"`
	Step         string          `json:"step,omitempty"`
	Action       string          `json:"action,omitempty"`
	DryRun       string          `json:"dry_run,omitempty"`
	Params       map[string]any  `json:"params,omitempty"`
	Plan         string          `json:"plan,omitempty"`
	PlanCount    *int            `json:"plan_count,omitempty"`
	Result       string          `json:"result,omitempty"`
	Changed      *int            `json:"changed,omitempty"`
	Failed       json.RawMessage `json:"failed,omitempty"`
	Undo         json.RawMessage `json:"undo,omitempty"`
	Irreversible string          `json:"irreversible,omitempty"`
	Error        string          `json:"error,omitempty"`
	// Sent are the keys of the notifications a step delivered (never in a
	// dry run): a rerun or resume does not send them again.
	Sent []string `json:"sent,omitempty"`
	// Seq numbers records within the journal; Undoes points at the Seq of
	// the outcome an undo reversed.
	Seq    int `json:"seq"`
	Undoes int `json:"undoes,omitempty"`
	// Evidence anchors (KindEvidence): the item just committed, the
	// manifest's entry count and the SHA-256 of its last line.
	EvidenceItem  string `json:"evidence_item,omitempty"`
	EvidenceItems int    `json:"evidence_items,omitempty"`
	EvidenceHead  string `json:"evidence_head,omitempty"`

	// A run record (KindRun) says what was asked, so that `irctl resume`
	// can continue it: the command ("run" or the phase), the phases, the
	// runbook as given with -f, and the --set values with secret params
	// redacted. Resumes is the Seq of the run record a resume continues.
	Command    string            `json:"command,omitempty"`
	Phases     []string          `json:"phases,omitempty"`
	RunbookRef string            `json:"runbook_ref,omitempty"`
	Set        map[string]string `json:"set,omitempty"`
	Resumes    int               `json:"resumes,omitempty"`

	// A note (KindNote): its kind (one of NoteKinds) and text, redacted.
	NoteKind string `json:"note_kind,omitempty"`
	Text     string `json:"text,omitempty"`
}

// ReadJournal reads every record; a missing journal is empty. A torn last
// line (a crash mid-write) is ignored, anything else malformed is an error.
func ReadJournal(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	line := 0
	var pending error
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			pending = fmt.Errorf("%s:%d: corrupt journal record: %v", path, line, err)
			continue
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}
