//! Property: whatever a queue body holds — bytes, JSON with repeated keys,
//! nested envelopes, odd ids and versions — every record in it either lands
//! or is rejected (landed + rejected = records in the body), and the writer
//! keeps running with nothing dead-lettered.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sluice_core::classify::{Classifier, DEFAULT_MAX_RECORD_BYTES};
use sluice_testkit::bodies::{Body, body};

use crate::helpers::*;

fn classifier() -> Classifier {
    Classifier::new(masker(), DEFAULT_MAX_RECORD_BYTES)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The rows a body becomes, counted without a database.
    #[test]
    fn every_record_becomes_exactly_one_row(b in (0usize..1000).prop_flat_map(body)) {
        let rows = classifier().body_rows(b.text.as_bytes(), "message-id");
        prop_assert_eq!(rows.row_count(), b.records, "body {}", b.text);
        prop_assert!(!rows.key.contains('\0') && rows.key.len() <= 200);
    }

    #[test]
    fn any_bytes_become_at_least_one_row(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let rows = classifier().body_rows(&bytes, "message-id");
        prop_assert!(rows.row_count() >= 1);
        if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            prop_assert_eq!(rows.row_count(), 1);
        }
    }
}

/// The same property through a running writer, on a queue and a database:
/// 30 generated bodies (the same every run), every row counted in the tables.
async fn bodies_land_or_are_rejected(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let mut runner = TestRunner::deterministic();
    let bodies: Vec<Body> = (0..30)
        .map(|n| body(n).new_tree(&mut runner).unwrap().current())
        .collect();
    let expected: usize = bodies.iter().map(|b| b.records).sum();
    let texts: Vec<String> = bodies.iter().map(|b| b.text.clone()).collect();
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue.send(&texts).await;
    queue
        .until_empty(Duration::from_secs(90), "every message deleted")
        .await;
    assert_eq!(queue.dead_letters().await, 0, "nothing dead-lettered");
    let (status, _) = writer.get("/readyz").await;
    assert_eq!(status, 200, "the writer keeps running");
    writer.stop().await;
    let landed = db.rows_of_any_kind().await;
    assert_eq!(
        landed as usize, expected,
        "landed + rejected = records sent"
    );
    let receipts = db
        .text_rows(
            "SELECT CAST(COUNT(*) AS TEXT), CAST(SUM(row_count) AS TEXT) FROM sluice_receipts",
        )
        .await;
    assert_eq!(receipts[0][0].as_deref(), Some("30"), "a receipt per body");
    assert_eq!(receipts[0][1], Some(expected.to_string()));
    let dump = db.dump().await;
    assert!(!dump.contains("198.51.100."), "a plaintext address stored");
}

on_both_queues! {
    body_props_postgres => bodies_land_or_are_rejected("postgres");
    body_props_sqlite => bodies_land_or_are_rejected("sqlite");
}

/// The generated bodies through the real binary, debug logging on: every
/// record accounted for, and no address from them in any log line.
async fn bodies_through_the_binary_log_no_pii(backend: Backend) {
    use crate::binary::{drain, sigterm, writer};
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::Sqlite(dir.path().join("p.db"));
    let mut runner = TestRunner::deterministic();
    let bodies: Vec<Body> = (100..130)
        .map(|n| body(n).new_tree(&mut runner).unwrap().current())
        .collect();
    let expected: i64 = bodies.iter().map(|b| b.records as i64).sum();
    let texts: Vec<String> = bodies.iter().map(|b| b.text.clone()).collect();
    queue.send(&texts).await;
    let env = queue.serve_env(
        db.url_string(),
        &[("WRITER_LINGER_MS", "50"), ("RUST_LOG", "debug")],
    );
    let mut child = writer(dir.path(), &env, &[]).spawn().unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    queue
        .until_empty(Duration::from_secs(90), "every message deleted")
        .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the writer keeps running"
    );
    sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    let logs = format!("{}{}", stdout.await.unwrap(), stderr.await.unwrap());
    assert!(status.success(), "{logs}");
    assert_eq!(queue.dead_letters().await, 0, "nothing dead-lettered");
    let landed = db.rows_of_any_kind().await;
    assert_eq!(landed, expected, "landed + rejected = records sent");
    if let Some(line) = logs.lines().find(|l| l.contains("198.51.100.")) {
        panic!("a plaintext address in the logs: {line}");
    }
}

sluice_testkit::cases! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    sqs_bodies_through_the_binary_log_no_pii => bodies_through_the_binary_log_no_pii(Backend::Sqs);
    embedded_bodies_through_the_binary_log_no_pii => bodies_through_the_binary_log_no_pii(Backend::Embedded);
}
