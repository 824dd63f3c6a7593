//! `Idempotency-Key` identities: claimed in the batch's transaction, purged
//! after their retention.

use std::borrow::Cow;

use rusqlite::{Connection, Transaction, params};

use super::error::classify;
use crate::records::MessageRows;
use crate::sink::SinkError;

/// Claims the message's identities in `sluice_idempotency`; returns the
/// message without the rows of identities claimed before.
pub(super) fn claim_identities<'a>(
    tx: &Transaction<'_>,
    message: &'a MessageRows,
) -> Result<Cow<'a, MessageRows>, SinkError> {
    if message.identities.is_empty() {
        return Ok(Cow::Borrowed(message));
    }
    let err = |e| classify("inserting sluice_idempotency", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO sluice_idempotency (key, event_index) VALUES (?1, ?2)",
        )
        .map_err(err)?;
    let mut fresh = Vec::with_capacity(message.identities.len());
    for identity in &message.identities {
        fresh.push(
            stmt.execute(params![identity.key, identity.index])
                .map_err(err)?
                > 0,
        );
    }
    Ok(message.keep_fresh(&fresh))
}

/// Deletes the identities claimed before `before` (RFC 3339 UTC with
/// milliseconds, as stored); returns how many.
pub(super) fn purge(conn: &Connection, before: &str) -> Result<u64, SinkError> {
    conn.execute(
        "DELETE FROM sluice_idempotency WHERE seen_at < ?1",
        params![before],
    )
    .map(|n| n as u64)
    .map_err(|e| classify("purging sluice_idempotency", e))
}
