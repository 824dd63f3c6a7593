//! `Idempotency-Key` claims in SQLite (see [`crate::idempotency`]).
//!
//! `sluice_idempotency` holds one row per key: the runs of event indexes
//! claimed so far, as text (`{[0,37),[40,100)}`). A message's claim reads,
//! per key, what the row holds and writes back the union with what the
//! message asks for: two statements per key, not a row per event. The
//! writer's `BEGIN IMMEDIATE` transaction holds the database's write lock
//! from the start, so writers sharing the file claim one after the other.

use std::borrow::Cow;
use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::error::classify;
use crate::idempotency::{Claim, Runs};
use crate::records::MessageRows;
use crate::sink::SinkError;

/// Claims the message's identities; returns the message without the rows
/// of identities claimed before (or twice in it).
pub(super) fn claim_identities<'a>(
    tx: &Transaction<'_>,
    message: &'a MessageRows,
) -> Result<Cow<'a, MessageRows>, SinkError> {
    if message.identities.is_empty() {
        return Ok(Cow::Borrowed(message));
    }
    let err = |e| classify("claiming in sluice_idempotency", e);
    let claim = Claim::new(&message.identities);
    let mut read = tx
        .prepare_cached("SELECT events FROM sluice_idempotency WHERE key = ?1")
        .map_err(err)?;
    let mut held = HashMap::new();
    for (key, _) in claim.wanted() {
        let events: Option<String> = read
            .query_row([key], |row| row.get(0))
            .optional()
            .map_err(err)?;
        if let Some(events) = events {
            let runs = Runs::parse(&events).ok_or_else(|| {
                SinkError::Permanent("sluice_idempotency holds runs it cannot read".into())
            })?;
            held.insert(key.to_owned(), runs);
        }
    }
    let mut write = tx
        .prepare_cached(
            "INSERT INTO sluice_idempotency (key, events) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET events = excluded.events, \
             seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .map_err(err)?;
    let mut fresh = claim.fresh(&held);
    for (key, wanted) in claim.wanted() {
        let all = match held.get(key) {
            Some(before) => before.union(wanted),
            None => wanted.clone(),
        };
        write.execute(params![key, all.to_text()]).map_err(err)?;
    }
    let flags = fresh.flags(&message.identities);
    Ok(message.keep_fresh(&flags))
}

/// Deletes the keys last claimed before `before` (RFC 3339 UTC text);
/// returns how many identities (events) they held.
pub(super) fn purge(conn: &rusqlite::Connection, before: &str) -> Result<u64, SinkError> {
    let err = |e| classify("purging sluice_idempotency", e);
    let mut stmt = conn
        .prepare("DELETE FROM sluice_idempotency WHERE seen_at < ?1 RETURNING events")
        .map_err(err)?;
    let gone = stmt
        .query_map([before], |row| row.get::<_, String>(0))
        .map_err(err)?;
    let mut forgotten = 0;
    for events in gone {
        // A row that cannot be read is deleted all the same.
        forgotten += Runs::parse(&events.map_err(err)?).map_or(0, |r| r.count());
    }
    Ok(forgotten)
}
