//! `dlq peek [N]`: the first N dead-lettered messages, as masked rows.
//!
//! Peeking must not consume: messages are received with a short hold (so a
//! second receive does not return them again while more are gathered), and
//! every one is made visible again at once (visibility 0) before anything is
//! printed — also when a receive fails half-way. Should the release itself
//! fail, the hold runs out after [`HOLD`] and they come back by themselves.
//!
//! The bodies are never printed: each is decoded with the writer's own
//! classification and shown as the rows it would become, PII masked by the
//! configured policy; a record that does not parse is shown as its rejected
//! row (masked JSON, or encrypted whole).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use sluice_core::classify::Classifier;
use sluice_core::queue::{MAX_BATCH_ENTRIES, Queue, QueueError, QueueMessage};

use super::DlqError;
use super::view::message_view;

/// How long peeked messages are hidden at most (released at once normally).
pub const HOLD: Duration = Duration::from_secs(30);
/// Long-poll wait of each receive: an empty answer after it ends the peek.
const WAIT: Duration = Duration::from_secs(1);

/// Prints up to `n` messages of `dead_letter` as JSON lines; returns how many.
pub async fn peek(
    dead_letter: &dyn Queue,
    classifier: &Classifier,
    n: usize,
    out: &mut impl Write,
) -> Result<usize, DlqError> {
    let mut held: Vec<QueueMessage> = Vec::new();
    let gathered = gather(dead_letter, n, &mut held).await;
    let released = release(dead_letter, &held).await;
    gathered.map_err(DlqError::queue("peek: receiving"))?;
    if let Err(e) = released {
        tracing::warn!(error = %e, hold_secs = HOLD.as_secs(), "peeked messages not released; they come back when the hold ends");
    }
    for message in &held {
        let rows = classifier.body_rows(message.body.as_bytes(), &message.message_id);
        writeln!(out, "{}", message_view(message, &rows))?;
    }
    Ok(held.len())
}

/// Receives until `n` distinct messages are held or a receive comes back empty.
async fn gather(
    queue: &dyn Queue,
    n: usize,
    held: &mut Vec<QueueMessage>,
) -> Result<(), QueueError> {
    let mut index = HashMap::new();
    while held.len() < n {
        let want = (n - held.len()).min(MAX_BATCH_ENTRIES);
        let batch = queue.receive(want, WAIT, HOLD).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            match index.get(&message.message_id) {
                // Received again (its hold ran out): only the newest
                // receipt can release it.
                Some(&i) => held[i] = message,
                None => {
                    index.insert(message.message_id.clone(), held.len());
                    held.push(message);
                }
            }
        }
    }
    Ok(())
}

/// Makes every held message visible again at once.
async fn release(queue: &dyn Queue, held: &[QueueMessage]) -> Result<(), QueueError> {
    let handles: Vec<String> = held.iter().map(|m| m.receipt_handle.clone()).collect();
    let mut failed = 0;
    for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
        failed += queue
            .change_visibility_batch(chunk, Duration::ZERO)
            .await?
            .len();
    }
    if failed > 0 {
        return Err(QueueError::new(
            None,
            format!("{failed} message(s) could not be made visible again"),
        ));
    }
    Ok(())
}
