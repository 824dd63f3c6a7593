-- Idempotency-Key identities as runs: one row per key (the hash, never the
-- key itself) with the event indexes claimed so far as an int8multirange,
-- instead of one row per event (0003). A claim locks the key's row
-- (INSERT … ON CONFLICT DO UPDATE), reads what it holds and adds only the
-- events not held before, in the same transaction as the rows: concurrent
-- writers claiming the same key wait for each other. Writers delete rows
-- whose last claim (`seen_at`) is older than WRITER_IDEMPOTENCY_RETENTION_HOURS;
-- the table is small (a row per request), so the purge needs no index.
--
-- The claims of 0003 move here, consecutive indexes merged into runs, so a
-- retry of a request stored before the upgrade is still caught. Writers of
-- the previous version still running then fail their keyed batches (the
-- table's columns changed) and retry them rather than store anything twice:
-- roll writers over before sending keyed traffic to the new ones, or accept
-- those retries.
CREATE TABLE sluice_idempotency_runs (
    key     text PRIMARY KEY,
    events  int8multirange NOT NULL DEFAULT '{}',
    seen_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO sluice_idempotency_runs (key, events, seen_at)
SELECT key, range_agg(int8range(event_index, event_index + 1)), max(seen_at)
FROM sluice_idempotency
GROUP BY key;

DROP TABLE sluice_idempotency;
ALTER TABLE sluice_idempotency_runs RENAME TO sluice_idempotency;
ALTER INDEX sluice_idempotency_runs_pkey RENAME TO sluice_idempotency_pkey;
