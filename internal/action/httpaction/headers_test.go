package httpaction

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const canary = "sk_live_CANARY_7f3e9a"

// The headers reach the server; their values appear in no plan, result
// or error, and the journal shows the params redacted.
func TestCheckSendsHeadersAndNeverShowsThem(t *testing.T) {
	var got http.Header
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if r.Header.Get("Authorization") != "Bearer "+canary {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	for _, tc := range []struct {
		vals   map[string]any
		status int64
		pass   bool
	}{
		{map[string]any{"bearer": canary, "headers": map[string]any{"X-Forwarded-For": "203.0.113.77"}}, 200, true},
		{map[string]any{"headers": map[string]any{"Authorization": "Bearer " + canary}}, 401, false},
		{map[string]any{"bearer": "revoked-" + canary}, 401, true},
	} {
		tc.vals["url"] = s.URL + "/v1/me"
		tc.vals["status"] = tc.status
		p := Check{}.Spec().MustBind(tc.vals)
		plan, res, err := run(t, p)
		if (err == nil) != tc.pass {
			t.Errorf("%v: err %v, want pass %v", tc.vals, err, tc.pass)
		}
		shown := plan.Summary + strings.Join(plan.Targets, " ")
		if res != nil {
			shown += res.Summary
		}
		if err != nil {
			shown += err.Error()
		}
		if strings.Contains(shown, canary) || !strings.Contains(plan.Summary, "with Authorization") {
			t.Errorf("shown: %s", shown)
		}
		for k, v := range p.Display(Check{}.Spec(), nil) {
			if strings.Contains(strings.ToLower(k+" "+toString(v)), strings.ToLower(canary)) {
				t.Errorf("journal params show %s: %v", k, v)
			}
		}
	}
	if got.Get("Authorization") != "Bearer revoked-"+canary {
		t.Errorf("last request's Authorization: %q", got.Get("Authorization"))
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func TestCheckRefusesBadHeaders(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"headers": map[string]any{"Bad Name": "x"}}, `headers: "Bad Name" is not a header name`},
		{map[string]any{"headers": map[string]any{"X-Key": canary + "\r\nX-Evil: 1"}}, "headers: the value of X-Key has a line break or NUL"},
		{map[string]any{"bearer": canary, "headers": map[string]any{"authorization": "Basic eA=="}}, "give bearer or an Authorization header, not both"},
		{map[string]any{"bearer": "a b"}, "bearer: the token has a space"},
		{map[string]any{"bearer": ""}, "bearer is empty: the check would send no credential at all"},
	} {
		tc.vals["url"] = "http://127.0.0.1:1/"
		p, err := Check{}.Spec().Bind(tc.vals)
		if err == nil {
			err = Check{}.Spec().Validate(p)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), canary) {
			t.Errorf("%v: err %v, want %q", tc.vals, err, tc.want)
		}
	}
}
