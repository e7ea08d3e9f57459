package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// apiCall is one request to the orchestrator stand-in: its status, body
// and the error message of a refusal.
type apiCall struct {
	status int
	body   map[string]any
}

func (c apiCall) String() string { return fmt.Sprintf("%d %v", c.status, c.body) }

// orchGet sends GET path to the stand-in from address from (as
// X-Forwarded-For) with the given header set.
func orchGet(t *testing.T, s *sandbox.Sandbox, path, from string, header ...string) apiCall {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.OrchestratorURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	req.Header.Set("User-Agent", "irctl-test")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: decoding the answer: %v", path, err)
	}
	return apiCall{resp.StatusCode, body}
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// lastAudit returns the newest audit_events row written for the test's
// requests (user agent irctl-test).
func lastAudit(t *testing.T, conn *pgx.Conn) (event string, userID *int64, ip, resource, reason string) {
	t.Helper()
	err := conn.QueryRow(t.Context(), `SELECT event_type, user_id, host(ip_address), resource_id, coalesce(details->>'reason', '')
		FROM audit_events WHERE user_agent = 'irctl-test' ORDER BY id DESC LIMIT 1`).
		Scan(&event, &userID, &ip, &resource, &reason)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// seededKey returns the raw key of the seed's first "sandbox-key-N" row
// matching cond (SQL over k, api_keys, and u, users).
func seededKey(t *testing.T, conn *pgx.Conn, cond string) string {
	t.Helper()
	var id int64
	err := conn.QueryRow(t.Context(), `SELECT k.id FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.key_hash = encode(sha256(convert_to('sandbox-key-' || k.id, 'UTF8')), 'hex') AND `+cond+
		` ORDER BY k.id LIMIT 1`).Scan(&id)
	if err != nil {
		t.Fatalf("no seeded key where %s: %v", cond, err)
	}
	return fmt.Sprintf("sandbox-key-%d", id)
}

func TestOrchestratorAPIKeysAndUsers(t *testing.T) {
	s := sandboxtest.Get(t)
	sandboxtest.ResetDB(t, s)
	defer sandboxtest.ResetDB(t, s) // keys revoked, users disabled
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	env, err := os.ReadFile(filepath.Join(filepath.Dir(s.KubeconfigPath), "env"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "export ORCHESTRATOR_URL='"+s.OrchestratorURL+"'\n") {
		t.Errorf("env does not export ORCHESTRATOR_URL=%s:\n%s", s.OrchestratorURL, env)
	}
	if s.AttackerJWT == "" || !strings.Contains(string(env), "export ATTACKER_API_KEY='attacker-key-1'\n") || !strings.Contains(string(env), "export ATTACKER_JWT='"+s.AttackerJWT+"'\n") {
		t.Errorf("env does not export the attacker's key and JWT:\n%s", env)
	}

	t.Run("valid key accepted and audited with the forwarded address", func(t *testing.T) {
		// The key the attacker minted for Laura (user 13).
		got := orchGet(t, s, "/v1/me", "203.0.113.77", "X-API-Key", "attacker-key-1")
		if got.status != http.StatusOK || got.body["user_id"] != float64(13) || got.body["auth"] != "api_key" {
			t.Fatalf("GET /v1/me with attacker-key-1 = %s, want 200 for user 13", got)
		}
		event, uid, ip, res, _ := lastAudit(t, conn)
		if event != "api_call" || uid == nil || *uid != 13 || ip != "203.0.113.77" || res != "/v1/me" {
			t.Errorf("audit row = %s user %v from %s on %s, want api_call by 13 from 203.0.113.77 on /v1/me", event, uid, ip, res)
		}
		var used bool
		if err := conn.QueryRow(ctx, `SELECT last_used_at > now() - interval '1 minute' FROM api_keys WHERE key_prefix = 'sk_live_5f3a9c1e'`).Scan(&used); err != nil || !used {
			t.Errorf("last_used_at of the key not updated (%v)", err)
		}
		// As a bearer token too.
		if got := orchGet(t, s, "/v1/me", "", bearer("attacker-key-1")...); got.status != http.StatusOK {
			t.Errorf("attacker-key-1 as a bearer token = %s, want 200", got)
		}
	})

	t.Run("revoked key refused", func(t *testing.T) {
		key := seededKey(t, conn, "k.revoked_at IS NOT NULL AND u.disabled_at IS NULL")
		got := orchGet(t, s, "/v1/me", "198.51.100.23", "X-API-Key", key)
		if got.status != http.StatusUnauthorized || got.body["error"] != "api key revoked" {
			t.Fatalf("revoked %s = %s, want 401 api key revoked", key, got)
		}
		event, _, ip, _, reason := lastAudit(t, conn)
		if event != "authentication_failed" || ip != "198.51.100.23" || reason != "api key revoked" {
			t.Errorf("audit row = %s from %s (%s), want authentication_failed from 198.51.100.23", event, ip, reason)
		}
		// Revoking a live key takes effect at once: a request that meets
		// the revocation in flight waits for its commit and is refused.
		revoker, err := pgx.Connect(ctx, s.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer revoker.Close(ctx)
		tx, err := revoker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = clock_timestamp() WHERE key_prefix = 'sk_live_0b7d44e2'`); err != nil {
			t.Fatal(err)
		}
		answered := make(chan apiCall, 1)
		go func() { answered <- orchGet(t, s, "/v1/me", "", "X-API-Key", "attacker-key-2") }()
		select {
		case got := <-answered:
			t.Fatalf("attacker-key-2 during its revocation answered %s before the revocation committed", got)
		case <-time.After(500 * time.Millisecond):
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := <-answered; got.status != http.StatusUnauthorized || got.body["error"] != "api key revoked" {
			t.Errorf("attacker-key-2 during its revocation = %s, want 401 api key revoked", got)
		}
		if got := orchGet(t, s, "/v1/me", "", "X-API-Key", "attacker-key-2"); got.status != http.StatusUnauthorized {
			t.Errorf("attacker-key-2 after revoking it = %s, want 401", got)
		}
	})

	t.Run("unknown key and missing credentials refused", func(t *testing.T) {
		if got := orchGet(t, s, "/v1/me", "", "X-API-Key", "sk_live_5f3a9c1e"); got.status != http.StatusUnauthorized {
			t.Errorf("a key prefix as the key = %s, want 401", got)
		}
		if got := orchGet(t, s, "/v1/me", "2001:db8:bad:1::21"); got.status != http.StatusUnauthorized {
			t.Errorf("no credentials = %s, want 401", got)
		}
		if _, _, ip, _, _ := lastAudit(t, conn); ip != "2001:db8:bad:1::21" {
			t.Errorf("audit address = %s, want 2001:db8:bad:1::21", ip)
		}
	})

	t.Run("disabled user refused", func(t *testing.T) {
		key := seededKey(t, conn, "k.revoked_at IS NULL AND u.disabled_at IS NOT NULL")
		if got := orchGet(t, s, "/v1/me", "", "X-API-Key", key); got.status != http.StatusForbidden || got.body["error"] != "user disabled" {
			t.Errorf("key %s of a disabled user = %s, want 403 user disabled", key, got)
		}
		// Disabling a user refuses their live key and their tokens.
		if _, err := conn.Exec(ctx, `UPDATE users SET disabled_at = now() WHERE id = 13`); err != nil {
			t.Fatal(err)
		}
		if got := orchGet(t, s, "/v1/me", "", "X-API-Key", "attacker-key-1"); got.status != http.StatusForbidden {
			t.Errorf("attacker-key-1 after disabling user 13 = %s, want 403", got)
		}
		token, err := sandbox.SignOrchestratorJWT(jwtKey(t, s), 13, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got := orchGet(t, s, "/v1/me", "", bearer(token)...); got.status != http.StatusForbidden {
			t.Errorf("a JWT of disabled user 13 = %s, want 403", got)
		}
		if event, uid, _, _, reason := lastAudit(t, conn); event != "authentication_failed" || uid == nil || *uid != 13 || reason != "user disabled" {
			t.Errorf("audit row = %s by %v (%s), want authentication_failed by 13: user disabled", event, uid, reason)
		}
	})

	t.Run("JWT checks", func(t *testing.T) {
		key := jwtKey(t, s)
		ok, _ := sandbox.SignOrchestratorJWT(key, 7, time.Hour)
		if got := orchGet(t, s, "/v1/me", "", bearer(ok)...); got.status != http.StatusOK || got.body["user_id"] != float64(7) || got.body["auth"] != "jwt" {
			t.Errorf("a valid JWT for user 7 = %s, want 200", got)
		}
		expired, _ := sandbox.SignOrchestratorJWT(key, 7, -time.Minute)
		other, _ := sandbox.SignOrchestratorJWT([]byte("not-the-key"), 7, time.Hour)
		for name, token := range map[string]string{"expired": expired, "wrong key": other, "garbage": "a.b.c"} {
			if got := orchGet(t, s, "/v1/me", "", bearer(token)...); got.status != http.StatusUnauthorized {
				t.Errorf("%s JWT = %s, want 401", name, got)
			}
		}
	})
}

// jwtKey reads the orchestrator's JWT signing key from its Secret.
func jwtKey(t *testing.T, s *sandbox.Sandbox) []byte {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(sandbox.DemoNamespace).Get(t.Context(), "orchestrator-jwt-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sec.Data["secret"]
}
