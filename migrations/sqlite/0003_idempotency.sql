-- Idempotency-Key identities: event `event_index` of a request sent with the
-- key whose hash is `key` (never the key itself) was stored. Claimed in the
-- same transaction as the event's rows; a retried request finds its events'
-- identities here and is not stored twice. Writers delete rows older than
-- WRITER_IDEMPOTENCY_RETENTION_HOURS (by `seen_at`, RFC 3339 UTC text).
CREATE TABLE IF NOT EXISTS sluice_idempotency (
    key         TEXT NOT NULL,
    event_index INTEGER NOT NULL,
    seen_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (key, event_index)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS sluice_idempotency_seen_at_idx
    ON sluice_idempotency (seen_at);
