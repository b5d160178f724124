-- When an installation last obtained a token or made a relay request, for the admin page.
-- Written at most once a minute per installation (the service keeps the last write in memory),
-- so the relay's requests do not each cost a write.
ALTER TABLE installations ADD COLUMN last_activity_ms BIGINT;
