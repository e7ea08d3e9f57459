package runbook

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Window is the time a phase should be complete by, counted from the
// incident's declaration: From is when the phase's window opens (shown,
// not enforced), To its deadline.
type Window struct {
	Phase    string
	From, To time.Duration
	Line     int
}

// Escalation is one row of a runbook's escalation matrix: who is told of
// an incident of a severity, how, and within how long of its declaration.
type Escalation struct {
	Who     string
	Contact string // rendered from the runbook's params, for display
	// Step names the notify step that tells them: the escalation is done
	// when the journal records that step delivering. Channel is the
	// alternative for an out-of-band contact (a phone call) irctl cannot
	// see: such a row is shown with its deadline, never judged.
	Step    string
	Channel string
	Within  time.Duration
	// DataBreach rows apply only when the runbook's data categories
	// include personal data (the seed's "Legal within 15 minutes for data
	// breaches").
	DataBreach bool
	Line       int
}

// DataCategories accepted by data_categories: health data is personal
// data too (GDPR art. 9), so either starts the GDPR clock.
var DataCategories = []string{"personal", "health", "payment", "credentials"}

// PersonalData reports whether the runbook's data categories include
// personal data (personal or health), which starts GDPR's 72-hour clock.
func (rb *Runbook) PersonalData() bool {
	for _, c := range rb.DataCategories {
		if c == "personal" || c == "health" {
			return true
		}
	}
	return false
}

// EscalationFor returns the matrix's rows for severity, data-breach rows
// left out when the runbook declares no personal data.
func (rb *Runbook) EscalationFor(severity string) []Escalation {
	var out []Escalation
	for _, e := range rb.Escalation[severity] {
		if e.DataBreach && !rb.PersonalData() {
			continue
		}
		out = append(out, e)
	}
	return out
}

type windowDoc struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

type escalationDoc struct {
	Who        string `yaml:"who"`
	Contact    string `yaml:"contact"`
	Step       string `yaml:"step"`
	Channel    string `yaml:"channel"`
	Within     string `yaml:"within"`
	DataBreach bool   `yaml:"data_breach"`
}

// severities are the keys an escalation matrix may use: declare's.
var severities = []string{"P0", "P1", "P2", "P3", "P4"}

// loadClocks checks and converts the runbook's windows, escalation matrix,
// data categories and authority notice; it runs after the phases are
// loaded, since rows name notify steps.
func loadClocks(rb *Runbook, d *doc, top *yaml.Node, data map[string]any, add func(int, string, ...any)) {
	winNode := child(top, "windows")
	for _, ph := range keysInOrder(winNode, sortedKeys(d.Windows)) {
		wd := d.Windows[ph]
		line := keyLine(winNode, ph)
		if !IsPhase(ph) {
			add(line, "windows: unknown phase %q (phases: %s)", ph, strings.Join(Phases, ", "))
			continue
		}
		if len(rb.Phases[ph]) == 0 {
			add(line, "windows: phase %s has no steps in this runbook", ph)
			continue
		}
		w := Window{Phase: ph, Line: line}
		var err error
		n := child(winNode, ph)
		if wd.To == "" {
			add(line, "windows: %s needs to: (its deadline, like 1h)", ph)
			continue
		}
		if w.To, err = ParseDuration(wd.To); err != nil || w.To == 0 {
			add(valueLine(n, "to"), "windows: %s: to: %s", ph, durErr(wd.To, err))
			continue
		}
		if wd.From != "" {
			if w.From, err = ParseDuration(wd.From); err != nil {
				add(valueLine(n, "from"), "windows: %s: from: %v", ph, err)
				continue
			}
		}
		if w.From > w.To {
			add(valueLine(n, "from"), "windows: %s: from (%s) is after to (%s)", ph, wd.From, wd.To)
			continue
		}
		rb.Windows = append(rb.Windows, w)
	}
	escNode := child(top, "escalation")
	notify := map[string]bool{}
	for _, s := range rb.Phases["notify"] {
		notify[s.Name] = true
	}
	for _, sev := range keysInOrder(escNode, sortedKeys(d.Escalation)) {
		sevLine := keyLine(escNode, sev)
		if !contains(severities, sev) {
			add(sevLine, "escalation: unknown severity %q (want one of %s)", sev, strings.Join(severities, ", "))
			continue
		}
		seq := child(escNode, sev)
		if seq != nil && seq.Kind == yaml.AliasNode {
			seq = seq.Alias
		}
		for i, ed := range d.Escalation[sev] {
			line := sevLine
			var n *yaml.Node
			if seq != nil && i < len(seq.Content) {
				n = seq.Content[i]
				line = n.Line
			}
			e := Escalation{Who: ed.Who, Step: ed.Step, Channel: ed.Channel, DataBreach: ed.DataBreach, Line: line}
			where := fmt.Sprintf("escalation %s", sev)
			if e.Who == "" {
				add(line, "%s: a row needs who:", where)
				continue
			}
			where += " " + e.Who
			switch {
			case e.Step == "" && e.Channel == "":
				add(line, "%s: needs step: (the notify step that tells them) or channel: (how they are told out of band)", where)
				continue
			case e.Step != "" && e.Channel != "":
				add(line, "%s: step: and channel: are exclusive", where)
				continue
			case e.Step != "" && !notify[e.Step]:
				add(valueLine(n, "step"), "%s: step %q is not a step of the notify phase%s", where, e.Step, suggest(e.Step, sortedKeys(notify)))
				continue
			}
			if ed.Within == "" {
				add(line, "%s: needs within: (like 5m; 0s for immediately)", where)
				continue
			}
			var err error
			if e.Within, err = ParseDuration(ed.Within); err != nil {
				add(valueLine(n, "within"), "%s: within: %v", where, err)
				continue
			}
			if ed.Contact != "" {
				v, missing, err := render(ed.Contact, data)
				switch {
				case err != nil:
					add(valueLine(n, "contact"), "%s: contact: %v", where, err)
					continue
				case len(missing) > 0:
					e.Contact = "(needs --set " + strings.Join(missing, ", ") + ")"
				default:
					e.Contact = contactText(v)
				}
				if e.Contact == "" {
					e.Contact = "(none set)"
				}
				for _, p := range rb.Params {
					if p.Secret && paramRefs(ed.Contact)[p.Name] {
						e.Contact = "[redacted]" // status shows contacts: never a secret
					}
				}
			}
			if rb.Escalation == nil {
				rb.Escalation = map[string][]Escalation{}
			}
			rb.Escalation[sev] = append(rb.Escalation[sev], e)
		}
	}
	catNode := child(top, "data_categories")
	for i, c := range d.DataCategories {
		if !contains(DataCategories, c) {
			line := valueLine(top, "data_categories")
			if catNode != nil && i < len(catNode.Content) {
				line = catNode.Content[i].Line
			}
			add(line, "data_categories: unknown category %q (want %s)", c, strings.Join(DataCategories, ", "))
			continue
		}
		rb.DataCategories = append(rb.DataCategories, c)
	}
	if d.AuthorityNotice != "" {
		if !notify[d.AuthorityNotice] {
			add(valueLine(top, "authority_notice"), "authority_notice: %q is not a step of the notify phase%s", d.AuthorityNotice, suggest(d.AuthorityNotice, sortedKeys(notify)))
		} else {
			rb.AuthorityNotice = d.AuthorityNotice
		}
	}
}

func durErr(s string, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%q is not a positive duration", s)
}

// contactText shows a rendered contact: a list param reads as a list.
func contactText(v any) string {
	switch x := v.(type) {
	case []string:
		return strings.Join(x, ", ")
	case []any:
		var ss []string
		for _, e := range x {
			ss = append(ss, fmt.Sprint(e))
		}
		return strings.Join(ss, ", ")
	}
	return fmt.Sprint(v)
}

func contains(ss []string, s string) bool {
	for _, v := range ss {
		if v == s {
			return true
		}
	}
	return false
}
