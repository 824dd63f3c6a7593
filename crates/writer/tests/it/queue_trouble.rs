//! The embedded queue in trouble another program caused: a row that is not
//! UTF-8 is quarantined and the messages behind it land; receives that keep
//! failing make `/readyz` 503 until they pass again.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

fn queue_file(queue: &TestQueue) -> PathBuf {
    PathBuf::from(queue.url().strip_prefix("sqlite://").unwrap())
}

fn open(queue: &TestQueue) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(queue_file(queue)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_is_not_utf8_is_dead_lettered_and_the_messages_behind_it_land() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    // Written first, so it is the oldest: every receive meets it.
    open(&queue)
        .execute(
            "INSERT INTO sluice_queue_messages (queue, visible_at, message_id, sent_at, body)
             VALUES (0, 0, 'not-utf8', 0, CAST(x'7b226576656e7473223aff5d7d' AS TEXT))",
            [],
        )
        .unwrap();
    let records = generated_logins(30, "behind");
    queue.send(&envelope_bodies(&records, 10)).await;

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    eventually(WAIT, "the good messages land", || {
        let db = db.clone();
        async move { db.count("user_logins").await == 30 }
    })
    .await;
    eventually(
        WAIT,
        "the queue is empty but for the quarantined row",
        || {
            let queue = &queue;
            async move { queue.remaining().await == 0 && queue.dead_letters().await == 1 }
        },
    )
    .await;
    let (status, _) = writer.get("/readyz").await;
    assert_eq!(status, 200);
    writer.stop().await;
    let held: i64 = open(&queue)
        .query_row(
            "SELECT queue FROM sluice_queue_messages WHERE message_id = 'not-utf8'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(held, 1, "the bad row is in the dead-letter queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_that_keep_failing_make_readyz_503_until_they_pass() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    queue
        .send(&envelope_bodies(&generated_logins(10, "stuck"), 10))
        .await;
    // Every receive updates the rows it takes; this makes each one fail,
    // while counting the queue (what a ping does) still works.
    let conn = open(&queue);
    conn.execute_batch(
        "CREATE TRIGGER test_block BEFORE UPDATE ON sluice_queue_messages
         BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END;",
    )
    .unwrap();

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    let (_, said) = poll_until(
        WAIT,
        "/readyz to answer 503 while every receive fails",
        || writer.get("/readyz"),
        |(status, _)| *status == 503,
    )
    .await;
    assert!(said.contains("receives failed"), "{said}");
    assert!(said.contains("blocked by the test"), "{said}");
    assert_eq!(db.count("user_logins").await, 0);

    conn.execute_batch("DROP TRIGGER test_block").unwrap();
    eventually(WAIT, "the messages land once receives pass", || {
        let db = db.clone();
        async move { db.count("user_logins").await == 10 }
    })
    .await;
    eventually(WAIT, "/readyz 200 again", || {
        let get = writer.get("/readyz");
        async move { get.await.0 == 200 }
    })
    .await;
    writer.stop().await;
    assert_eq!(queue.dead_letters().await, 0);
}
