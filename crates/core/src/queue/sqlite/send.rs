//! Sending: SQS's checks, the room check and the insert, in one durable
//! transaction.

use rusqlite::{TransactionBehavior, params};

use super::receive::fresh_nonce;
use super::rules::{check_batch_len, refusal};
use super::{MAX_BATCH_BYTES, SqliteQueue, now_ms, space};
use crate::queue::{EntryFailure, QueueError, SendOutcome};

/// Sends `bodies`, refusing per entry what SQS would refuse and the whole
/// call while the queue has no room (`QueueFull`). Returns after the commit
/// is synced: ingest answers 202 on it.
pub(super) async fn send_batch(
    queue: &SqliteQueue,
    bodies: &[String],
) -> Result<SendOutcome, QueueError> {
    check_batch_len(bodies.len())?;
    let mut outcome = SendOutcome::default();
    let mut rows = Vec::with_capacity(bodies.len());
    let mut total = 0;
    for (index, body) in bodies.iter().enumerate() {
        if let Some(code) = refusal(body) {
            outcome.failed.push(EntryFailure {
                index,
                code: code.into(),
                sender_fault: true,
            });
            continue;
        }
        total += body.len();
        rows.push((index, uuid::Uuid::now_v7().to_string(), body.clone()));
    }
    if total > MAX_BATCH_BYTES {
        return Err(QueueError::new(
            Some("BatchRequestTooLong".into()),
            format!(
                "BatchRequestTooLong: the bodies total {total} bytes, at most {MAX_BATCH_BYTES}"
            ),
        ));
    }
    if rows.is_empty() {
        return Ok(outcome);
    }
    let path = queue.shared.path.clone();
    let limits = queue.shared.limits;
    let resuming = queue.shared.refusing.is_set();
    let sent = queue
            .run(true, "sending", move |conn, which| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Measured under the write lock: no other send can slip
                // between the check and the insert.
                let space = space::measure(&tx, &path)?;
                space::record(&space);
                if let Some(reason) = space::refusal(&limits, &space, total as u64, resuming) {
                    return Ok(Err(reason));
                }
                let now = now_ms();
                {
                    // The receipt starts as a nonce of a receive's size, so
                    // a receive rewrites the row in place (same length)
                    // instead of copying its body: receiving then needs a
                    // few pages of WAL, not the message's size.
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO sluice_queue_messages (queue, visible_at, message_id, sent_at, body, receipt)
                         VALUES (?1, ?2, ?3, ?2, ?4, ?5)",
                    )?;
                    for (_, id, body) in &rows {
                        stmt.execute(params![which.code(), now, id, body, fresh_nonce()])?;
                    }
                }
                tx.commit()?;
                Ok(Ok(rows
                    .into_iter()
                    .map(|(index, id, _)| (index, id))
                    .collect::<Vec<_>>()))
            })
            .await;
    let sent = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(reason)) => {
            queue.shared.refusing.started(&queue.shared.path, &reason);
            return Err(QueueError::new(
                Some(crate::queue::QUEUE_FULL.into()),
                format!("queue file {}: full: {reason}", queue.shared.path.display()),
            ));
        }
        Err(e) => {
            if e.is_full() {
                queue
                    .shared
                    .refusing
                    .started(&queue.shared.path, &e.message);
            }
            return Err(e);
        }
    };
    queue.shared.refusing.ended(&queue.shared.path);
    queue.shared.notify.notify_waiters();
    outcome.sent = sent;
    Ok(outcome)
}
