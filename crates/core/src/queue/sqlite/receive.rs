//! Receiving: taking visible messages, redrive, quarantine of unreadable
//! rows; deleting and re-timing by receipt handle.

use rusqlite::{Connection, TransactionBehavior, params};

use super::{QueueMessage, Which, now_ms, read_max_receive_count};
use crate::queue::EntryFailure;

/// Moves a message to the dead-letter queue, its receive count reset.
fn to_dead_letter(tx: &Connection, seq: i64, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE sluice_queue_messages
         SET queue = ?2, visible_at = ?3, receive_count = 0, receipt = NULL
         WHERE seq = ?1",
    )?
    .execute(params![seq, Which::DeadLetter.code(), now])
    .map(|_| ())
}

/// Column `index` as text: `Err` with a lossy rendering when it is not
/// UTF-8 text (a row another program wrote). `lenient` (the dead-letter
/// queue, which has nowhere further to send it) delivers the lossy text.
fn text(
    row: &rusqlite::Row<'_>,
    index: usize,
    lenient: bool,
) -> rusqlite::Result<Result<String, String>> {
    use rusqlite::types::ValueRef;
    let bytes = match row.get_ref(index)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        ValueRef::Null => &b""[..],
        other => {
            let shown = match other {
                ValueRef::Integer(v) => v.to_string(),
                ValueRef::Real(v) => v.to_string(),
                _ => String::new(),
            };
            return Ok(if lenient { Ok(shown) } else { Err(shown) });
        }
    };
    Ok(match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(_) if lenient => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Err(_) => Err(String::from_utf8_lossy(bytes).into_owned()),
    })
}

/// A receipt nonce: random, and always stored in 8 bytes (at least 2^62),
/// so replacing one never changes a row's length.
pub(super) fn fresh_nonce() -> i64 {
    (rand::random::<u64>() >> 2 | 1 << 62) as i64
}

pub(super) fn handle(seq: i64, nonce: i64) -> String {
    format!("{seq}.{nonce:x}")
}

pub(super) fn parse_handle(handle: &str) -> Option<(i64, i64)> {
    let (seq, nonce) = handle.split_once('.')?;
    let nonce = u64::from_str_radix(nonce, 16).ok()?;
    Some((seq.parse().ok()?, i64::try_from(nonce).ok()?))
}

pub(super) fn invalid_handle(index: usize) -> EntryFailure {
    EntryFailure {
        index,
        code: "ReceiptHandleIsInvalid".into(),
        sender_fault: true,
    }
}

/// What one receive attempt found.
pub(super) struct Attempt {
    pub(super) messages: Vec<QueueMessage>,
    /// Messages moved to the dead-letter queue.
    pub(super) moved: usize,
    /// When the next hidden message becomes visible (Unix ms), if any.
    pub(super) next_visible_at: Option<i64>,
    pub(super) data_version: i64,
}

pub(super) fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

pub(super) fn try_receive(
    conn: &mut Connection,
    which: Which,
    max: usize,
    visibility_ms: i64,
) -> rusqlite::Result<Attempt> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let max_receives = match which {
        Which::Main => Some(i64::from(read_max_receive_count(&tx)?)),
        Which::DeadLetter => None,
    };
    let mut messages = Vec::new();
    let mut moved = 0;
    loop {
        // Each row found is delivered (hidden) or moved to the dead-letter
        // queue, so it is not found again: every round makes progress.
        let candidates: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, receive_count FROM sluice_queue_messages
                 WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
            )?;
            stmt.query_map(
                params![which.code(), now, (max - messages.len()) as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<Result<_, _>>()?
        };
        if candidates.is_empty() {
            break;
        }
        for (seq, receive_count) in candidates {
            if max_receives.is_some_and(|limit| receive_count >= limit) {
                to_dead_letter(&tx, seq, now)?;
                moved += 1;
                continue;
            }
            let nonce = fresh_nonce();
            let read = tx
                .prepare_cached(
                    "UPDATE sluice_queue_messages
                     SET visible_at = ?2, receive_count = receive_count + 1, receipt = ?3
                     WHERE seq = ?1 RETURNING message_id, body, receive_count",
                )?
                .query_row(params![seq, now + visibility_ms, nonce], |row| {
                    let lenient = which == Which::DeadLetter;
                    Ok(match (text(row, 0, lenient)?, text(row, 1, lenient)?) {
                        (Ok(message_id), Ok(body)) => Ok(QueueMessage {
                            message_id,
                            receipt_handle: handle(seq, nonce),
                            body,
                            receive_count: row.get::<_, i64>(2)?.clamp(0, u32::MAX.into()) as u32,
                        }),
                        (id, _) => Err(id.unwrap_or_else(|lossy| lossy)),
                    })
                })?;
            match read {
                Ok(message) => messages.push(message),
                Err(message_id) => {
                    // Written by something other than Sluice: no consumer
                    // could read it, and failing the receive would stall
                    // every message behind it.
                    tracing::warn!(
                        message_id = %message_id.escape_debug(),
                        "a queue message is not readable text (not UTF-8, or not text at all); moved to the dead-letter queue"
                    );
                    to_dead_letter(&tx, seq, now)?;
                    moved += 1;
                }
            }
        }
        if messages.len() >= max {
            break;
        }
    }
    let next_visible_at = if messages.is_empty() {
        tx.prepare_cached(
            "SELECT MIN(visible_at) FROM sluice_queue_messages WHERE queue = ?1 AND visible_at > ?2",
        )?
        .query_row(params![which.code(), now], |row| row.get(0))?
    } else {
        None
    };
    // Read before the commit: a commit by another process right after ours
    // must count as unseen, or the wait that follows would sleep through it.
    let version = data_version(&tx)?;
    tx.commit()?;
    Ok(Attempt {
        messages,
        moved,
        next_visible_at,
        data_version: version,
    })
}

/// Deletes or re-times the messages of `handles` whose receipt is current.
pub(super) fn by_handles(
    conn: &mut Connection,
    sql: &str,
    which: Which,
    handles: &[Option<(i64, i64)>],
    visible_at: Option<i64>,
) -> rusqlite::Result<(Vec<EntryFailure>, usize)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut failures = Vec::new();
    let mut changed = 0;
    {
        let mut stmt = tx.prepare_cached(sql)?;
        for (index, parsed) in handles.iter().enumerate() {
            let hit = match parsed {
                Some((seq, nonce)) => {
                    let changed = match visible_at {
                        Some(at) => stmt.execute(params![seq, nonce, which.code(), at])?,
                        None => stmt.execute(params![seq, nonce, which.code()])?,
                    };
                    changed == 1
                }
                None => false,
            };
            if hit {
                changed += 1;
            } else {
                failures.push(invalid_handle(index));
            }
        }
    }
    tx.commit()?;
    Ok((failures, changed))
}
