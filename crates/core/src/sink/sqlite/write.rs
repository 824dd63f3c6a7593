//! One batch, one `BEGIN IMMEDIATE` transaction.
//!
//! Per message: `INSERT OR IGNORE` its receipt; if that changed no row the
//! message is a duplicate (its receipt exists, a redelivery), else its
//! `Idempotency-Key` identities are claimed and its rows inserted with
//! cached prepared statements; then one commit for the whole batch.

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::error::classify;
use super::idempotency::claim_identities;
use super::insert::insert_each;
use super::logins::insert_logins;
use super::tune::{insert_tune_adjustments, insert_tune_events};
use crate::records::{RejectedRow, WriteBatch, WriteOutcome};
use crate::sink::SinkError;

pub(super) fn write_batch(
    conn: &mut Connection,
    batch: &WriteBatch,
) -> Result<WriteOutcome, SinkError> {
    let written_on = batch.written_on.format("%Y-%m-%d").to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| classify("beginning a transaction", e))?;
    let mut outcome = WriteOutcome::default();
    for message in &batch.messages {
        // A key repeated within the batch is caught here too: its second
        // receipt insert is ignored.
        let row_count = i64::try_from(message.row_count()).unwrap_or(i64::MAX);
        if !insert_receipt(&tx, &message.key, row_count)? {
            outcome.duplicate_keys.push(message.key.clone());
            continue;
        }
        // Events whose Idempotency-Key identity was stored before (a retried
        // request) are dropped, in this same transaction.
        let message = claim_identities(&tx, message)?;
        outcome.logins_written += insert_logins(&tx, &message.logins, &written_on)?;
        outcome.tune_events_written += insert_tune_events(&tx, &message.tune_events)?;
        outcome.tune_adjustments_written +=
            insert_tune_adjustments(&tx, &message.tune_adjustments)?;
        outcome.rejected_written += insert_rejected(&tx, &message.key, &message.rejected)?;
    }
    tx.commit().map_err(|e| classify("committing", e))?;
    Ok(outcome)
}

/// Inserts the receipt; false when it already existed (a duplicate message).
fn insert_receipt(tx: &Transaction<'_>, key: &str, row_count: i64) -> Result<bool, SinkError> {
    let err = |e| classify("inserting sluice_receipts", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO sluice_receipts (message_key, row_count) VALUES (?1, ?2)",
        )
        .map_err(err)?;
    // execute() returns sqlite3_changes(): 0 when the key was already there.
    Ok(stmt.execute(params![key, row_count]).map_err(err)? > 0)
}

fn insert_rejected(
    tx: &Transaction<'_>,
    key: &str,
    rows: &[RejectedRow],
) -> Result<u64, SinkError> {
    insert_each(
        tx,
        "rejected_records",
        "INSERT INTO rejected_records (message_key, reason, payload, payload_format) \
         VALUES (?1, ?2, ?3, ?4)",
        rows,
        |stmt, row| {
            stmt.execute(params![
                key,
                row.reason,
                row.payload,
                row.payload_format.as_str()
            ])
        },
    )
}
