-- Schema of the demo "llm-orchestrator" application database used by the
-- irctl sandbox. It runs as the `orchestrator` role (the database owner) so
-- that the application credentials own, and can write, every table.

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text UNIQUE NOT NULL,
    name        text,
    role        text NOT NULL DEFAULT 'member',
    created_at  timestamptz DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    user_id      bigint REFERENCES users,
    name         text NOT NULL,
    key_prefix   text NOT NULL,
    key_hash     text NOT NULL,
    created_at   timestamptz DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    timestamp   timestamptz NOT NULL DEFAULT now(),
    event_type  text NOT NULL,
    user_id     bigint,
    resource_id text,
    ip_address  inet,
    user_agent  text,
    details     jsonb
);

-- Investigation queries filter on a time window first.
CREATE INDEX audit_events_timestamp_idx ON audit_events (timestamp);
