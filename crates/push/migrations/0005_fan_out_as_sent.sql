-- A push is stored once with its audience and expanded to devices as it is sent, a batch at a
-- time, instead of as one row per device when it is accepted: accepting a push to an
-- organization of 100,000 devices is one row, and a device delivered at the first attempt costs
-- the database nothing of its own. `push_deliveries` keeps only deliveries that wait for a
-- retry (or were accepted before this migration).

-- The audience (Bitwarden's tag expression, as `TargetFilter` reads it) and how far it has been
-- expanded. Rows from before this migration had their deliveries written when accepted, so
-- they count as expanded.
ALTER TABLE push_messages ADD COLUMN target_kind TEXT;
ALTER TABLE push_messages ADD COLUMN target_id TEXT;
ALTER TABLE push_messages ADD COLUMN exclude_identifier TEXT;
ALTER TABLE push_messages ADD COLUMN client_type BIGINT;
ALTER TABLE push_messages ADD COLUMN platforms TEXT;
-- The last device id expanded; devices are expanded in device id order.
ALTER TABLE push_messages ADD COLUMN expanded_through TEXT NOT NULL DEFAULT '';
ALTER TABLE push_messages ADD COLUMN expanded BIGINT NOT NULL DEFAULT 1;
-- Pushes still being expanded are served in this order; a push that got a batch goes to the
-- back, so a big push and a small one take turns (fairness between pushes).
ALTER TABLE push_messages ADD COLUMN turn_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX push_messages_expanding ON push_messages (turn_ms) WHERE expanded = 0;

-- A batch of a push's devices, `(after_device, last_device]` in device id order, claimed by a
-- worker until it is finished (its retries written to `push_deliveries`, then the row deleted)
-- or its lease lapses, when another worker sends the batch again.
CREATE TABLE push_batches (
    message_id TEXT NOT NULL REFERENCES push_messages (id) ON DELETE CASCADE,
    after_device TEXT NOT NULL,
    last_device TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    lease_token TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (message_id, after_device)
);
CREATE INDEX push_batches_lease ON push_batches (lease_until_ms);

-- Expansion walks a target's devices in device id order from where it stopped.
CREATE INDEX push_registrations_user_device ON push_registrations (user_id, device_id);
DROP INDEX push_registrations_user;
CREATE INDEX push_registrations_installation_device ON push_registrations (installation_id, device_id);
DROP INDEX push_registrations_installation;
CREATE INDEX push_registration_organizations_org_device ON push_registration_organizations (organization_id, device_id);
DROP INDEX push_registration_organizations_org;
