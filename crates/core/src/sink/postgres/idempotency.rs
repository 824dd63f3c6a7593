//! `Idempotency-Key` claims in PostgreSQL (see [`crate::idempotency`]).
//!
//! `sluice_idempotency` holds one row per key: the runs of event indexes
//! claimed so far (`int8multirange`). A batch claims in two statements,
//! whatever its size:
//!
//! 1. `INSERT … ON CONFLICT (key) DO UPDATE SET seen_at = now() RETURNING`
//!    for every key of the batch, in sorted order: this locks each key's row
//!    (creating it when new) until the commit and returns what it holds. A
//!    writer claiming the same key concurrently waits here until the other
//!    commits, then sees that one's runs (READ COMMITTED re-reads the row).
//! 2. `UPDATE … SET events = events + fresh` with, per key, the runs asked
//!    for minus those held.
//!
//! Exactly once across replicas therefore rests on the row lock, not on a
//! unique index per event.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};

use super::{CHUNK_ROWS, SinkError, classify};
use crate::idempotency::{Claim, Runs};
use crate::records::MessageRows;

/// Claims the identities of `messages` and returns the messages without
/// the rows of identities claimed before (by an earlier batch, or earlier
/// in this one).
pub(super) async fn claim_identities<'a>(
    conn: &mut PgConnection,
    messages: Vec<&'a MessageRows>,
) -> Result<Vec<Cow<'a, MessageRows>>, SinkError> {
    let claim = Claim::new(messages.iter().flat_map(|m| &m.identities));
    if claim.is_empty() {
        return Ok(messages.into_iter().map(Cow::Borrowed).collect());
    }
    let keys: Vec<&str> = claim.wanted().map(|(key, _)| key).collect();
    let mut held: HashMap<String, Runs> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK_ROWS) {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO sluice_idempotency AS t (key) \
             SELECT * FROM UNNEST($1::text[]) \
             ON CONFLICT (key) DO UPDATE SET seen_at = now() \
             RETURNING t.key, t.events::text",
        )
        .bind(chunk)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify("claiming in sluice_idempotency", e))?;
        for (key, events) in rows {
            let runs = Runs::parse(&events).ok_or_else(|| {
                SinkError::Permanent("sluice_idempotency holds runs it cannot read".into())
            })?;
            held.insert(key, runs);
        }
    }
    let mut fresh = claim.fresh(&held);
    let added: Vec<(&str, String)> = fresh
        .runs()
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(key, runs)| (key, runs.to_text()))
        .collect();
    for chunk in added.chunks(CHUNK_ROWS) {
        let (keys, runs): (Vec<&str>, Vec<&str>) =
            chunk.iter().map(|(k, r)| (*k, r.as_str())).unzip();
        sqlx::query(
            "UPDATE sluice_idempotency AS t SET events = t.events + u.runs::int8multirange \
             FROM UNNEST($1::text[], $2::text[]) AS u (key, runs) WHERE t.key = u.key",
        )
        .bind(keys)
        .bind(runs)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify("claiming in sluice_idempotency", e))?;
    }
    Ok(messages
        .into_iter()
        .map(|m| {
            let flags = fresh.flags(&m.identities);
            m.keep_fresh(&flags)
        })
        .collect())
}

/// Deletes the keys last claimed before `before`; returns how many
/// identities (events) they held.
pub(super) async fn purge(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, SinkError> {
    let forgotten: i64 = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM sluice_idempotency WHERE seen_at < $1 RETURNING events) \
         SELECT CAST(COALESCE(SUM(upper(r) - lower(r)), 0) AS BIGINT) \
         FROM gone, unnest(gone.events) AS r",
    )
    .bind(before)
    .fetch_one(pool)
    .await
    .map_err(|e| classify("purging sluice_idempotency", e))?;
    Ok(u64::try_from(forgotten).unwrap_or(0))
}
