//! TUNE rows: tracking events and their adjustments, each skipped when
//! already stored (TUNE sends events again).

use rusqlite::{Transaction, params};

use super::insert::insert_each;
use crate::records::{Decimal, TuneAdjustmentRow, TuneEventRow};
use crate::sink::SinkError;

/// RFC 3339 UTC with milliseconds, the format of every SQLite timestamp
/// here (`strftime('%Y-%m-%dT%H:%M:%fZ')`), so they compare as strings.
fn timestamp(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn real(amount: Option<&Decimal>) -> Option<f64> {
    amount.map(Decimal::to_f64)
}

const EVENTS_INSERT: &str = "INSERT INTO tune_events \
           (event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
            advertiser_id, payout, revenue, currency, country, status, masked_ip, \
            masked_session_ip, masked_user_agent, masked_device_id, extra) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
         ON CONFLICT (event_id) DO NOTHING";

const ADJUSTMENTS_INSERT: &str = "INSERT INTO tune_adjustments \
           (event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, payout, \
            revenue, current_payout, current_revenue, extra) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (event_id, adjustment_sequence_id) DO NOTHING";

/// Inserts tracking events; an `event_id` already stored is skipped
/// (`ON CONFLICT DO NOTHING`, which unlike `INSERT OR IGNORE` still fails on
/// a NOT NULL or CHECK violation). Returns the rows inserted.
pub(super) fn insert_tune_events(
    tx: &Transaction<'_>,
    rows: &[TuneEventRow],
) -> Result<u64, SinkError> {
    insert_each(tx, "tune_events", EVENTS_INSERT, rows, |stmt, row| {
        stmt.execute(params![
            row.event_id,
            row.action,
            timestamp(row.occurred_at),
            row.transaction_id,
            row.offer_id,
            row.affiliate_id,
            row.advertiser_id,
            real(row.payout.as_ref()),
            real(row.revenue.as_ref()),
            row.currency,
            row.country,
            row.status,
            row.masked_ip,
            row.masked_session_ip,
            row.masked_user_agent,
            row.masked_device_id,
            row.extra,
        ])
    })
}

/// Inserts adjustments; an `(event_id, adjustment_sequence_id)` already
/// stored is skipped. Returns the rows inserted.
pub(super) fn insert_tune_adjustments(
    tx: &Transaction<'_>,
    rows: &[TuneAdjustmentRow],
) -> Result<u64, SinkError> {
    insert_each(
        tx,
        "tune_adjustments",
        ADJUSTMENTS_INSERT,
        rows,
        |stmt, row| {
            stmt.execute(params![
                row.event_id,
                row.adjustment_sequence_id,
                row.adjust_action.code(),
                timestamp(row.adjusted_at),
                row.num,
                real(row.payout.as_ref()),
                real(row.revenue.as_ref()),
                real(row.current_payout.as_ref()),
                real(row.current_revenue.as_ref()),
                row.extra,
            ])
        },
    )
}
