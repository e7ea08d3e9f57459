package runbook

import (
	"fmt"
	"net/netip"
	"time"

	"irctl.dev/irctl/internal/redact"
)

// Params are a step's parameters after rendering and type conversion; the
// getters return the zero value for a param that was not given, since the
// loader has already enforced required params and types.
type Params map[string]any

// Has reports whether the step set param k.
func (p Params) Has(k string) bool { _, ok := p[k]; return ok }

func (p Params) String(k string) string { s, _ := p[k].(string); return s }
func (p Params) Int(k string) int64     { n, _ := p[k].(int64); return n }
func (p Params) Bool(k string) bool     { b, _ := p[k].(bool); return b }

func (p Params) Duration(k string) time.Duration { d, _ := p[k].(time.Duration); return d }
func (p Params) Strings(k string) []string       { s, _ := p[k].([]string); return s }
func (p Params) Ints(k string) []int64           { s, _ := p[k].([]int64); return s }
func (p Params) CIDRs(k string) []netip.Prefix   { s, _ := p[k].([]netip.Prefix); return s }
func (p Params) IPs(k string) []netip.Addr       { s, _ := p[k].([]netip.Addr); return s }
func (p Params) Map(k string) map[string]string  { m, _ := p[k].(map[string]string); return m }

// Display renders the params for the journal and plans: values of secret
// params (per the action's spec) are replaced by "[redacted]", and so is
// every runbook secret inside any other value ("Bearer {{ .token }}") and
// the password of any URL; lists and durations print in their natural
// form.
func (p Params) Display(spec Spec, secrets []string) map[string]any {
	secret := map[string]bool{}
	for _, d := range spec.Params {
		secret[d.Name] = d.Secret
	}
	red := redact.New(secrets...)
	out := make(map[string]any, len(p))
	for k, v := range p {
		if secret[k] {
			out[k] = redact.Mark
			continue
		}
		out[k] = red.Value(display(v))
	}
	return out
}

func display(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case []netip.Prefix, []netip.Addr:
		return fmt.Sprint(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = display(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = display(e)
		}
		return out
	}
	return v
}

// secretStrings are the texts of a secret param's value: a string, or each
// item of a list (a list of tokens is as secret as one token). Numbers
// and addresses are not collected: redacting every "5" would garble the
// output and protect nothing.
func secretStrings(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []string:
		out = append(out, x...)
	}
	var nonEmpty []string
	for _, s := range out {
		if s != "" {
			nonEmpty = append(nonEmpty, s)
		}
	}
	return nonEmpty
}
