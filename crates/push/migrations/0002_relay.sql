-- The relay role: installations (self-hosted servers) that push through this one, which
-- registrations each of them owns, and the self-hosted role's outbox to an upstream relay.

CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    email TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

ALTER TABLE push_registrations ADD COLUMN owner TEXT;
CREATE INDEX push_registrations_owner ON push_registrations (owner);

-- Requests for the upstream relay, in Bitwarden's shapes, kept until the relay took them, and
-- sent strictly in `seq` order (a registration before the pushes that need it).
CREATE TABLE relay_outbox (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    lease_token TEXT,
    last_error TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX relay_outbox_seq ON relay_outbox (seq);
