package sandbox

// What the stand-in kubelets' containers printed (kubelet.go): generated,
// deterministically, relative to the sandbox's start.

import (
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The orchestrator's log: a start-up banner, ordinary requests from the
// internal network at random minutes, and the requests of the attack in
// seed.sql's audit_events, each logged by one replica. Every request line
// ends in bytes=N, the response size, so that the runbook's
// exfiltration-in-logs step (lines matching download|export|bulk_query
// whose last number exceeds 1,000,000) finds the attacker's 60 bulk
// queries and exports and nothing else: ordinary transfers stay below 1 MB.
//
//	2026-11-22T03:14:15.123Z INFO request user_id=7 ip=198.51.100.23 action=bulk_query resource=table/users status=200 duration_ms=43109 rows=102000 ua="python-requests/2.31.0" bytes=2646800640

// orchestratorLog is the log of replica (of replicas) of the orchestrator,
// key naming the container: the ordinary traffic is the container's own,
// the attack's requests are shared among the replicas.
func orchestratorLog(key string, replica, replicas int, epoch time.Time) containerLog {
	start := epoch.Add(-logHistory)
	seed := fnv64(key)
	const slot = time.Minute
	return func(from, to time.Time) []logLine {
		var out []logLine
		add := func(t time.Time, level, text string) {
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, appTime(t) + " " + level + " " + text})
			}
		}
		add(start, "INFO", "starting orchestrator version=v0.2.0 commit=4f2a9c1 go=go1.23.4")
		add(start.Add(38*time.Millisecond), "INFO", "connected to database host=postgres."+DemoNamespace+".svc db="+dbName+" pool_size=20")
		add(start.Add(41*time.Millisecond), "INFO", "listening addr=:8080")
		// One request in about half the minutes since the start.
		for s := max(int64(from.Sub(start)/slot)-1, 0); s <= int64(to.Sub(start)/slot); s++ {
			r := newRNG(seed ^ uint64(s)*0x9e3779b97f4a7c15)
			if r.n(100) >= 55 {
				continue
			}
			t := start.Add(time.Duration(s)*slot + time.Second + time.Duration(r.n(58_000))*time.Millisecond)
			level, text := ordinaryRequest(r)
			add(t, level, text)
		}
		for i, ev := range attackRequests() {
			if replicas <= 1 || i%replicas == replica {
				add(epoch.Add(ev.at), ev.level, ev.text)
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
		return out
	}
}

// appTime is the orchestrator's own timestamp: UTC, milliseconds.
func appTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

var (
	userAgents = []string{"orchestrator-web/2.3.1", "orchestrator-cli/0.9.4", "python-requests/2.32.3",
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
	appResources = []string{"workflow/summarize", "workflow/triage", "model/gpt-small", "model/embedder",
		"dataset/support-tickets", "prompt/library"}
	// ordinaryActions is weighted by repetition.
	ordinaryActions = []string{"api_call", "api_call", "api_call", "api_call", "query", "query", "query",
		"model_invoke", "model_invoke", "model_invoke", "config_read", "login", "logout", "export", "bulk_query", "download"}
)

// ordinaryRequest is a request from an internal user, as seed.sql's
// ordinary audit events are: RFC 1918, unique-local and IPv4-mapped
// addresses; transfers of less than 1 MB.
func ordinaryRequest(r *rng) (level, text string) {
	user := 2 + r.n(49)
	var ip string
	switch r.n(5) {
	case 0:
		ip = fmt.Sprintf("10.%d.%d.%d", r.n(4), r.n(251), 1+r.n(253))
	case 1:
		ip = fmt.Sprintf("172.%d.%d.%d", 16+r.n(16), r.n(249), 1+r.n(250))
	case 2:
		ip = fmt.Sprintf("192.168.%d.%d", r.n(8), 1+r.n(254))
	case 3:
		ip = fmt.Sprintf("fd00:10:%x::%x", r.n(16), 1+r.n(2520))
	default:
		ip = fmt.Sprintf("::ffff:10.20.%d.%d", r.n(32), 1+r.n(250))
	}
	action := ordinaryActions[r.n(len(ordinaryActions))]
	resource := appResources[r.n(len(appResources))]
	status, duration, bytes := 200, 5+r.n(400), 120+r.n(48_000)
	extra := ""
	switch action {
	case "login":
		resource = "auth/login"
		if r.n(25) == 0 {
			status, extra = 401, " reason=invalid_password"
		}
	case "logout":
		resource = "auth/logout"
	case "export", "bulk_query", "download":
		resource = []string{"dataset/support-tickets", "prompt/library"}[r.n(2)]
		duration, bytes = 200+r.n(4000), 10_000+r.n(940_000)
		extra = fmt.Sprintf(" rows=%d", 10+bytes/700)
	default:
		if r.n(40) == 0 {
			status = 404
		}
	}
	level = "INFO"
	if status >= 400 {
		level = "WARN"
	}
	return level, fmt.Sprintf("request user_id=%d ip=%s action=%s resource=%s status=%d duration_ms=%d%s ua=%q bytes=%d",
		user, ip, action, resource, status, duration, extra, userAgents[r.n(len(userAgents))], bytes)
}

// attackRequest is one request of the attack, at an offset from the
// sandbox's start.
type attackRequest struct {
	at          time.Duration
	level, text string
}

// attackRequests are the 433 requests behind seed.sql's attack rows, with
// the same times, users, addresses and sizes, in time order.
var attackRequests = sync.OnceValue(func() []attackRequest {
	var out []attackRequest
	req := func(at time.Duration, user, ip, action, resource string, status int, extra, ua string, bytes int64) {
		level := "INFO"
		if status >= 400 {
			level = "WARN"
		}
		// Durations grow with the response, about 60 MB/s for transfers.
		duration := 40 + bytes/60_000
		out = append(out, attackRequest{at, level, fmt.Sprintf("request user_id=%s ip=%s action=%s resource=%s status=%d duration_ms=%d%s ua=%q bytes=%d",
			user, netip.MustParseAddr(ip).String(), action, resource, status, duration, extra, ua, bytes)})
	}
	stolen := []string{"7", "13", "21"}
	attackerIPs := []string{"198.51.100.23", "203.0.113.77", "2001:db8:bad:1::21"}
	uaFor := func(g int) string {
		if g%3 == 2 {
			return "Go-http-client/1.1"
		}
		return "python-requests/2.31.0"
	}
	// 1. Credential stuffing: 300 failed logins over six hours.
	for g := 1; g <= 300; g++ {
		user, reason := strconv.Itoa(2+(g*7)%49), "invalid_password"
		if g%4 == 0 {
			user, reason = "-", "unknown_user"
		}
		ip := "198.51.100.23"
		switch g % 3 {
		case 0:
			ip = fmt.Sprintf("203.0.113.%d", 10+g%40)
		case 1:
			ip = fmt.Sprintf("2001:db8:%x::%x", g%8, g)
		}
		ua := "Go-http-client/1.1"
		if g%2 == 0 {
			ua = "python-requests/2.31.0"
		}
		req(-20*time.Hour+time.Duration(g)*72*time.Second, user, ip, "login", "auth/login", 401, " reason="+reason, ua, 87)
	}
	// 2. The logins that worked, and the API keys minted for persistence.
	for _, l := range []struct {
		at   time.Duration
		user int
	}{{13*time.Hour + 55*time.Minute, 0}, {13*time.Hour + 50*time.Minute, 1}, {13*time.Hour + 45*time.Minute, 2},
		{6*time.Hour + 5*time.Minute, 0}, {6 * time.Hour, 1}, {5*time.Hour + 55*time.Minute, 2}} {
		ua := "python-requests/2.31.0"
		if l.user == 2 {
			ua = "Go-http-client/1.1"
		}
		req(-l.at, stolen[l.user], attackerIPs[l.user], "login", "auth/login", 200, " mfa=false", ua, 412)
	}
	req(-12*time.Hour, "13", "203.0.113.77", "create_api_key", "api_key/sync-backup", 201, " key_prefix=sk_live_5f3a9c1e", "python-requests/2.31.0", 298)
	req(-(11*time.Hour + 40*time.Minute), "21", "2001:db8:bad:1::21", "create_api_key", "api_key/tmp-export", 201, " key_prefix=sk_live_0b7d44e2", "Go-http-client/1.1", 297)
	// 3. Exfiltration: 60 bulk queries and exports of gigabytes.
	tables := []string{"table/users", "table/api_keys", "dataset/support-tickets", "dataset/prompts"}
	for g := 1; g <= 60; g++ {
		action := "export"
		if g%2 == 0 {
			action = "bulk_query"
		}
		req(-13*time.Hour+time.Duration(g)*11*time.Minute, stolen[g%3], attackerIPs[g%3], action, tables[g%4], 200,
			fmt.Sprintf(" rows=%d", 100000+g*1000), uaFor(g), 2_500_000_000+int64(g)*73_400_320)
	}
	// 4. Probing beyond the stolen accounts' rights.
	paths := []string{"/admin/secrets", "/admin/users", "/internal/debug/pprof", "/admin/api-keys", "/internal/metrics"}
	for g := 1; g <= 25; g++ {
		req(-12*time.Hour+time.Duration(g)*20*time.Minute, stolen[g%3], attackerIPs[g%3], "read", paths[g%5], 401, "", "python-requests/2.31.0", 64)
	}
	targets := []string{"role/admin", "user/1", "api_key/break-glass-primary", "settings/sso"}
	verbs := []string{"rbac.update", "user.update", "api_key.read", "settings.write"}
	for g := 1; g <= 40; g++ {
		req(-(12*time.Hour+30*time.Minute)+time.Duration(g)*15*time.Minute, stolen[g%3], attackerIPs[g%3], verbs[g%4], targets[g%4], 403, "", "python-requests/2.31.0", 71)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
})

// postgresLog is PostgreSQL's start-up and its hourly checkpoints.
func postgresLog(start time.Time) containerLog {
	return func(from, to time.Time) []logLine {
		var out []logLine
		pgTime := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 MST") }
		add := func(t time.Time, pid int, msg string) {
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, fmt.Sprintf("%s [%d] LOG:  %s", pgTime(t), pid, msg)})
			}
		}
		add(start, 1, "starting PostgreSQL 15.8 (Debian 15.8-1.pgdg120+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit")
		add(start.Add(2*time.Millisecond), 1, `listening on IPv4 address "0.0.0.0", port 5432`)
		add(start.Add(3*time.Millisecond), 1, `listening on IPv6 address "::", port 5432`)
		add(start.Add(9*time.Millisecond), 1, `listening on Unix socket "/var/run/postgresql/.s.PGSQL.5432"`)
		add(start.Add(31*time.Millisecond), 27, "database system was shut down at "+pgTime(start.Add(-41*time.Second)))
		add(start.Add(44*time.Millisecond), 1, "database system is ready to accept connections")
		for h := max(int64(from.Sub(start)/time.Hour), 1); h <= int64(to.Sub(start)/time.Hour); h++ {
			t := start.Add(time.Duration(h) * time.Hour)
			r := newRNG(uint64(h))
			buffers := 40 + r.n(900)
			add(t, 25, "checkpoint starting: time")
			add(t.Add(time.Duration(buffers)*30*time.Millisecond), 25, fmt.Sprintf(
				"checkpoint complete: wrote %d buffers (%.1f%%); 0 WAL file(s) added, 0 removed, %d recycled; write=%.3f s, sync=0.004 s, total=%.3f s",
				buffers, float64(buffers)/163.84, r.n(3), float64(buffers)*0.03, float64(buffers)*0.03+0.011))
		}
		return out
	}
}

// nodeExporterLog is node-exporter's start-up.
func nodeExporterLog(start time.Time) containerLog {
	return func(from, to time.Time) []logLine {
		var out []logLine
		for i, msg := range []string{
			`level=info caller=node_exporter.go:193 msg="Starting node_exporter" version="(version=1.8.2, branch=HEAD, revision=f1e0e8360aa60b6cb5e5cc1560bed348fc2c1895)"`,
			`level=info caller=node_exporter.go:194 msg="Build context" build_context="(go=go1.22.5, platform=linux/amd64, user=root@03d440803209, date=20240714-11:53:45, tags=unknown)"`,
			`level=info caller=node_exporter.go:111 msg="Enabled collectors"`,
			`level=info caller=tls_config.go:313 msg="Listening on" address=[::]:9100`,
			`level=info caller=tls_config.go:316 msg="TLS is disabled." http2=false address=[::]:9100`,
		} {
			t := start.Add(time.Duration(i) * 3 * time.Millisecond)
			if !t.Before(from) && t.Before(to) {
				out = append(out, logLine{t, "ts=" + appTime(t) + " " + msg})
			}
		}
		return out
	}
}

func fnv64(s string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, s)
	return h.Sum64()
}

// rng is splitmix64: small, fast and the same everywhere, so that a
// sandbox's logs are the same on every machine.
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng { return &rng{s: seed} }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// n returns a number in [0, n).
func (r *rng) n(n int) int { return int(r.next() % uint64(n)) }
