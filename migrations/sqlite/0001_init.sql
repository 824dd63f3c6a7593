-- Sluice base schema for SQLite: the PostgreSQL schema with SQLite types.
-- Dates are 'YYYY-MM-DD' text and timestamps RFC 3339 UTC text, so they sort
-- and compare as strings.
--
-- Every statement is IF NOT EXISTS because `user_logins` may already exist,
-- created by someone else with the plain DDL in the README ("Records and tables").
-- No BEGIN/COMMIT here: the embedded runner applies each file inside its own
-- transaction.

CREATE TABLE IF NOT EXISTS user_logins (
    user_id          TEXT,
    device_type      TEXT,
    masked_ip        TEXT,
    masked_device_id TEXT,
    locale           TEXT,
    app_version      INTEGER,
    create_date      TEXT
);

CREATE TABLE IF NOT EXISTS sluice_receipts (
    message_key  TEXT PRIMARY KEY NOT NULL,
    committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    row_count    INTEGER NOT NULL
);

-- AUTOINCREMENT: ids are never reused, like PostgreSQL's bigserial.
CREATE TABLE IF NOT EXISTS rejected_records (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    rejected_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    message_key    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    payload        TEXT NOT NULL,
    payload_format TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS rejected_records_message_key_idx
    ON rejected_records (message_key);
