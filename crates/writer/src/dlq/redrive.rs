//! `dlq redrive [--max N]`: dead-lettered messages back to the source queue.
//!
//! Each round receives up to ten messages from the dead-letter queue (hidden
//! for [`HOLD`]), sends their bodies to the source queue, and deletes from
//! the dead-letter queue only the ones the source acknowledged. So an
//! interruption at any point loses nothing: before the send the messages
//! come back to the dead-letter queue when the hold ends; between send and
//! delete they are in both, and the copy loaded twice is skipped by the
//! writer's receipts (keyed by the envelope id ingest gave it). Entries the
//! source refused are made visible again at once and end the redrive with an
//! error naming their codes, rather than being retried in a loop.

use std::time::Duration;

use sluice_core::queue::dead_letter::WithDeadLetter;
use sluice_core::queue::{MAX_BATCH_ENTRIES, Queue, QueueError, QueueMessage};

/// How long a message being moved is hidden in the dead-letter queue.
pub const HOLD: Duration = Duration::from_secs(60);
/// Long-poll wait of each receive: an empty answer after it ends the redrive.
const WAIT: Duration = Duration::from_secs(1);

/// Moves up to `max` messages (all, when `None`); returns how many moved.
pub async fn redrive(queues: &WithDeadLetter, max: Option<u64>) -> Result<u64, QueueError> {
    let (source, dead_letter) = (queues.source.as_ref(), queues.dead_letter.as_ref());
    let mut moved = 0u64;
    loop {
        let left = max.map_or(u64::MAX, |m| m.saturating_sub(moved));
        if left == 0 {
            break;
        }
        let want = left.min(MAX_BATCH_ENTRIES as u64) as usize;
        let batch = dead_letter.receive(want, WAIT, HOLD).await?;
        if batch.is_empty() {
            break;
        }
        moved += move_batch(source, dead_letter, &batch).await?;
        tracing::info!(moved, "redriving");
    }
    Ok(moved)
}

/// Sends one received batch to `source` and deletes what was sent; returns
/// how many were sent.
async fn move_batch(
    source: &dyn Queue,
    dead_letter: &dyn Queue,
    batch: &[QueueMessage],
) -> Result<u64, QueueError> {
    let bodies: Vec<String> = batch.iter().map(|m| m.body.clone()).collect();
    let sent = match source.send_batch(&bodies).await {
        Ok(sent) => sent,
        Err(e) => {
            release(dead_letter, batch.iter()).await;
            return Err(e);
        }
    };
    let handles: Vec<String> = sent
        .sent
        .iter()
        .filter_map(|(i, _)| batch.get(*i))
        .map(|m| m.receipt_handle.clone())
        .collect();
    if !handles.is_empty() {
        match dead_letter.delete_batch(&handles).await {
            // Sent but still in the dead-letter queue: it comes back after
            // the hold and would be sent again — a duplicate, not a loss.
            Ok(failed) if !failed.is_empty() => tracing::warn!(
                messages = failed.len(),
                "sent back but not deleted from the dead-letter queue; they may be redriven twice (the writer skips the copy)"
            ),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    if !sent.failed.is_empty() {
        release(
            dead_letter,
            sent.failed.iter().filter_map(|f| batch.get(f.index)),
        )
        .await;
        let codes: Vec<&str> = sent.failed.iter().map(|f| f.code.as_str()).collect();
        return Err(QueueError::new(
            None,
            format!(
                "the queue refused {} message(s) ({}); they stay in the dead-letter queue",
                codes.len(),
                codes.join(", ")
            ),
        ));
    }
    Ok(handles.len() as u64)
}

/// Makes messages visible again in the dead-letter queue at once; on
/// failure they come back when their hold ends.
async fn release<'a>(dead_letter: &dyn Queue, messages: impl Iterator<Item = &'a QueueMessage>) {
    let handles: Vec<String> = messages.map(|m| m.receipt_handle.clone()).collect();
    for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
        if let Err(e) = dead_letter
            .change_visibility_batch(chunk, Duration::ZERO)
            .await
        {
            tracing::warn!(error = %e, hold_secs = HOLD.as_secs(), "could not release messages; they come back when the hold ends");
        }
    }
}
