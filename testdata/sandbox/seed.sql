-- Demo rows for the sandbox's "llm-orchestrator" database, matching the
-- runbook "LLM-orchestrator security incident".
--
-- Times are relative to now(), so a drill run on any day finds eight days of
-- ordinary traffic with an attack in the last 24 hours. setseed makes
-- random() repeatable, so re-running this file after
-- TRUNCATE ... RESTART IDENTITY gives the same ids and values (times aside).
--
-- Totals: 50 users, 121 api_keys, 3034 audit_events (434 of them from the
-- attacker's addresses 203.0.113.0/24, 198.51.100.23 and 2001:db8::/32).

SELECT setseed(0.42);

-- Users. Id 1 is the break-glass admin; 7 (Frank), 13 (Laura, an admin) and
-- 21 (Trent) are the accounts the attacker takes over.
INSERT INTO users (email, name, role, created_at, disabled_at)
VALUES ('breakglass@example.com', 'Break Glass', 'admin', now() - interval '400 days', NULL);

INSERT INTO users (email, name, role, created_at, disabled_at)
SELECT lower(first) || '.' || lower(last) || '@example.com',
       first || ' ' || last,
       CASE WHEN g IN (1, 12) THEN 'admin'
            WHEN g % 5 = 0 THEN 'viewer'
            ELSE 'member' END,
       now() - (400 - g * 7) * interval '1 day',
       CASE WHEN g IN (44, 47) THEN now() - interval '30 days' END
FROM (
    SELECT g,
           (ARRAY['Alice','Bob','Carol','Dave','Erin','Frank','Grace','Heidi','Ivan',
                  'Judy','Karl','Laura','Mallory','Niaj','Olivia','Peggy','Quentin',
                  'Rupert','Sybil','Trent','Uma','Victor','Walter','Xena','Yusuf','Zoe',
                  'Aaron','Bianca','Chen','Dmitri','Elena','Fatima','Gustavo','Hana',
                  'Ines','Jonas','Kenji','Lena','Marco','Nora','Omar','Priya','Rafael',
                  'Sofia','Tomas','Ulrike','Vera','Wei','Yara'])[g] AS first,
           (ARRAY['Nakamura','Okafor','Schmidt','Garcia','Kowalski','Haddad','Lindqvist'])[1 + g % 7] AS last
    FROM generate_series(1, 49) AS g
) AS people
ORDER BY g;

-- API keys: 116 ordinary keys (every ninth revoked), the two keys the
-- attacker creates for persistence, the two break-glass keys (ids 119 and
-- 120, key prefixes sk_live_bg01a7f3 and sk_live_bg02c9e8), and a third
-- attacker key named break-glass-primary (id 121), minted by Laura's stolen
-- admin account after probing api_key/break-glass-primary: sparing keys by
-- name would spare it too, which is why the runbook spares them by id or
-- key prefix.
INSERT INTO api_keys (user_id, name, key_prefix, key_hash, created_at, last_used_at, revoked_at)
SELECT 2 + g % 49,
       (ARRAY['ci-deploy','laptop','notebook','batch-jobs','grafana','terraform','staging','prod-agent'])[1 + g % 8],
       'sk_live_' || substr(md5('prefix-' || g), 1, 8),
       encode(sha256(convert_to('sandbox-key-' || g, 'UTF8')), 'hex'),
       now() - g * interval '3 days',
       CASE WHEN g % 9 = 0 THEN now() - interval '12 days' - g * interval '1 hour'
            WHEN g % 13 = 0 THEN NULL
            ELSE now() - random() * interval '7 days' END,
       CASE WHEN g % 9 = 0 THEN now() - interval '10 days' - g * interval '1 hour' END
FROM generate_series(1, 116) AS g
ORDER BY g;

INSERT INTO api_keys (user_id, name, key_prefix, key_hash, created_at, last_used_at, revoked_at)
VALUES (13, 'sync-backup', 'sk_live_5f3a9c1e', encode(sha256(convert_to('attacker-key-1', 'UTF8')), 'hex'),
        now() - interval '12 hours', now() - interval '3 hours', NULL),
       (21, 'tmp-export', 'sk_live_0b7d44e2', encode(sha256(convert_to('attacker-key-2', 'UTF8')), 'hex'),
        now() - interval '11 hours 40 minutes', now() - interval '2 hours 30 minutes', NULL),
       (1, 'break-glass-primary', 'sk_live_bg01a7f3', encode(sha256(convert_to('break-glass-1', 'UTF8')), 'hex'),
        now() - interval '300 days', NULL, NULL),
       (1, 'break-glass-secondary', 'sk_live_bg02c9e8', encode(sha256(convert_to('break-glass-2', 'UTF8')), 'hex'),
        now() - interval '300 days', NULL, NULL),
       (13, 'break-glass-primary', 'sk_live_7e41c0d9', encode(sha256(convert_to('attacker-key-3', 'UTF8')), 'hex'),
        now() - interval '9 hours', now() - interval '1 hour', NULL);

-- Ordinary traffic over eight days from internal addresses: RFC 1918 IPv4,
-- fd00::/8 unique-local IPv6 and IPv4-mapped IPv6 (::ffff:10.x), the forms a
-- triage query must all treat as internal.
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - random() * interval '8 days',
       (ARRAY['login_success','api_call','api_call','api_call','query','query',
              'logout','config_read','model_invoke','model_invoke'])[1 + floor(random() * 10)::int],
       2 + floor(random() * 49)::int,
       (ARRAY['workflow/summarize','workflow/triage','model/gpt-small','model/embedder',
              'dataset/support-tickets','prompt/library'])[1 + g % 6],
       (CASE g % 5
            WHEN 0 THEN '10.' || g % 4 || '.' || g % 251 || '.' || 1 + g % 253
            WHEN 1 THEN '172.' || 16 + g % 16 || '.' || g % 249 || '.' || 1 + g % 250
            WHEN 2 THEN '192.168.' || g % 8 || '.' || 1 + g % 254
            WHEN 3 THEN 'fd00:10:' || to_hex(g % 16) || '::' || to_hex(1 + g)
            ELSE '::ffff:10.20.' || g % 32 || '.' || 1 + g % 250
        END)::inet,
       (ARRAY['orchestrator-web/2.3.1','orchestrator-cli/0.9.4','python-requests/2.32.3',
              'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'])[1 + g % 4],
       jsonb_build_object('status', 200, 'duration_ms', 5 + floor(random() * 400)::int)
FROM generate_series(1, 2520) AS g;

-- Ordinary exports and bulk queries (small) and mistyped passwords, so that
-- neither event type alone singles out the attacker.
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - random() * interval '8 days',
       CASE WHEN g % 2 = 0 THEN 'bulk_query' ELSE 'export' END,
       2 + g % 49,
       'dataset/support-tickets',
       ('10.1.' || g % 16 || '.' || 10 + g)::inet,
       'orchestrator-web/2.3.1',
       jsonb_build_object('bytes', 10000 + floor(random() * 2000000)::bigint, 'rows', 10 + g * 3)
FROM generate_series(1, 40) AS g;

INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - random() * interval '8 days',
       'authentication_failed',
       2 + (g * 5) % 49,
       'auth/login',
       ('192.168.' || g % 4 || '.' || 20 + g)::inet,
       'orchestrator-web/2.3.1',
       jsonb_build_object('reason', 'invalid_password')
FROM generate_series(1, 40) AS g;

-- The attack, all within the last 24 hours.
-- 1. Credential stuffing for six hours: 300 failed logins (a quarter for
--    unknown emails, so without a user id).
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - interval '20 hours' + g * interval '72 seconds',
       'authentication_failed',
       CASE WHEN g % 4 = 0 THEN NULL ELSE 2 + (g * 7) % 49 END,
       'auth/login',
       (CASE g % 3
            WHEN 0 THEN '203.0.113.' || 10 + g % 40
            WHEN 1 THEN '2001:db8:' || to_hex(g % 8) || '::' || to_hex(g)
            ELSE '198.51.100.23'
        END)::inet,
       CASE WHEN g % 2 = 0 THEN 'python-requests/2.31.0' ELSE 'Go-http-client/1.1' END,
       jsonb_build_object('reason', CASE WHEN g % 4 = 0 THEN 'unknown_user' ELSE 'invalid_password' END)
FROM generate_series(1, 300) AS g;

-- 2. Logins succeed for users 7, 13 and 21, and the attacker mints API keys.
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
VALUES (now() - interval '13 hours 55 minutes', 'login_success', 7, 'auth/login', '198.51.100.23', 'python-requests/2.31.0', '{"mfa": false}'),
       (now() - interval '13 hours 50 minutes', 'login_success', 13, 'auth/login', '203.0.113.77', 'python-requests/2.31.0', '{"mfa": false}'),
       (now() - interval '13 hours 45 minutes', 'login_success', 21, 'auth/login', '2001:db8:bad:1::21', 'Go-http-client/1.1', '{"mfa": false}'),
       (now() - interval '6 hours 5 minutes', 'login_success', 7, 'auth/login', '198.51.100.23', 'python-requests/2.31.0', '{"mfa": false}'),
       (now() - interval '6 hours', 'login_success', 13, 'auth/login', '203.0.113.77', 'python-requests/2.31.0', '{"mfa": false}'),
       (now() - interval '5 hours 55 minutes', 'login_success', 21, 'auth/login', '2001:db8:bad:1::21', 'Go-http-client/1.1', '{"mfa": false}'),
       (now() - interval '12 hours', 'api_key_created', 13, 'api_key/sync-backup', '203.0.113.77', 'python-requests/2.31.0', '{"key_prefix": "sk_live_5f3a9c1e"}'),
       (now() - interval '11 hours 40 minutes', 'api_key_created', 21, 'api_key/tmp-export', '2001:db8:bad:1::21', 'Go-http-client/1.1', '{"key_prefix": "sk_live_0b7d44e2"}'),
       (now() - interval '9 hours', 'api_key_created', 13, 'api_key/break-glass-primary', '203.0.113.77', 'python-requests/2.31.0', '{"key_prefix": "sk_live_7e41c0d9"}');

-- 3. Exfiltration: 60 bulk queries and exports of gigabytes.
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - interval '13 hours' + g * interval '11 minutes',
       CASE WHEN g % 2 = 0 THEN 'bulk_query' ELSE 'export' END,
       (ARRAY[7, 13, 21])[1 + g % 3],
       (ARRAY['table/users','table/api_keys','dataset/support-tickets','dataset/prompts'])[1 + g % 4],
       (ARRAY['198.51.100.23','203.0.113.77','2001:db8:bad:1::21'])[1 + g % 3]::inet,
       CASE WHEN g % 3 = 2 THEN 'Go-http-client/1.1' ELSE 'python-requests/2.31.0' END,
       jsonb_build_object('bytes', 2500000000::bigint + g * 73400320::bigint, 'rows', 100000 + g * 1000)
FROM generate_series(1, 60) AS g;

-- 4. Probing beyond the stolen accounts' rights.
INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - interval '12 hours' + g * interval '20 minutes',
       'unauthorized_access',
       (ARRAY[7, 13, 21])[1 + g % 3],
       (ARRAY['/admin/secrets','/admin/users','/internal/debug/pprof','/admin/api-keys','/internal/metrics'])[1 + g % 5],
       (ARRAY['198.51.100.23','203.0.113.77','2001:db8:bad:1::21'])[1 + g % 3]::inet,
       'python-requests/2.31.0',
       jsonb_build_object('status', 401)
FROM generate_series(1, 25) AS g;

INSERT INTO audit_events (timestamp, event_type, user_id, resource_id, ip_address, user_agent, details)
SELECT now() - interval '12 hours 30 minutes' + g * interval '15 minutes',
       'permission_denied',
       (ARRAY[7, 13, 21])[1 + g % 3],
       (ARRAY['role/admin','user/1','api_key/break-glass-primary','settings/sso'])[1 + g % 4],
       (ARRAY['198.51.100.23','203.0.113.77','2001:db8:bad:1::21'])[1 + g % 3]::inet,
       'python-requests/2.31.0',
       jsonb_build_object('status', 403, 'action', (ARRAY['rbac.update','user.update','api_key.read','settings.write'])[1 + g % 4])
FROM generate_series(1, 40) AS g;
