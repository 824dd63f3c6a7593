//! Delivery: the fixture lands masked, once, on both databases; redelivered
//! and duplicated messages land once; shutdown leaves nothing held.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::records::WriteBatch;
use sluice_writer::consumer::to_delivery;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

/// The acceptance check for one database kind.
async fn fixture_lands(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    // One record per message, as the producer the fixture comes from sends.
    let bodies: Vec<String> = login_fixture().iter().map(Value::to_string).collect();
    queue.send(&bodies).await;

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    eventually(WAIT, "99 logins and 1 rejected record", || async {
        db.count("user_logins").await == 99 && db.count("rejected_records").await == 1
    })
    .await;
    queue.until_empty(WAIT, "every message deleted").await;

    let logins = db.logins().await;
    assert_eq!(logins.len(), 99);
    let today = chrono::Utc::now().date_naive().to_string();
    let by_user = |id: &str| logins.iter().find(|l| l.user_id == id).unwrap().clone();
    let first = by_user("424cdd21-063a-43a7-b91b-7ca1a833afae");
    assert_eq!(first.app_version, Some(2_003_000));
    assert_eq!(first.device_type.as_deref(), Some("android"));
    assert_eq!(first.locale.as_deref(), Some("RU"));
    assert_eq!(first.create_date.as_deref(), Some(today.as_str()));
    assert_eq!(
        by_user("181452ad-20c3-4e93-86ad-1934c9248903").app_version,
        Some(96_000)
    );
    assert_eq!(
        by_user("5082b1ae-6523-4e3b-a1d8-9750b4407ee8").app_version,
        Some(3_007_000)
    );
    assert_eq!(by_user("66e0635b-ce36-4ec7-aa9e-8a8fca9b83d4").locale, None);

    // Masked, and recoverable with the key.
    let m = masker();
    let ip = first.masked_ip.clone().unwrap();
    assert!(ip.starts_with("enc:"), "{ip}");
    assert_eq!(m.recover(&ip).unwrap(), b"199.172.111.135");
    assert_eq!(
        m.recover(first.masked_device_id.as_deref().unwrap())
            .unwrap(),
        b"593-47-5928"
    );

    let rejected = db.rejected().await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, "unrecognized record shape");
    assert_eq!(rejected[0].payload_format, "masked_json");
    assert!(rejected[0].payload.contains("oops_wrong_msg_type"));

    // Two records sharing an ip mask alike; a version that does not parse is NULL.
    let same_ip = [
        json!({"user_id": "same-ip-1", "ip": "203.0.113.77", "device_id": "d-1", "app_version": "beta"}),
        json!({"user_id": "same-ip-2", "ip": "203.0.113.77", "device_id": "d-2", "app_version": "2.x"}),
    ];
    queue
        .send(&same_ip.iter().map(Value::to_string).collect::<Vec<_>>())
        .await;
    db.until_rows("user_logins", 101, WAIT, "the two extra logins")
        .await;
    let logins = db.logins().await;
    let a = logins.iter().find(|l| l.user_id == "same-ip-1").unwrap();
    let b = logins.iter().find(|l| l.user_id == "same-ip-2").unwrap();
    assert_eq!(a.masked_ip, b.masked_ip);
    assert_ne!(a.masked_device_id, b.masked_device_id);
    assert_eq!((a.app_version, b.app_version), (None, None));

    // No plaintext ip or device id anywhere in the database.
    let dump = db.dump().await;
    for pii in fixture_pii().iter().chain([&"203.0.113.77".to_owned()]) {
        assert!(
            !dump.contains(pii.as_str()),
            "plaintext PII found in the database"
        );
    }

    assert!(writer.metric("sluice_writer_messages_received_total").await >= 102.0);
    let (status, _) = writer.get("/readyz").await;
    assert_eq!(status, 200);
    writer.stop().await;
}

/// `user_logins` created beforehand with its plain DDL (README, "Records and tables").
async fn works_with_preexisting_table(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    db.execute(
        "CREATE TABLE user_logins (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), \
         masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)",
    )
    .await;
    queue
        .send(&envelope_bodies(&generated_logins(50, "pre"), 25))
        .await;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    db.until_rows("user_logins", 50, WAIT, "50 rows in the pre-created table")
        .await;
    writer.stop().await;
}

/// A message committed but never deleted (the writer died in between) comes
/// back after its visibility timeout; its rows appear once.
async fn redelivered_message_lands_once(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let records = generated_logins(30, "redeliver");
    queue.send(&envelope_bodies(&records[..20], 20)).await;
    queue
        .send(
            &records[20..]
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>(),
        )
        .await;

    // Do what a writer does up to the commit, then "crash": no delete.
    let sink = db.sink().await;
    let classifier = sluice_core::classify::Classifier::new(masker(), 65_536);
    let mut held = Vec::new();
    while held.len() < 11 {
        held.extend(
            queue
                .queue
                .receive(10, Duration::from_secs(1), Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    let batch = WriteBatch {
        written_on: chrono::Utc::now().date_naive(),
        messages: held
            .iter()
            .map(|m| to_delivery(&classifier, m.clone()).rows)
            .collect(),
    };
    sink.write(&batch).await.unwrap();
    assert_eq!(db.count("user_logins").await, 30);

    // The visibility timeout passes; a writer receives them all again.
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue
        .until_empty(WAIT, "the redelivered messages deleted")
        .await;
    eventually(WAIT, "11 duplicates counted", || async {
        writer
            .metric("sluice_writer_duplicate_messages_total")
            .await
            >= 11.0
    })
    .await;
    assert_eq!(db.count("user_logins").await, 30);
    assert_eq!(db.count("sluice_receipts").await, 11);
    writer.stop().await;
}

/// The same envelope sent twice (a producer retried a send that had
/// succeeded) is two queue messages with one envelope id: rows land once.
async fn duplicate_envelope_lands_once(backend: Backend) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    let body = envelope_bodies(&generated_logins(40, "dup"), 40).remove(0);
    queue.send(&[body.clone(), body.clone()]).await;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue.until_empty(WAIT, "both copies deleted").await;
    queue.send(&[body]).await;
    queue.until_empty(WAIT, "the third copy deleted").await;
    assert_eq!(db.count("user_logins").await, 40);
    assert_eq!(db.count("sluice_receipts").await, 1);
    writer.stop().await;
}

/// A batch held past the visibility timeout (the database is slow) stays
/// hidden: no second writer gets it and it is written once.
async fn slow_batch_keeps_its_messages_hidden(backend: Backend) {
    let queue = require!(TestQueue::new(backend, 3).await);
    let admin = require!(service("SLUICE_TEST_DATABASE_URL"));
    let db = TestDb::Postgres(fresh_postgres(&admin).await);
    let _ = db.sink().await;

    // Hold a lock that blocks the writer's receipt insert.
    let TestDb::Postgres(url) = &db else {
        unreachable!()
    };
    let mut blocker = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE sluice_receipts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();

    let tuning = sluice_writer::configuration::Tuning {
        visibility: std::time::Duration::from_secs(3),
        ..test_tuning()
    };
    let first = RunningWriter::start(queue.shared(), &db, tuning.clone()).await;
    let second = RunningWriter::start(queue.shared(), &db, tuning).await;
    queue
        .send(&envelope_bodies(&generated_logins(10, "slow"), 10))
        .await;
    eventually(WAIT, "the message received", || async {
        first.metric("sluice_writer_messages_received_total").await
            + second.metric("sluice_writer_messages_received_total").await
            >= 1.0
    })
    .await;
    // Three visibility timeouts pass while the batch is blocked.
    eventually(WAIT, "the lease extended twice", || async {
        first
            .metric("sluice_writer_visibility_extensions_total")
            .await
            + second
                .metric("sluice_writer_visibility_extensions_total")
                .await
            >= 3.0
    })
    .await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    queue.until_empty(WAIT, "the message deleted").await;
    assert_eq!(db.count("user_logins").await, 10);
    // Metrics are process-wide; the receipt count is the exact check.
    assert_eq!(db.count("sluice_receipts").await, 1);
    first.stop().await;
    second.stop().await;
}

/// On shutdown the writer commits and deletes what it holds and returns.
async fn graceful_shutdown_leaves_nothing_in_flight(backend: Backend) {
    let queue = require!(TestQueue::new(backend, 60).await);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    queue
        .send(&envelope_bodies(&generated_logins(2_000, "stop"), 100))
        .await;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    eventually(WAIT, "some rows written", || async {
        db.count("user_logins").await > 0
    })
    .await;
    writer.stop().await;
    // Whatever was received is committed and deleted, or released: nothing
    // is left invisible, and what was committed is not in the queue.
    let (visible, in_flight) = queue.counts().await;
    let written = db.count("user_logins").await as u64;
    assert_eq!(in_flight, 0, "messages left in flight after shutdown");
    assert_eq!(written % 100, 0);
    assert_eq!(visible, 20 - written / 100);
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    db.until_rows("user_logins", 2_000, WAIT, "the rest written")
        .await;
    writer.stop().await;
}

on_both_queues! {
    fixture_lands_in_postgres => fixture_lands("postgres");
    fixture_lands_in_sqlite => fixture_lands("sqlite");
    preexisting_table_postgres => works_with_preexisting_table("postgres");
    preexisting_table_sqlite => works_with_preexisting_table("sqlite");
    redelivery_postgres => redelivered_message_lands_once("postgres");
    redelivery_sqlite => redelivered_message_lands_once("sqlite");
    duplicate_envelope => duplicate_envelope_lands_once();
    slow_batch_stays_hidden => slow_batch_keeps_its_messages_hidden();
    graceful_shutdown => graceful_shutdown_leaves_nothing_in_flight();
}
