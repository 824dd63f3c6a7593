//! The service's metrics, named in one place.
//!
//! Labels are fixed vocabularies (status codes, outcome and error kinds),
//! never values from requests or events.

use std::time::Duration;

use axum::http::StatusCode;

sluice_core::declare_metrics! {
    // Every kind [`queue_error`] counts.
    zeroed: QUEUE_ERRORS "kind" ["entry_failed", "call_failed", "call_timeout", "call_too_large", "message_too_large", "queue_full", "deadline"];
    /// POST /events requests by HTTP status
    Counter REQUESTS = "sluice_ingest_requests_total";
    /// POST /events time to answer, seconds
    Histogram REQUEST_SECONDS = "sluice_ingest_request_seconds";
    /// events answered 202 (in the queue)
    Counter EVENTS_ACCEPTED = "sluice_ingest_events_accepted_total";
    /// envelope messages the queue acknowledged
    Counter MESSAGES_SENT = "sluice_ingest_messages_sent_total";
    /// envelope JSON bytes acknowledged, before compression
    Counter JSON_BYTES_SENT = "sluice_ingest_json_bytes_sent_total";
    /// message body bytes acknowledged, after gzip and base64
    Counter ENCODED_BYTES_SENT = "sluice_ingest_encoded_bytes_sent_total";
    /// events per acknowledged message, in thousands (0.1 = 100 events)
    Histogram EVENTS_PER_MESSAGE = "sluice_ingest_message_kiloevents";
    /// SendMessageBatch calls by outcome
    Counter SQS_CALLS = "sluice_ingest_sqs_calls_total";
    /// SendMessageBatch latency by outcome, seconds
    Histogram SQS_CALL_SECONDS = "sluice_ingest_sqs_call_seconds";
    /// queue failures by kind (each is retried or answered 503)
    Counter QUEUE_ERRORS = "sluice_ingest_queue_errors_total";
}

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
