//! Refreshes the queue-depth gauges (`sluice_writer_queue_messages` by
//! `state`: visible, in flight, dead letter) every
//! `WRITER_QUEUE_DEPTH_INTERVAL_SECS`.
//!
//! The writer exports them, not ingest, because writers are what drain the
//! queue and are always running; every writer exports the same numbers, so
//! dashboards and alerts take `max` over writers, never `sum`. A refresh
//! that fails counts `sluice_writer_queue_depth_errors_total` and leaves the
//! gauges at their last value; queue outages are logged by the receivers.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// A refresh that has not answered in this long is given up (and counted).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Refreshes at once, then every `every`, until `stop`.
pub async fn run(queue: Arc<dyn Queue>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = refresh(queue.as_ref()) => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One refresh of every gauge the queue can answer for.
pub async fn refresh(queue: &dyn Queue) {
    match tokio::time::timeout(REFRESH_TIMEOUT, queue.counts()).await {
        Ok(Ok(counts)) => {
            metrics::queue_messages("visible", counts.visible);
            metrics::queue_messages("in_flight", counts.in_flight);
        }
        Ok(Err(e)) => failed(&e.to_string()),
        Err(_) => failed("no answer in time"),
    }
    match tokio::time::timeout(REFRESH_TIMEOUT, queue.dead_letter_counts()).await {
        // Messages in flight on a dead-letter queue (a `dlq peek` under
        // way) are dead letters all the same.
        Ok(Ok(Some(counts))) => {
            metrics::queue_messages("dead_letter", counts.visible + counts.in_flight);
        }
        // No dead-letter queue: no gauge, rather than a zero that looks fine.
        Ok(Ok(None)) => {}
        Ok(Err(e)) => failed(&e.to_string()),
        Err(_) => failed("no answer in time"),
    }
}

fn failed(reason: &str) {
    metrics::queue_depth_error();
    tracing::debug!(reason, "queue depth not refreshed");
}
