//! Batches deliveries into transactions, commits, then deletes.
//!
//! The order is the guarantee: rows and receipts commit in one transaction,
//! and only then are the messages deleted. A crash between the two leaves a
//! message that comes back and is skipped by its receipt; a crash before
//! commit leaves a message that comes back and is written. Batches group many
//! messages so rows share bulk statements, bounded by rows, messages and a
//! short linger so a lone message is not held long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::queue::{MAX_BATCH_ENTRIES, Queue};
use sluice_core::records::{MessageRows, WriteBatch};
use sluice_core::sink::{Sink, SinkError};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consumer::Delivery;
use crate::health::Health;
use crate::lease::Leases;
use crate::metrics;

#[derive(Clone)]
pub struct Committer {
    pub queue: Arc<dyn Queue>,
    pub sink: Arc<dyn Sink>,
    pub leases: Leases,
    pub batch_rows: usize,
    pub batch_messages: usize,
    pub linger: Duration,
    pub committers: usize,
    pub shutdown_timeout: Duration,
    pub health: Arc<Health>,
}

impl Committer {
    /// Collects deliveries into batches until the channel closes (every
    /// consumer stopped), then commits what remains and waits for in-flight
    /// batches. `shutdown` only bounds how long a failing batch is retried
    /// once the writer is stopping.
    pub async fn run(self, mut deliveries: mpsc::Receiver<Delivery>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.committers));
        let mut in_flight = JoinSet::new();
        let mut pending: Vec<Delivery> = Vec::new();
        let mut pending_rows = 0usize;
        let mut deadline = Instant::now();
        loop {
            let linger = tokio::time::sleep_until(deadline);
            tokio::select! {
                received = deliveries.recv() => match received {
                    Some(delivery) => {
                        if pending.is_empty() {
                            deadline = Instant::now() + self.linger;
                        }
                        pending_rows += delivery.rows.row_count().max(1);
                        pending.push(delivery);
                        // Take whatever else is already waiting, up to a full batch.
                        while pending_rows < self.batch_rows && pending.len() < self.batch_messages {
                            let Ok(delivery) = deliveries.try_recv() else { break };
                            pending_rows += delivery.rows.row_count().max(1);
                            pending.push(delivery);
                        }
                        let full = pending_rows >= self.batch_rows || pending.len() >= self.batch_messages;
                        // Group commit: with no commit in flight there is nothing
                        // to wait for, so commit now; while one runs, keep filling
                        // until the batch is full, the commit ends or the linger passes.
                        if !full && !in_flight.is_empty() {
                            continue;
                        }
                    }
                    None => break,
                },
                () = linger, if !pending.is_empty() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if pending.is_empty() || !in_flight.is_empty() {
                        continue;
                    }
                }
            }
            let batch = std::mem::take(&mut pending);
            pending_rows = 0;
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let this = self.clone();
            let shutdown = shutdown.clone();
            in_flight.spawn(async move {
                this.commit(batch, &shutdown).await;
                drop(permit);
            });
        }
        if !pending.is_empty() {
            self.commit(pending, &shutdown).await;
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Writes a batch (retrying transient failures), then deletes its messages.
    async fn commit(&self, mut deliveries: Vec<Delivery>, shutdown: &CancellationToken) {
        let received: Vec<String> = deliveries
            .iter()
            .map(|d| d.message.receipt_handle.clone())
            .collect();
        // The rows count against the budget until they are written (or
        // given up on); the batch, and with it every row, is dropped then.
        // Not until the delete: decoding the next messages while the delete
        // round trip runs is what keeps both cores busy.
        let budget: Vec<_> = deliveries
            .iter_mut()
            .filter_map(|d| d.budget.take())
            .collect();
        let (batch, handles) = batch_of(deliveries);
        let committed = self.write_isolating(batch, shutdown).await;
        drop(budget);
        let (done, failed): (Vec<_>, Vec<_>) = handles
            .into_iter()
            .partition(|(key, _)| committed.contains(key));
        let done: Vec<String> = done.into_iter().flat_map(|(_, h)| h).collect();
        self.delete(&done).await;
        let failed: Vec<String> = failed.into_iter().flat_map(|(_, h)| h).collect();
        if !failed.is_empty() {
            self.give_back(&failed, shutdown).await;
        }
        // Older handles of a message received twice are done with too.
        self.leases.forget(&received);
    }

    /// Writes the batch; on a permanent error, splits it to find the messages
    /// the database refuses so the others still commit. Returns the keys that
    /// are committed (now or by an earlier delivery).
    async fn write_isolating(
        &self,
        batch: WriteBatch,
        shutdown: &CancellationToken,
    ) -> Vec<String> {
        let mut work = vec![batch];
        let mut committed = Vec::new();
        while let Some(batch) = work.pop() {
            match self.write_with_retry(&batch, shutdown).await {
                Ok(()) => committed.extend(batch.messages.iter().map(|m| m.key.clone())),
                Err(SinkError::Permanent(reason)) if batch.messages.len() > 1 => {
                    tracing::warn!(%reason, messages = batch.messages.len(), "batch refused; splitting it to isolate the message");
                    let mut first = batch.messages;
                    let second = first.split_off(first.len() / 2);
                    for messages in [first, second] {
                        work.push(WriteBatch {
                            written_on: batch.written_on,
                            messages,
                        });
                    }
                }
                Err(SinkError::Permanent(reason)) => {
                    // Not deleted: the queue redelivers it and, after the
                    // maximum receive count, moves it to the dead-letter queue.
                    let key = batch
                        .messages
                        .first()
                        .map(|m| m.key.as_str())
                        .unwrap_or_default();
                    tracing::error!(%reason, message_key = key, "database refuses a message; leaving it to the dead-letter queue");
                    metrics::error("db_permanent", 1);
                }
                // Given up only when shutting down: released for redelivery.
                Err(SinkError::Transient(_) | SinkError::Configuration(_)) => {}
            }
        }
        committed
    }

    /// Retries transient errors with backoff while the leases keep the
    /// messages hidden; once shutting down, gives up after the timeout.
    async fn write_with_retry(
        &self,
        batch: &WriteBatch,
        shutdown: &CancellationToken,
    ) -> Result<(), SinkError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut give_up_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match self.sink.write(batch).await {
                Ok(outcome) => {
                    self.health.commit_succeeded();
                    let elapsed = started.elapsed();
                    tracing::debug!(
                        messages = batch.messages.len(),
                        rows = outcome.rows_written(),
                        duplicates = outcome.duplicate_keys.len(),
                        commit_ms = elapsed.as_millis() as u64,
                        "batch committed"
                    );
                    metrics::committed(&outcome, elapsed);
                    let fresh = batch.messages.iter().map(|m| m.key.as_str());
                    metrics::lag(
                        fresh.filter(|k| !outcome.duplicate_keys.iter().any(|d| d == k)),
                        std::time::SystemTime::now(),
                    );
                    return Ok(());
                }
                Err(e @ SinkError::Permanent(_)) => return Err(e),
                // A TLS certificate that stopped being trusted mid-run is
                // retried like an outage: no message is given up for it.
                Err(SinkError::Transient(reason) | SinkError::Configuration(reason)) => {
                    self.health.commit_failed(&reason);
                    metrics::error("db_transient", 1);
                    if shutdown.is_cancelled() {
                        let limit = *give_up_at
                            .get_or_insert_with(|| Instant::now() + self.shutdown_timeout);
                        if Instant::now() >= limit {
                            return Err(SinkError::Transient(reason));
                        }
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, attempt = backoff.attempts(), "batch not committed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Deletes committed messages. A failed delete loses nothing: the
    /// message comes back and its receipt makes the writer skip it.
    async fn delete(&self, handles: &[String]) {
        for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
            let mut backoff = Backoff::default();
            for attempt in 1..=3 {
                match self.queue.delete_batch(chunk).await {
                    Ok(failures) => {
                        for f in &failures {
                            tracing::warn!(code = %f.code, "delete of a committed message failed; its receipt will skip it");
                        }
                        metrics::deleted(chunk.len() - failures.len());
                        if !failures.is_empty() {
                            metrics::error("queue_delete", failures.len() as u64);
                        }
                        break;
                    }
                    Err(e) => {
                        metrics::error("queue_delete", 1);
                        tracing::warn!(error = %e, attempt, "delete failed");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
            self.leases.forget(chunk);
        }
    }

    /// Uncommitted messages: when stopping, made visible at once for another
    /// writer; otherwise left to their visibility timeout, so a message the
    /// database refuses counts a receive each time and reaches the
    /// dead-letter queue.
    async fn give_back(&self, handles: &[String], shutdown: &CancellationToken) {
        self.leases.forget(handles);
        if !shutdown.is_cancelled() {
            return;
        }
        release(self.queue.as_ref(), handles).await;
    }
}

/// Makes messages visible again at once.
pub async fn release(queue: &dyn Queue, handles: &[String]) {
    for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
        match queue.change_visibility_batch(chunk, Duration::ZERO).await {
            Ok(failures) => {
                metrics::released(chunk.len() - failures.len());
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release messages; they return after their visibility timeout")
            }
        }
    }
}

/// Turns deliveries into a batch with unique keys. A key seen twice (the
/// same message received twice, or the same envelope sent twice) is written
/// once; every copy is deleted after the commit. Returns, per key, the
/// receipt handles to delete.
fn batch_of(deliveries: Vec<Delivery>) -> (WriteBatch, Vec<(String, Vec<String>)>) {
    let mut handles: Vec<(String, Vec<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut messages: Vec<MessageRows> = Vec::new();
    // Per message id, only the newest handle can be deleted reliably.
    let mut newest: HashMap<String, String> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for d in deliveries {
        if newest
            .insert(
                d.message.message_id.clone(),
                d.message.receipt_handle.clone(),
            )
            .is_none()
        {
            order.push((d.message.message_id.clone(), d.rows.key.clone()));
        }
        if !index.contains_key(&d.rows.key) {
            index.insert(d.rows.key.clone(), messages.len());
            handles.push((d.rows.key.clone(), Vec::new()));
            messages.push(d.rows);
        }
    }
    for (message_id, key) in order {
        if let (Some(handle), Some(&i)) = (newest.remove(&message_id), index.get(&key)) {
            handles[i].1.push(handle);
        }
    }
    let batch = WriteBatch {
        written_on: chrono::Utc::now().date_naive(),
        messages,
    };
    (batch, handles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::queue::QueueMessage;

    fn delivery(id: &str, handle: &str, key: &str) -> Delivery {
        Delivery {
            message: QueueMessage {
                message_id: id.into(),
                receipt_handle: handle.into(),
                body: String::new(),
                receive_count: 1,
            },
            rows: MessageRows::new(key),
            budget: None,
        }
    }

    #[test]
    fn duplicate_keys_and_messages_collapse() {
        let (batch, handles) = batch_of(vec![
            delivery("m1", "h1", "k1"),
            delivery("m2", "h2", "k1"),
            delivery("m1", "h1-again", "k1"),
            delivery("m3", "h3", "k3"),
        ]);
        assert_eq!(batch.messages.len(), 2);
        assert_eq!(
            handles,
            vec![
                (
                    "k1".to_owned(),
                    vec!["h1-again".to_owned(), "h2".to_owned()]
                ),
                ("k3".to_owned(), vec!["h3".to_owned()]),
            ]
        );
    }
}
