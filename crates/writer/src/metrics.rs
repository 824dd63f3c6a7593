//! The writer's metrics, named and described in one place.
//!
//! Labels are fixed vocabularies (table names, error kinds), never values
//! from records. Each name is declared with its `# HELP` text (its doc
//! comment); [`describe`] hands them to [`sluice_core::telemetry::describe`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::records::WriteOutcome;

sluice_core::declare_metrics! {
    // Every kind [`error`] counts.
    zeroed: ERRORS "kind" ["queue_receive", "queue_delete", "queue_visibility", "db_transient", "db_permanent", "decode_panic"];
    /// messages received from the queue
    Counter MESSAGES_RECEIVED = "sluice_writer_messages_received_total";
    /// rows inserted, by table (rows already stored are not counted)
    Counter ROWS_WRITTEN = "sluice_writer_rows_written_total";
    /// rows inserted into rejected_records
    Counter REJECTED_RECORDS = "sluice_writer_rejected_records_total";
    /// messages skipped because their receipt was already committed
    Counter DUPLICATE_MESSAGES = "sluice_writer_duplicate_messages_total";
    /// time to write and commit one batch, seconds
    Histogram BATCH_COMMIT_SECONDS = "sluice_writer_batch_commit_seconds";
    /// batches committed
    Counter BATCHES_COMMITTED = "sluice_writer_batches_committed_total";
    /// failures by kind: queue_receive, queue_delete, queue_visibility, db_transient, db_permanent, decode_panic
    Counter ERRORS = "sluice_writer_errors_total";
    /// committed messages deleted from the queue
    Counter MESSAGES_DELETED = "sluice_writer_messages_deleted_total";
    /// uncommitted messages made visible again at shutdown
    Counter MESSAGES_RELEASED = "sluice_writer_messages_released_total";
    /// visibility extensions of held messages
    Counter VISIBILITY_EXTENSIONS = "sluice_writer_visibility_extensions_total";
    /// seconds from ingest accepting an envelope (its received_at) to its commit, per committed envelope
    Histogram LAG_SECONDS = "sluice_writer_lag_seconds";
    /// messages in the queue by state (visible, in_flight, dead_letter), refreshed every WRITER_QUEUE_DEPTH_INTERVAL_SECS
    Gauge QUEUE_MESSAGES = "sluice_writer_queue_messages";
    /// queue depth refreshes that failed (the gauges keep their last value)
    Counter QUEUE_DEPTH_ERRORS = "sluice_writer_queue_depth_errors_total";
}

/// One histogram sample per committed message that is an envelope written
/// by ingest: its id is a UUID v7, minted in the same statement as the
/// envelope's `received_at`, so the id's millisecond timestamp is that
/// time. Read from the key the writer already holds, it costs no second
/// parse of the body. Messages already committed before (duplicates) and
/// bodies that are not such envelopes add no sample.
pub fn lag(keys: impl IntoIterator<Item = impl AsRef<str>>, now: SystemTime) {
    let histogram = metrics::histogram!(LAG_SECONDS);
    for key in keys {
        if let Some(seconds) = lag_of(key.as_ref(), now) {
            histogram.record(seconds);
        }
    }
}

/// Seconds from the UUID v7 `key`'s timestamp to `now`; `None` for any
/// other key. A clock ahead of this writer's counts as no lag.
fn lag_of(key: &str, now: SystemTime) -> Option<f64> {
    let id = uuid::Uuid::try_parse(key).ok()?;
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let at = UNIX_EPOCH + Duration::new(secs, nanos);
    Some(now.duration_since(at).map_or(0.0, |d| d.as_secs_f64()))
}

/// The queue's depth by `state`: `visible`, `in_flight`, `dead_letter`.
pub fn queue_messages(state: &'static str, count: u64) {
    metrics::gauge!(QUEUE_MESSAGES, "state" => state).set(count as f64);
}

pub fn queue_depth_error() {
    metrics::counter!(QUEUE_DEPTH_ERRORS).increment(1);
}

/// `queue_receive`, `queue_delete`, `queue_visibility`, `db_transient`,
/// `db_permanent` or `decode_panic`.
pub fn error(kind: &'static str, count: u64) {
    metrics::counter!(ERRORS, "kind" => kind).increment(count);
}

pub fn received(messages: usize) {
    metrics::counter!(MESSAGES_RECEIVED).increment(messages as u64);
}

/// One committed batch.
pub fn committed(outcome: &WriteOutcome, elapsed: Duration) {
    metrics::histogram!(BATCH_COMMIT_SECONDS).record(elapsed.as_secs_f64());
    for (table, rows) in [
        ("user_logins", outcome.logins_written),
        ("rejected_records", outcome.rejected_written),
        ("tune_events", outcome.tune_events_written),
        ("tune_adjustments", outcome.tune_adjustments_written),
    ] {
        metrics::counter!(ROWS_WRITTEN, "table" => table).increment(rows);
    }
    metrics::counter!(REJECTED_RECORDS).increment(outcome.rejected_written);
    metrics::counter!(DUPLICATE_MESSAGES).increment(outcome.duplicate_keys.len() as u64);
    metrics::counter!(BATCHES_COMMITTED).increment(1);
}

pub fn deleted(messages: usize) {
    metrics::counter!(MESSAGES_DELETED).increment(messages as u64);
}

pub fn released(messages: usize) {
    metrics::counter!(MESSAGES_RELEASED).increment(messages as u64);
}

pub fn extended(messages: usize) {
    metrics::counter!(VISIBILITY_EXTENSIONS).increment(messages as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_comes_from_uuid_v7_keys_only() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 123_000_000);
        let key = uuid::Uuid::new_v7(ts).to_string();
        let lag = lag_of(&key, at + Duration::from_millis(2_500)).unwrap();
        assert!((lag - 2.5).abs() < 0.001, "{lag}");
        // A clock behind the envelope's: no lag, not a negative one.
        assert_eq!(lag_of(&key, at - Duration::from_secs(1)), Some(0.0));
        // SQS message ids (v4), hashed keys and anything else: no sample.
        let v4 = "0b6f4b4e-2f5d-4c8e-9a4e-6d1f0c3b2a19";
        for other in [v4, "sha256:00", "", "not-a-uuid"] {
            assert_eq!(lag_of(other, at), None, "{other}");
        }
    }
}
