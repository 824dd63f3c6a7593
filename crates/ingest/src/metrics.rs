//! The service's metrics, named in one place.
//!
//! Labels are fixed vocabularies (status codes, outcome and error kinds),
//! never values from requests or events.

use std::time::Duration;

use axum::http::StatusCode;

pub const REQUESTS: &str = "sluice_ingest_requests_total";
pub const REQUEST_SECONDS: &str = "sluice_ingest_request_seconds";
pub const EVENTS_ACCEPTED: &str = "sluice_ingest_events_accepted_total";
pub const MESSAGES_SENT: &str = "sluice_ingest_messages_sent_total";
pub const JSON_BYTES_SENT: &str = "sluice_ingest_json_bytes_sent_total";
pub const ENCODED_BYTES_SENT: &str = "sluice_ingest_encoded_bytes_sent_total";
pub const EVENTS_PER_MESSAGE: &str = "sluice_ingest_message_kiloevents";
pub const SQS_CALLS: &str = "sluice_ingest_sqs_calls_total";
pub const SQS_CALL_SECONDS: &str = "sluice_ingest_sqs_call_seconds";
pub const QUEUE_ERRORS: &str = "sluice_ingest_queue_errors_total";

/// Help texts, once at start. Installs the recorder first (if not yet):
/// a description given before it exists goes nowhere.
pub fn describe() {
    let _ = sluice_core::telemetry::metrics_handle();
    metrics::describe_counter!(REQUESTS, "POST /events requests by HTTP status");
    metrics::describe_histogram!(REQUEST_SECONDS, "POST /events time to answer, seconds");
    metrics::describe_counter!(EVENTS_ACCEPTED, "events answered 202 (in the queue)");
    metrics::describe_counter!(MESSAGES_SENT, "envelope messages the queue acknowledged");
    metrics::describe_counter!(
        JSON_BYTES_SENT,
        "envelope JSON bytes acknowledged, before compression"
    );
    metrics::describe_counter!(
        ENCODED_BYTES_SENT,
        "message body bytes acknowledged, after gzip and base64"
    );
    metrics::describe_histogram!(
        EVENTS_PER_MESSAGE,
        "events per acknowledged message, in thousands (0.1 = 100 events)"
    );
    metrics::describe_counter!(SQS_CALLS, "SendMessageBatch calls by outcome");
    metrics::describe_histogram!(
        SQS_CALL_SECONDS,
        "SendMessageBatch latency by outcome, seconds"
    );
    metrics::describe_counter!(
        QUEUE_ERRORS,
        "queue failures by kind (each is retried or answered 503)"
    );
    // Exported at 0 from the start, so dashboards and alerts find them and
    // `rate()` sees the first failure.
    for kind in QUEUE_ERROR_KINDS {
        metrics::counter!(QUEUE_ERRORS, "kind" => kind).increment(0);
    }
}

/// Every kind [`queue_error`] counts.
const QUEUE_ERROR_KINDS: [&str; 7] = [
    "entry_failed",
    "call_failed",
    "call_timeout",
    "call_too_large",
    "message_too_large",
    "queue_full",
    "deadline",
];

/// One answered POST /events.
pub fn request(status: StatusCode, elapsed: Duration) {
    metrics::counter!(REQUESTS, "status" => status_label(status)).increment(1);
    metrics::histogram!(REQUEST_SECONDS).record(elapsed.as_secs_f64());
}

/// The statuses the service answers with; anything else is `other`.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "202",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

pub fn accepted(events: usize) {
    metrics::counter!(EVENTS_ACCEPTED).increment(events as u64);
}

/// One message acknowledged by the queue.
pub fn message_sent(events: usize, json_bytes: usize, encoded_bytes: usize) {
    metrics::counter!(MESSAGES_SENT).increment(1);
    metrics::counter!(JSON_BYTES_SENT).increment(json_bytes as u64);
    metrics::counter!(ENCODED_BYTES_SENT).increment(encoded_bytes as u64);
    // The shared histogram buckets are 0.001..10: in thousands they span
    // 1 to 10,000 events.
    metrics::histogram!(EVENTS_PER_MESSAGE).record(events as f64 / 1000.0);
}

/// One `SendMessageBatch` call: `ok`, `partial`, `error` or `timeout`.
pub fn sqs_call(outcome: &'static str, elapsed: Duration) {
    metrics::counter!(SQS_CALLS, "outcome" => outcome).increment(1);
    metrics::histogram!(SQS_CALL_SECONDS, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// `entry_failed`, `call_failed`, `call_timeout`, `call_too_large`,
/// `message_too_large`, `queue_full` or `deadline`.
pub fn queue_error(kind: &'static str) {
    metrics::counter!(QUEUE_ERRORS, "kind" => kind).increment(1);
}
