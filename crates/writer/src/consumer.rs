//! Long-polling receivers: queue → decoded, masked [`Delivery`]s.
//!
//! Several consumers poll at once so one slow long poll never idles the
//! writer. Decoding and masking are CPU work and run on the blocking pool.
//! The channel to the committer is bounded: when the database falls behind,
//! consumers stop receiving instead of holding ever more messages.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::classify::Classifier;
use sluice_core::queue::{Queue, QueueMessage};
use sluice_core::records::MessageRows;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::lease::Leases;
use crate::metrics;

/// A received message and the rows it becomes.
#[derive(Debug)]
pub struct Delivery {
    pub message: QueueMessage,
    pub rows: MessageRows,
    /// This delivery's share of the held-rows budget, returned on drop.
    pub budget: Option<OwnedSemaphorePermit>,
}

/// Decodes and classifies one message. The receipt key is the envelope id
/// when there is one, so the same envelope sent twice lands once.
pub fn to_delivery(classifier: &Classifier, mut message: QueueMessage) -> Delivery {
    let rows = classifier.body_rows(message.body.as_bytes(), &message.message_id);
    // Only the id and receipt handle are needed from here on; a body kept
    // until the commit (up to 256 KiB per message) would be held beside its
    // decoded rows for every delivery in the budget.
    message.body = String::new();
    Delivery {
        message,
        rows,
        budget: None,
    }
}

pub struct Consumer {
    pub queue: Arc<dyn Queue>,
    pub classifier: Arc<Classifier>,
    pub leases: Leases,
    pub deliveries: mpsc::Sender<Delivery>,
    /// Decoded rows held in memory at once (`WRITER_MAX_HELD_ROWS`): with
    /// envelopes of thousands of records a message count alone bounds nothing.
    pub row_budget: Arc<Semaphore>,
    pub max_held_rows: usize,
    pub wait: Duration,
    pub visibility: Duration,
    pub health: Arc<Health>,
}

impl Consumer {
    /// Polls until `shutdown` fires. A receive already under way is allowed to
    /// finish (it is bounded by the long-poll wait) so no message is taken
    /// from the queue and then abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let received = self.queue.receive(10, self.wait, self.visibility).await;
            let messages = match received {
                Ok(messages) => {
                    backoff.reset();
                    self.health.receive_succeeded();
                    messages
                }
                Err(e) => {
                    self.health.receive_failed(&e.to_string());
                    metrics::error("queue_receive", 1);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            metrics::received(messages.len());
            for m in &messages {
                self.leases.hold(&m.receipt_handle);
            }
            // One message at a time per consumer, each waiting for its share
            // of the row budget before the next is decoded: memory stays
            // bounded however large the envelopes, and the consumers together
            // still keep every core decoding.
            for message in messages {
                let classifier = Arc::clone(&self.classifier);
                let handle = message.receipt_handle.clone();
                let mut delivery =
                    match tokio::task::spawn_blocking(move || to_delivery(&classifier, message))
                        .await
                    {
                        Ok(delivery) => delivery,
                        Err(_) => {
                            // A bug in decoding: stop holding the message so it
                            // comes back after its visibility timeout and, if it
                            // repeats, ends in the dead-letter queue.
                            tracing::error!(
                                "decoding task failed; message left to the queue's redrive policy"
                            );
                            metrics::error("decode_panic", 1);
                            self.leases.forget([&handle]);
                            continue;
                        }
                    };
                tracing::debug!(rows = delivery.rows.row_count(), "message decoded");
                let share = delivery.rows.row_count().clamp(1, self.max_held_rows) as u32;
                match Arc::clone(&self.row_budget).acquire_many_owned(share).await {
                    Ok(permit) => delivery.budget = Some(permit),
                    Err(_) => return,
                }
                if self.deliveries.send(delivery).await.is_err() {
                    // The committer is gone: only on a fatal error; the leases
                    // lapse and the messages become visible again.
                    return;
                }
            }
        }
    }
}
