-- One schema for SQLite and PostgreSQL: only TEXT and BIGINT columns, times as Unix
-- milliseconds, and statements both dialects parse.

-- A device that can receive pushes, tagged as Bitwarden tags its hub installations:
-- user, organizations, installation, device identifier, client type.
CREATE TABLE push_registrations (
    device_id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    push_token TEXT,
    endpoint TEXT,
    p256dh TEXT,
    auth TEXT,
    apns_environment TEXT,
    user_id TEXT NOT NULL,
    identifier TEXT,
    installation_id TEXT,
    device_type BIGINT NOT NULL,
    client_type BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX push_registrations_user ON push_registrations (user_id);
CREATE INDEX push_registrations_installation ON push_registrations (installation_id);

CREATE TABLE push_registration_organizations (
    device_id TEXT NOT NULL REFERENCES push_registrations (device_id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    PRIMARY KEY (device_id, organization_id)
);
CREATE INDEX push_registration_organizations_org ON push_registration_organizations (organization_id);

-- A notification accepted for push delivery: stored once, however many devices it goes to.
CREATE TABLE push_messages (
    id TEXT PRIMARY KEY,
    push_type BIGINT NOT NULL,
    payload TEXT NOT NULL,
    context_id TEXT,
    created_ms BIGINT NOT NULL
);

-- One pending delivery of a message to a device. A row leaves the table when the provider
-- accepted it or when it was dropped (and counted, with the reason).
CREATE TABLE push_deliveries (
    message_id TEXT NOT NULL REFERENCES push_messages (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    lease_token TEXT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_ms);
CREATE INDEX push_deliveries_lease ON push_deliveries (lease_token);
