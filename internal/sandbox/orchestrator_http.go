package sandbox

// The orchestrator stand-in's HTTP side. Every request but /health must
// authenticate, and every one of them, accepted or refused, writes an
// audit_events row (health probes are not audited, as in most services:
// they would drown the log). The caller's address is the first entry of
// X-Forwarded-For, which the sandbox trusts as if a load balancer in front
// of it had set it, so tests and drills can act from the seed's attacker
// addresses; without the header it is the connection's address.
//
// Credentials:
//   - an API key, in X-API-Key or as a bearer token: the seed stores only
//     each key's SHA-256 (hex) and a display prefix that is not part of
//     the key, so the key is found by its hash, as such services do. A
//     revoked key (revoked_at set) is refused; an accepted key's
//     last_used_at is updated.
//   - a JWT (HS256) as a bearer token, signed with the JWT_SECRET the
//     running pods have, with "sub" the user id and "exp" required.
//
// Either way a disabled user (users.disabled_at set) is refused.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// caller is an authenticated request's principal.
type caller struct {
	UserID    int64  `json:"user_id"`
	Email     string `json:"email"`
	Role      string `json:"role"`
	Auth      string `json:"auth"` // api_key or jwt
	KeyPrefix string `json:"key_prefix,omitempty"`
	// usedAt is when the database took the key as valid (its
	// last_used_at), the moment a request with a key counts as accepted.
	usedAt time.Time
}

// authError is a refusal: the HTTP status and the audit reason.
type authError struct {
	status int
	reason string
	userID int64 // 0: unknown
	prefix string
}

func (e *authError) Error() string { return e.reason }

func (o *orchestratorAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", o.health)
	mux.HandleFunc("/", o.api)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// health answers 200 only when the database answers with the loaded
// credentials and at least one orchestrator pod is Ready. The database
// check opens a new connection, as a restarting pod would: the pool's open
// connections outlive a password change.
func (o *orchestratorAPI) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	// generation tells which rollout's configuration the service runs.
	body := map[string]any{"status": "ok", "generation": o.liveGeneration()}
	status := http.StatusOK
	fail := func(part string, err error) {
		status = http.StatusServiceUnavailable
		body["status"] = "unavailable"
		body[part] = summarize(err)
	}
	if err := o.pingDB(ctx); err != nil {
		fail("database", err)
	}
	n, err := o.readyPods(ctx)
	body["ready_pods"] = n
	if err != nil {
		fail("pods", err)
	} else if n == 0 {
		fail("pods", errors.New("no orchestrator pod is Ready"))
	}
	if err := o.lastErr(); err != nil {
		body["config"] = summarize(err) // the running configuration stays
	}
	writeJSON(w, status, body)
}

// api authenticates the request, audits it, answers it and logs it in
// the log of the orchestrator pod that serves it (requestlog.go).
func (o *orchestratorAPI) api(rw http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	began := time.Now()
	w := &recorder{ResponseWriter: rw}
	info := &requestInfo{}
	addr := callerAddr(r)
	defer func() { o.logRequest(ctx, r, addr, w, info, time.Since(began)) }()
	// The audit row is stamped when the request was judged, with the key
	// live then: a request the old key let in just before a rotation went
	// live is not dated after it by a slow INSERT.
	judged := time.Now()
	key, pool := o.state()
	if pool == nil {
		info.reason = "database not configured"
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database not configured"})
		return
	}
	who, err := authenticate(ctx, pool, key, r)
	var ae *authError
	switch {
	case errors.As(err, &ae):
		info.userID, info.keyPrefix, info.reason = ae.userID, ae.prefix, ae.reason
		details := map[string]any{"method": r.Method, "status": ae.status, "reason": ae.reason}
		if ae.prefix != "" {
			details["key_prefix"] = ae.prefix
		}
		if aerr := audit(ctx, pool, judged, "authentication_failed", ae.userID, r, addr, details); aerr != nil {
			dbUnavailable(w, aerr)
			return
		}
		writeJSON(w, ae.status, map[string]string{"error": ae.reason})
		return
	case err != nil:
		info.reason = "database unavailable"
		dbUnavailable(w, err)
		return
	}
	info.userID, info.auth, info.keyPrefix = who.UserID, who.Auth, who.KeyPrefix
	status, body := http.StatusNotFound, any(map[string]string{"error": "not found"})
	if r.URL.Path == "/v1/me" && r.Method == http.MethodGet {
		status, body = http.StatusOK, who
	}
	details := map[string]any{"method": r.Method, "status": status, "auth": who.Auth}
	if who.KeyPrefix != "" {
		details["key_prefix"] = who.KeyPrefix
	}
	if !who.usedAt.IsZero() {
		judged = who.usedAt
	}
	if err := audit(ctx, pool, judged, "api_call", who.UserID, r, addr, details); err != nil {
		dbUnavailable(w, err)
		return
	}
	writeJSON(w, status, body)
}

// recorder keeps a response's status and size, for the request's log
// line.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// logRequest writes the request's line into the log of the pod that
// served it. It runs before the response is flushed, so a caller that has
// its answer finds the line in the pod's log.
func (o *orchestratorAPI) logRequest(ctx context.Context, r *http.Request, addr netip.Addr, w *recorder, info *requestInfo, took time.Duration) {
	pod := o.servingPod(context.WithoutCancel(ctx))
	ip := "-"
	if addr.IsValid() {
		ip = addr.String()
	}
	level, text := requestLine(info.userID, ip, r.Method, r.URL.Path, w.status, took, info, r.UserAgent(), w.bytes)
	o.requests.add(pod, level, text)
}

func dbUnavailable(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable: " + summarize(err)})
}

// callerAddr is the first X-Forwarded-For entry if it is an address, else
// the connection's remote address.
func callerAddr(r *http.Request) netip.Addr {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		if a, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
			return a.WithZone("")
		}
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr()
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	a, _ := netip.ParseAddr(host)
	return a
}

// authenticate returns the caller, an *authError for a refusal, or another
// error when the database does not answer.
func authenticate(ctx context.Context, pool *pgxpool.Pool, jwtKey []byte, r *http.Request) (caller, error) {
	apiKey := r.Header.Get("X-API-Key")
	var token string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
			return caller{}, &authError{status: http.StatusUnauthorized, reason: "unsupported authorization scheme"}
		}
		cred = strings.TrimSpace(cred)
		if strings.Count(cred, ".") == 2 {
			token = cred
		} else if apiKey == "" {
			apiKey = cred
		}
	}
	switch {
	case token != "":
		return authJWT(ctx, pool, jwtKey, token)
	case apiKey != "":
		return authKey(ctx, pool, apiKey)
	}
	return caller{}, &authError{status: http.StatusUnauthorized, reason: "missing credentials"}
}

func authKey(ctx context.Context, pool *pgxpool.Pool, key string) (caller, error) {
	sum := sha256.Sum256([]byte(key))
	var c caller
	var revoked, disabled bool
	err := pool.QueryRow(ctx, `SELECT k.user_id, k.key_prefix, k.revoked_at IS NOT NULL,
		       u.email, u.role, u.disabled_at IS NOT NULL
		FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.key_hash = $1
		ORDER BY k.revoked_at IS NULL DESC, k.id LIMIT 1`, hex.EncodeToString(sum[:])).
		Scan(&c.UserID, &c.KeyPrefix, &revoked, &c.Email, &c.Role, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return caller{}, &authError{status: http.StatusUnauthorized, reason: "invalid api key"}
	}
	if err != nil {
		return caller{}, err
	}
	c.Auth = "api_key"
	switch {
	case revoked:
		return caller{}, &authError{status: http.StatusUnauthorized, reason: "api key revoked", userID: c.UserID, prefix: c.KeyPrefix}
	case disabled:
		return caller{}, &authError{status: http.StatusForbidden, reason: "user disabled", userID: c.UserID, prefix: c.KeyPrefix}
	}
	// The key is taken as valid by marking it used, a write: one that
	// meets a revocation in flight waits for it to commit and then finds
	// the key revoked, so nothing is accepted with a key once its
	// revoked_at (the revoking row write's clock_timestamp()) has passed.
	err = pool.QueryRow(ctx, `UPDATE api_keys SET last_used_at = clock_timestamp()
		WHERE key_hash = $1 AND revoked_at IS NULL RETURNING last_used_at`, hex.EncodeToString(sum[:])).Scan(&c.usedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return caller{}, &authError{status: http.StatusUnauthorized, reason: "api key revoked", userID: c.UserID, prefix: c.KeyPrefix}
	}
	if err != nil {
		return caller{}, err
	}
	return c, nil
}

func authJWT(ctx context.Context, pool *pgxpool.Pool, key []byte, token string) (caller, error) {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired())
	if err != nil || len(key) == 0 {
		reason := "invalid token"
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			reason = "token expired"
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			reason = "invalid token signature"
		}
		return caller{}, &authError{status: http.StatusUnauthorized, reason: reason}
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil {
		return caller{}, &authError{status: http.StatusUnauthorized, reason: "invalid token subject"}
	}
	c := caller{UserID: id, Auth: "jwt"}
	var disabled bool
	err = pool.QueryRow(ctx, `SELECT email, role, disabled_at IS NOT NULL FROM users WHERE id = $1`, id).
		Scan(&c.Email, &c.Role, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return caller{}, &authError{status: http.StatusUnauthorized, reason: "unknown user"}
	}
	if err != nil {
		return caller{}, err
	}
	if disabled {
		return caller{}, &authError{status: http.StatusForbidden, reason: "user disabled", userID: id}
	}
	return c, nil
}

// audit writes one audit_events row dated at; userID 0 is stored as NULL.
func audit(ctx context.Context, pool *pgxpool.Pool, at time.Time, event string, userID int64, r *http.Request, addr netip.Addr, details map[string]any) error {
	var uid *int64
	if userID != 0 {
		uid = &userID
	}
	var ip *netip.Addr
	if addr.IsValid() {
		ip = &addr
	}
	_, err := pool.Exec(ctx, `INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, at, event, uid, r.URL.Path, ip, r.UserAgent(), details)
	return err
}

// SignOrchestratorJWT returns an HS256 token for user id userID, valid for
// ttl, as the orchestrator issues them: what a test or drill presents to
// the stand-in, signed with a key read from orchestrator-jwt-secret.
func SignOrchestratorJWT(key []byte, userID int64, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
}
