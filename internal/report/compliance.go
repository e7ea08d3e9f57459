package report

import (
	"fmt"
	"strings"
	"time"

	"irctl.dev/irctl/internal/clocks"
)

// Regulation is one compliance line: whether a breach notice is required,
// why, by when, and whether the journal records it sent.
type Regulation struct {
	Name     string     `json:"name"`
	Status   string     `json:"status"` // Required, Not required, Undetermined
	Basis    string     `json:"basis"`
	Deadline *time.Time `json:"deadline,omitempty"`
	Due      string     `json:"due"`
	Notified string     `json:"notified"`
}

// Compliance statuses.
const (
	Required     = "Required"
	NotRequired  = "Not required"
	Undetermined = "Undetermined"
)

// regulations: the data categories each one covers, the notice's due
// time (a fixed delay from the declaration, i.e. awareness, or a rule in
// words) and the notify steps whose sending counts as the notice (by a
// word in the step's name).
var regulations = []struct {
	name       string
	categories []string
	delay      time.Duration
	due        string
	steps      []string
}{
	{"GDPR", []string{"personal", "health"}, clocks.GDPRWindow, "supervisory authority within 72 h of awareness (Art. 33)", []string{"regulator"}},
	{"CCPA", []string{"personal", "health"}, 0, "affected California residents without unreasonable delay (Cal. Civ. Code 1798.82)", []string{"customer"}},
	{"PCI DSS", []string{"payment"}, 0, "card brands and acquirer immediately, per their rules", nil},
	{"HIPAA", []string{"health"}, 60 * 24 * time.Hour, "individuals and HHS within 60 days of discovery (45 CFR 164.404, 164.408)", []string{"regulator", "customer"}},
}

// categoryAliases map the words a runbook may use to the categories above.
var categoryAliases = map[string]string{
	"personal": "personal", "personal-data": "personal", "pii": "personal",
	"payment": "payment", "card": "payment", "cardholder": "payment", "pci": "payment",
	"health": "health", "phi": "health", "medical": "health",
}

// NormalizeCategories maps the runbook's category words to personal,
// payment and health, keeping unknown words as written.
func NormalizeCategories(in []string) []string {
	if in == nil {
		return nil
	}
	out := []string{}
	seen := map[string]bool{}
	for _, c := range in {
		c = strings.ToLower(strings.TrimSpace(c))
		if c == "" {
			continue
		}
		if a, ok := categoryAliases[c]; ok {
			c = a
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// compliance decides each regulation: Required when the runbook declares
// its data category and the evidence shows the attacker reached data
// (accounts logged into, or large transfers); Not required when the
// runbook declares categories without it; Undetermined otherwise. With no
// categories declared, accounts logged into by the attacker still make
// GDPR and CCPA required: user accounts are personal data.
func compliance(categories []string, from string, im Impact, notes []Notification, declared, now time.Time) []Regulation {
	accessed := (im.AccountsAffected != nil && *im.AccountsAffected > 0) || (im.Transfers != nil && *im.Transfers > 0)
	var evidence string
	switch {
	case accessed:
		evidence = fmt.Sprintf("the evidence shows %s accessed and %s", countOr(im.AccountsAffected, "account(s)"), countOr(im.Transfers, "large transfer(s)"))
	case im.AccountsAffected == nil && im.Transfers == nil:
		evidence = "the assess phase's evidence (compromised-accounts, large-transfers) is not collected yet"
	default:
		evidence = "the evidence shows no account accessed and no large transfer"
	}
	has := map[string]bool{}
	for _, c := range categories {
		has[c] = true
	}
	var out []Regulation
	for _, reg := range regulations {
		r := Regulation{Name: reg.name, Due: reg.due, Notified: notified(notes, reg.steps)}
		var matched []string
		for _, c := range reg.categories {
			if has[c] {
				matched = append(matched, c)
			}
		}
		switch {
		case categories != nil && len(matched) == 0:
			r.Status, r.Basis = NotRequired, fmt.Sprintf("%s declares no %s data", from, strings.Join(reg.categories, " or "))
		case categories != nil && accessed:
			r.Status, r.Basis = Required, fmt.Sprintf("%s declares %s data, and %s", from, strings.Join(matched, " and "), evidence)
		case categories != nil:
			r.Status, r.Basis = Undetermined, fmt.Sprintf("%s declares %s data; %s", from, strings.Join(matched, " and "), evidence)
		case reg.categories[0] == "personal" && im.AccountsAffected != nil && *im.AccountsAffected > 0:
			r.Status, r.Basis = Required, "no data categories declared, but "+evidence+": user accounts are personal data"
		default:
			r.Status, r.Basis = Undetermined, "no data categories declared in the runbook; "+evidence
		}
		if reg.delay > 0 && r.Status != NotRequired {
			d := declared.Add(reg.delay).UTC()
			r.Deadline = &d
		}
		out = append(out, r)
	}
	return out
}

func countOr(n *int, what string) string {
	if n == nil {
		return "an unmeasured number of " + what
	}
	return fmt.Sprintf("%d %s", *n, what)
}

// notified says whether a notify step named like one of words sent
// anything, and when.
func notified(notes []Notification, words []string) string {
	if len(words) == 0 {
		return "not tracked by irctl"
	}
	drafted := ""
	for _, n := range notes {
		match := false
		for _, w := range words {
			match = match || strings.Contains(n.Step, w)
		}
		if !match {
			continue
		}
		if n.Sent > 0 {
			return fmt.Sprintf("yes: %s sent %d message(s) at %s", n.Step, n.Sent, n.Time.Format(timeFmt))
		}
		if n.Outcome == "drafted" || n.Outcome == "declined" {
			drafted = fmt.Sprintf("no: %s %s at %s", n.Step, n.Outcome, n.Time.Format(timeFmt))
		}
	}
	if drafted != "" {
		return drafted
	}
	return "no"
}

const timeFmt = "2006-01-02 15:04:05Z"
