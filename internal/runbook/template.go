package runbook

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

// wholeRef matches a value that is exactly one param reference, which keeps
// its type (a list stays a list) instead of being rendered to text.
var wholeRef = regexp.MustCompile(`^\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}$`)
var anyRef = regexp.MustCompile(`\{\{[^}]*\.([A-Za-z_][A-Za-z0-9_]*)`)

var funcs = template.FuncMap{
	// lower makes {{ .incident }} usable in object names (SEC-... is not
	// a DNS label).
	"lower": strings.ToLower,
	"join": func(sep string, v any) string {
		switch x := v.(type) {
		case []string:
			return strings.Join(x, sep)
		default:
			return fmt.Sprint(v)
		}
	},
}

// render expands templates in every string inside v. It returns the names of
// referenced params that have no value instead of failing on them.
func render(v any, data map[string]any) (any, []string, error) {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") {
			return x, nil, nil
		}
		var missing []string
		for _, m := range anyRef.FindAllStringSubmatch(x, -1) {
			if _, ok := data[m[1]]; !ok {
				missing = append(missing, m[1])
			}
		}
		if m := wholeRef.FindStringSubmatch(strings.TrimSpace(x)); m != nil && len(missing) == 0 {
			return data[m[1]], nil, nil
		}
		t, err := template.New("").Option("missingkey=error").Funcs(funcs).Parse(x)
		if err != nil {
			return nil, nil, fmt.Errorf("bad template: %s", strings.TrimPrefix(err.Error(), "template: :"))
		}
		if len(missing) > 0 {
			return nil, missing, nil
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return nil, nil, fmt.Errorf("bad template: %s", strings.TrimPrefix(err.Error(), "template: :"))
		}
		return b.String(), nil, nil
	case []any:
		out := make([]any, len(x))
		var missing []string
		for i, e := range x {
			r, m, err := render(e, data)
			if err != nil {
				return nil, nil, err
			}
			out[i], missing = r, append(missing, m...)
		}
		return out, missing, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		var missing []string
		for k, e := range x {
			r, m, err := render(e, data)
			if err != nil {
				return nil, nil, err
			}
			missing = append(missing, m...)
			// Keys are templated too ({"{{ .container }}": image}); a
			// key must render to text.
			rk, mk, err := render(k, data)
			if err != nil {
				return nil, nil, err
			}
			missing = append(missing, mk...)
			key, ok := rk.(string)
			if len(mk) == 0 && !ok {
				return nil, nil, fmt.Errorf("key %q: a template used as a key must give text, not %T", k, rk)
			}
			if _, dup := out[key]; dup && key != k {
				return nil, nil, fmt.Errorf("key %q renders to %q, which is already a key", k, key)
			}
			out[key] = r
		}
		return out, missing, nil
	}
	return v, nil, nil
}

// hasTemplate reports whether any string inside v holds template markup.
func hasTemplate(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "{{")
	case []any:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasTemplate(e) {
				return true
			}
		}
	}
	return false
}

// argsParamFor names the param that binds the placeholders of SQL param k
// (sql -> args, guard -> guard_args), for the loader's message.
func argsParamFor(k string) string {
	if k == "sql" {
		return "args"
	}
	return k + "_args"
}
