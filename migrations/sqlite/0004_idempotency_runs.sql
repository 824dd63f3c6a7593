-- Idempotency-Key identities as runs: one row per key (the hash, never the
-- key itself) with the event indexes claimed so far, as text in
-- PostgreSQL's multirange form ('{[0,37),[40,100)}'), instead of one row
-- per event (0003). A claim (inside the writer's BEGIN IMMEDIATE
-- transaction, so writers take turns) reads what the key holds and adds
-- only the events not held before. Writers delete rows whose last claim
-- (`seen_at`, RFC 3339 UTC text) is older than
-- WRITER_IDEMPOTENCY_RETENTION_HOURS; a row per request is few, so the purge
-- needs no index.
--
-- The claims of 0003 move here, consecutive indexes merged into runs, so a
-- retry of a request stored before the upgrade is still caught. Writers of
-- the previous version still running then fail their keyed batches (the
-- table's columns changed) and retry them rather than store anything twice.
CREATE TABLE sluice_idempotency_runs (
    key     TEXT PRIMARY KEY NOT NULL,
    events  TEXT NOT NULL DEFAULT '{}',
    seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

INSERT INTO sluice_idempotency_runs (key, events, seen_at)
SELECT key, '{' || group_concat('[' || first_index || ',' || (last_index + 1) || ')', ',') || '}',
       max(seen_at)
FROM (
    SELECT key, min(event_index) AS first_index, max(event_index) AS last_index,
           max(seen_at) AS seen_at
    FROM (
        SELECT key, event_index, seen_at,
               event_index - row_number() OVER (PARTITION BY key ORDER BY event_index) AS run
        FROM sluice_idempotency
    )
    GROUP BY key, run
)
GROUP BY key;

DROP TABLE sluice_idempotency;
ALTER TABLE sluice_idempotency_runs RENAME TO sluice_idempotency;
