//! The writer's metrics, named and described in one place.
//!
//! Labels are fixed vocabularies (table names, error kinds), never values
//! from records. [`describe`] gives every metric its `# HELP` text; it
//! installs the recorder first, because a description given before then
//! goes nowhere.

use std::time::Duration;

use sluice_core::records::WriteOutcome;

pub const MESSAGES_RECEIVED: &str = "sluice_writer_messages_received_total";
pub const ROWS_WRITTEN: &str = "sluice_writer_rows_written_total";
pub const REJECTED_RECORDS: &str = "sluice_writer_rejected_records_total";
pub const DUPLICATE_MESSAGES: &str = "sluice_writer_duplicate_messages_total";
pub const BATCH_COMMIT_SECONDS: &str = "sluice_writer_batch_commit_seconds";
pub const BATCHES_COMMITTED: &str = "sluice_writer_batches_committed_total";
pub const ERRORS: &str = "sluice_writer_errors_total";
pub const MESSAGES_DELETED: &str = "sluice_writer_messages_deleted_total";
pub const MESSAGES_RELEASED: &str = "sluice_writer_messages_released_total";
pub const VISIBILITY_EXTENSIONS: &str = "sluice_writer_visibility_extensions_total";

/// Installs the Prometheus recorder (if not yet) and gives every metric its
/// help text.
pub fn describe() {
    let _ = sluice_core::telemetry::metrics_handle();
    metrics::describe_counter!(MESSAGES_RECEIVED, "messages received from the queue");
    metrics::describe_counter!(
        ROWS_WRITTEN,
        "rows inserted, by table (rows already stored are not counted)"
    );
    metrics::describe_counter!(REJECTED_RECORDS, "rows inserted into rejected_records");
    metrics::describe_counter!(
        DUPLICATE_MESSAGES,
        "messages skipped because their receipt was already committed"
    );
    metrics::describe_histogram!(
        BATCH_COMMIT_SECONDS,
        "time to write and commit one batch, seconds"
    );
    metrics::describe_counter!(BATCHES_COMMITTED, "batches committed");
    metrics::describe_counter!(
        ERRORS,
        "failures by kind: queue_receive, queue_delete, queue_visibility, db_transient, db_permanent, decode_panic"
    );
    metrics::describe_counter!(
        MESSAGES_DELETED,
        "committed messages deleted from the queue"
    );
    metrics::describe_counter!(
        MESSAGES_RELEASED,
        "uncommitted messages made visible again at shutdown"
    );
    metrics::describe_counter!(
        VISIBILITY_EXTENSIONS,
        "visibility extensions of held messages"
    );
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
