//! The embedded queue when something is wrong with its file: rows it cannot
//! read are quarantined instead of stalling the queue, and sends stop at
//! `QUEUE_MAX_BYTES` while receives and deletes go on, then resume once the
//! queue is drained. No services needed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_core::queue::Queue;
use sluice_core::queue::sqlite::{Limits, SqliteQueue};

const LONG: Duration = Duration::from_secs(30);

/// Writes a row as another program might: a body that is not UTF-8.
fn insert_foreign_row(path: &std::path::Path, message_id: &str, body: &[u8]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "INSERT INTO sluice_queue_messages (queue, visible_at, message_id, sent_at, body)
         VALUES (0, 0, ?1, 0, CAST(?2 AS TEXT))",
        rusqlite::params![message_id, body],
    )
    .unwrap();
}

/// Receives and deletes until the queue answers empty; the bodies in order.
async fn drain(queue: &SqliteQueue) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let got = queue.receive(10, Duration::ZERO, LONG).await.unwrap();
        if got.is_empty() {
            return bodies;
        }
        let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
        let failed = queue.delete_batch(&handles).await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        bodies.extend(got.into_iter().map(|m| m.body));
    }
}

#[tokio::test]
async fn a_row_that_is_not_utf8_goes_to_the_dead_letter_queue_and_the_rest_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let queue = SqliteQueue::open(&path).unwrap();
    queue.send_batch(&["before".to_owned()]).await.unwrap();
    insert_foreign_row(&path, "foreign-1", b"\xff\xfe not text");
    queue
        .send_batch(&["after-1".to_owned(), "after-2".to_owned()])
        .await
        .unwrap();

    assert_eq!(drain(&queue).await, ["before", "after-1", "after-2"]);
    let dlq = queue.dead_letter_queue();
    assert_eq!(dlq.counts().await.unwrap().visible, 1);
    let held = dlq.receive(10, Duration::ZERO, LONG).await.unwrap();
    assert_eq!(held.len(), 1, "the dead-letter queue still reads it");
    assert_eq!(held[0].message_id, "foreign-1");
    assert!(held[0].body.ends_with(" not text"), "{:?}", held[0].body);
    // The raw bytes are kept as they were, for whoever looks into it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (queue_code, raw): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT queue, CAST(body AS BLOB) FROM sluice_queue_messages WHERE message_id = 'foreign-1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((queue_code, raw.as_slice()), (1, &b"\xff\xfe not text"[..]));
}

#[tokio::test]
async fn sends_stop_at_the_size_limit_while_draining_goes_on_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let limits = Limits {
        max_bytes: 512 * 1024,
        min_free_bytes: 0,
    };
    let queue = SqliteQueue::open_with(&path, limits).unwrap();
    let body = |i: usize| format!("{i:06}-{}", "x".repeat(20_000));
    let mut accepted = Vec::new();
    let refusal = loop {
        let batch = [body(accepted.len())];
        match queue.send_batch(&batch).await {
            Ok(out) => {
                assert!(out.failed.is_empty());
                accepted.push(batch[0].clone());
            }
            Err(e) => break e,
        }
        assert!(accepted.len() < 100, "never refused");
    };
    assert!(refusal.is_full(), "{refusal}");
    assert!(refusal.to_string().contains("QUEUE_MAX_BYTES"), "{refusal}");
    assert!(accepted.len() >= 20, "only {} accepted", accepted.len());
    // Still refused: nothing has been drained.
    assert!(queue.send_batch(&[body(999)]).await.unwrap_err().is_full());

    // Receives and deletes work while full, and free the room.
    assert_eq!(drain(&queue).await, accepted);
    let again = queue.send_batch(&[body(1000)]).await.unwrap();
    assert_eq!(again.sent.len(), 1, "accepted again once drained");
}
