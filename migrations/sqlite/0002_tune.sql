-- TUNE/HasOffers Firehose for SQLite: the PostgreSQL schema (see
-- migrations/postgres/0002_tune.sql for the meaning of every column) with
-- SQLite types. Timestamps are RFC 3339 UTC text with milliseconds
-- ('2016-10-10T19:19:12.000Z'), like the other tables, so they sort and
-- compare as strings. extra is JSON text (usable with SQLite's json_extract).
--
-- payout and revenue are REAL: SQLite has no decimal type, and every SUM,
-- comparison or ORDER BY on them (the view's included) computes in 64-bit
-- floats anyway; as TEXT they would sort as strings ('10' < '9') and need a
-- CAST in every query. Amounts keep ~15 significant digits, plenty for
-- currency; PostgreSQL keeps them exact (numeric).
--
-- No BEGIN/COMMIT here: the embedded runner applies each file inside its own
-- transaction.

CREATE TABLE IF NOT EXISTS tune_events (
    event_id          TEXT PRIMARY KEY NOT NULL,
    action            TEXT NOT NULL,
    occurred_at       TEXT,
    transaction_id    TEXT,
    offer_id          INTEGER,
    affiliate_id      INTEGER,
    advertiser_id     INTEGER,
    payout            REAL,
    revenue           REAL,
    currency          TEXT,
    country           TEXT,
    status            TEXT,
    masked_ip         TEXT,
    masked_session_ip TEXT,
    masked_user_agent TEXT,
    masked_device_id  TEXT,
    extra             TEXT NOT NULL DEFAULT '{}',
    loaded_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX IF NOT EXISTS tune_events_occurred_at_idx ON tune_events (occurred_at);

CREATE TABLE IF NOT EXISTS tune_adjustments (
    event_id               TEXT NOT NULL,
    adjustment_sequence_id INTEGER NOT NULL,
    adjust_action          INTEGER NOT NULL CHECK (adjust_action IN (1, 2)),
    adjusted_at            TEXT,
    num                    INTEGER,
    payout                 REAL,
    revenue                REAL,
    current_payout         REAL,
    current_revenue        REAL,
    extra                  TEXT NOT NULL DEFAULT '{}',
    loaded_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (event_id, adjustment_sequence_id)
);

-- Same semantics as PostgreSQL's tune_events_current: update adjustments
-- (adjust_action = 2) applied as summed deltas; creates are new events, not
-- changes, and are not added.
CREATE VIEW IF NOT EXISTS tune_events_current AS
SELECT
    e.event_id,
    e.action,
    e.occurred_at,
    e.transaction_id,
    e.offer_id,
    e.affiliate_id,
    e.advertiser_id,
    CASE WHEN e.payout IS NULL AND a.payout IS NULL THEN NULL
         ELSE coalesce(e.payout, 0) + coalesce(a.payout, 0) END AS payout,
    CASE WHEN e.revenue IS NULL AND a.revenue IS NULL THEN NULL
         ELSE coalesce(e.revenue, 0) + coalesce(a.revenue, 0) END AS revenue,
    e.currency,
    e.country,
    e.status,
    e.masked_ip,
    e.masked_session_ip,
    e.masked_user_agent,
    e.masked_device_id,
    e.extra,
    e.loaded_at,
    coalesce(a.num, 0) AS num_delta,
    coalesce(a.adjustment_count, 0) AS adjustment_count,
    a.last_adjusted_at
FROM tune_events e
LEFT JOIN (
    SELECT event_id,
           count(*) AS adjustment_count,
           sum(num) AS num,
           sum(payout) AS payout,
           sum(revenue) AS revenue,
           max(adjusted_at) AS last_adjusted_at
    FROM tune_adjustments
    WHERE adjust_action = 2
    GROUP BY event_id
) a ON a.event_id = e.event_id;
