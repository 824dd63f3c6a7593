-- TUNE/HasOffers Firehose: tracking events, the adjustment ledger, and the
-- view that applies one to the other.
--
-- Text columns are unbounded `text`: nothing about these values needs a
-- limit, and a limit would only turn a long value into a failed batch. The
-- writer bounds event_id (255 characters) so primary-key entries stay far
-- below the B-tree entry limit.

-- One row per tracking event (impression, click, conversion), unique on
-- TUNE's event_id: a redelivered event is skipped (ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS tune_events (
    event_id          text PRIMARY KEY,
    action            text NOT NULL,
    -- `datetime` of the event; NULL when it did not parse (the raw value is
    -- then kept in extra).
    occurred_at       timestamptz,
    transaction_id    text,
    offer_id          bigint,
    affiliate_id      bigint,
    advertiser_id     bigint,
    payout            numeric,
    revenue           numeric,
    currency          text,
    country           text,
    -- `status`, else `status_code` as text.
    status            text,
    -- PII, masked by the policy (encrypt: enc:<key id>:…, hash: hmac:<key id>:…).
    masked_ip         text,
    masked_session_ip text,
    masked_user_agent text,
    -- The first of ios_ifa, google_aid, android_id, windows_aid, device_id,
    -- unknown_id present.
    masked_device_id  text,
    -- Every other field of the event, PII masked.
    extra             jsonb NOT NULL DEFAULT '{}',
    loaded_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS tune_events_occurred_at_idx ON tune_events (occurred_at);

-- The ledger of adjustment events, unique on (event_id, adjustment_sequence_id).
-- An adjustment may arrive before its event; it waits here and the view picks
-- it up once the event is loaded.
CREATE TABLE IF NOT EXISTS tune_adjustments (
    event_id               text NOT NULL,
    adjustment_sequence_id bigint NOT NULL,
    -- 1 create (a new event made through TUNE's API or upload tool),
    -- 2 update (a change to the event with this event_id).
    adjust_action          smallint NOT NULL CHECK (adjust_action IN (1, 2)),
    -- `adjustment_timestamp`.
    adjusted_at            timestamptz,
    -- Signed deltas, e.g. -1, -10, -20 for a rejected conversion.
    num                    bigint,
    payout                 numeric,
    revenue                numeric,
    -- Absolute amounts after the adjustment, when TUNE sends them.
    current_payout         numeric,
    current_revenue        numeric,
    extra                  jsonb NOT NULL DEFAULT '{}',
    loaded_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (event_id, adjustment_sequence_id)
);

-- Each event of tune_events with its update adjustments (adjust_action = 2)
-- applied: payout and revenue are the event's plus the sum of the update
-- deltas (a missing amount counts as 0 once either side has one), num_delta
-- the sum of their num, adjustment_count how many there are and
-- last_adjusted_at the latest adjusted_at. Sums do not depend on order, so
-- applying the ledger in adjustment_sequence_id order and summing agree, and
-- an adjustment missing current_payout/current_revenue changes nothing.
--
-- Create adjustments (adjust_action = 1) are not added: TUNE sends them for
-- conversions created through its API or upload tool, which are new events,
-- not changes to one; adding their amounts to a tracking event of the same
-- event_id would count that conversion twice. They are in tune_adjustments.
CREATE OR REPLACE VIEW tune_events_current AS
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
           sum(num)::bigint AS num,
           sum(payout) AS payout,
           sum(revenue) AS revenue,
           max(adjusted_at) AS last_adjusted_at
    FROM tune_adjustments
    WHERE adjust_action = 2
    GROUP BY event_id
) a ON a.event_id = e.event_id;
