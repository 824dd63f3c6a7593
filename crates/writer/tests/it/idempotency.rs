//! `Idempotency-Key` end to end: ingest → queue → writer → database. A keyed
//! request's events are stored once however often it is sent, including
//! after a 503 that came when part of it was already queued.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::classify::{Classifier, DEFAULT_MAX_RECORD_BYTES};
use sluice_core::idempotency::{Runs, identity_key};
use sluice_core::records::{MessageRows, WriteBatch};
use sluice_core::wire::{Envelope, KeySpan};
use sluice_ingest::batcher::BatchSettings;
use sluice_ingest::configuration::Settings;

use crate::helpers::*;
use crate::pipeline::{OwnFauxqs, RunningIngest, pipeline, post};

const WAIT: Duration = Duration::from_secs(90);

fn logins(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"user_id": format!("{tag}-{i}"), "ip": format!("10.7.{}.{}", i / 256 % 256, i % 256),
            "device_type": "ios", "locale": "fr_FR", "app_version": "2.3.0"}))
        .collect()
}

/// Waits until the database holds `logins` logins and the queue is empty,
/// then checks nothing more arrives with it.
async fn settled(db: &TestDb, queue: &TestQueue, logins: i64) {
    eventually(WAIT, &format!("{logins} logins, queue drained"), || async {
        db.count("user_logins").await >= logins && queue.remaining().await == 0
    })
    .await;
    assert_eq!(db.count("user_logins").await, logins);
}

/// The same keyed request twice → once; another key → once more; no key →
/// every time (today's behaviour).
async fn keyed_requests_land_once(backend: Backend, kind: &str) {
    let (queue, _dir, db, writer, ingest, client) = require!(pipeline(backend, kind).await);
    let body = Value::Array(logins("idem", 5)).to_string().into_bytes();
    let key = [("idempotency-key", "order-42 / attempt ~ 1")];

    for _ in 0..2 {
        let (status, answer) = post(&client, &ingest.url(), body.clone(), &key).await;
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(5)));
    }
    settled(&db, &queue, 5).await;

    // A second key, concurrently with the first one again: once more.
    let other = [("idempotency-key", "order-43")];
    let url = ingest.url();
    let (a, b) = tokio::join!(
        post(&client, &url, body.clone(), &key),
        post(&client, &url, body.clone(), &other),
    );
    assert_eq!((a.0, b.0), (202, 202));
    settled(&db, &queue, 10).await;

    // Without a key, a repeat is new data.
    for _ in 0..2 {
        let (status, _) = post(&client, &ingest.url(), body.clone(), &[]).await;
        assert_eq!(status, 202);
    }
    settled(&db, &queue, 20).await;
    // Stored as hashes: the key itself is nowhere in the database.
    let dump = db.dump().await;
    assert!(!dump.contains("order-42"), "the key in plaintext");
    // Ten identities: events 0..5 of each of the two keys, a row per key.
    assert_eq!(db.count("sluice_idempotency").await, 2);
    let runs = db
        .text_rows("SELECT CAST(events AS TEXT) FROM sluice_idempotency")
        .await;
    assert_eq!(runs, vec![vec![Some("{[0,5)}".to_owned())]; 2]);

    ingest.stop().await;
    writer.stop().await;
}

on_both_queues! {
    keyed_requests_land_once_sqlite => keyed_requests_land_once("sqlite");
    keyed_requests_land_once_postgres => keyed_requests_land_once("postgres");
}

/// A keyed request answered 503 after part of it was queued (the queue
/// frozen mid-request), retried once the queue is back: every login once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_partial_enqueue_lands_once() {
    let (fauxqs, _dir, db, queue) = require!(OwnFauxqs::with_queue_and_sqlite().await);
    // Small messages, one call at a time: the request takes many calls, so
    // the queue can be frozen between them.
    let settings = Settings {
        batch: BatchSettings {
            enqueue_timeout: Duration::from_secs(3),
            max_message_bytes: 1024,
            send_concurrency: 1,
            ..BatchSettings::default()
        },
        ..Settings::default()
    };
    let ingest = RunningIngest::start(queue.shared(), settings).await;
    let client = reqwest::Client::new();
    const N: usize = 20_000;
    let body = Value::Array(logins("partial", N)).to_string().into_bytes();
    let key = [("idempotency-key", "partial-1")];

    let first = {
        let (client, url, body) = (client.clone(), ingest.url(), body.clone());
        tokio::spawn(async move { post(&client, &url, body, &key).await })
    };
    eventually(WAIT, "part of the request queued", || async {
        queue.counts().await.0 > 0
    })
    .await;
    fauxqs.signal("-STOP");
    let (status, answer) = first.await.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "queue_unavailable");
    fauxqs.signal("-CONT");

    let queued_before_retry = queue.counts().await.0;
    assert!(queued_before_retry > 0);
    let (status, answer) = post(&client, &ingest.url(), body, &key).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(N as u64)));

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    settled(&db, &queue, N as i64).await;
    ingest.stop().await;
    writer.stop().await;
}

/// Identities older than the retention are purged by the writer's purge;
/// a retry after that is new data.
async fn purged_keys_are_new_data(kind: &str) {
    let (queue, _dir, db, writer, ingest, client) =
        require!(pipeline(Backend::Embedded, kind).await);
    let body = Value::Array(logins("purge", 3)).to_string().into_bytes();
    let key = [("idempotency-key", "purge-me")];
    let (status, _) = post(&client, &ingest.url(), body.clone(), &key).await;
    assert_eq!(status, 202);
    settled(&db, &queue, 3).await;

    let sink = db.sink().await;
    let retention = Duration::from_secs(72 * 3600);
    assert_eq!(
        sluice_writer::purge::once(sink.as_ref(), retention)
            .await
            .unwrap(),
        0
    );
    // Make the claims 73 hours old.
    db.execute(match kind {
        "postgres" => "UPDATE sluice_idempotency SET seen_at = now() - interval '73 hours'",
        _ => "UPDATE sluice_idempotency SET seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-73 hours')",
    })
    .await;
    assert_eq!(
        sluice_writer::purge::once(sink.as_ref(), retention)
            .await
            .unwrap(),
        3
    );
    assert_eq!(db.count("sluice_idempotency").await, 0);

    let (status, _) = post(&client, &ingest.url(), body, &key).await;
    assert_eq!(status, 202);
    settled(&db, &queue, 6).await;
    ingest.stop().await;
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_keys_are_new_data_sqlite() {
    purged_keys_are_new_data("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_keys_are_new_data_postgres() {
    purged_keys_are_new_data("postgres").await;
}

// ---------------------------------------------------------------- claims as runs

/// `requests` keyed requests of logins, packed into one
/// message per split: events `[a, b)` of every request, for each `(a, b)`
/// of `splits` (how one delivery of the requests happened to be cut).
fn split_requests(tag: &str, requests: usize, splits: &[(usize, usize)]) -> Vec<MessageRows> {
    let classifier = Classifier::new(masker(), DEFAULT_MAX_RECORD_BYTES);
    splits
        .iter()
        .map(|&(a, b)| {
            let mut events = Vec::new();
            let mut spans = Vec::new();
            for r in 0..requests {
                let key = identity_key(format!("{tag}-{r}").as_bytes());
                spans.push(KeySpan(events.len(), key, a as u64, b - a));
                events.extend(
                    (a..b).map(|i| json!({"user_id": format!("{tag}-{r}-{i}"), "ip": "10.0.0.1"})),
                );
            }
            let mut envelope = Envelope::new(events);
            envelope.idempotency = spans;
            classifier.body_rows(envelope.encode().as_bytes(), "m")
        })
        .collect()
}

fn batch(messages: Vec<MessageRows>) -> WriteBatch {
    WriteBatch {
        written_on: chrono::Utc::now().date_naive(),
        messages,
    }
}

/// Two writers store the same keyed requests at the same moment, each cut
/// differently into messages (a retry packs events anew), over several
/// rounds: every login lands once, whoever wins each key.
async fn concurrent_writers_split_differently(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let (a, b) = (db.sink().await, db.sink().await);
    const REQUESTS: usize = 20;
    for round in 0..5 {
        let tag = format!("round{round}");
        let first = batch(split_requests(&tag, REQUESTS, &[(0, 37), (37, 100)]));
        let mut second = split_requests(&tag, REQUESTS, &[(50, 100), (0, 50), (20, 60)]);
        // A message of its own whose receipt differs: not a redelivery.
        for (n, m) in second.iter_mut().enumerate() {
            m.key = format!("{tag}-second-{n}");
        }
        let second = batch(second);
        let (x, y) = tokio::join!(a.write(&first), b.write(&second));
        let written = x.unwrap().logins_written + y.unwrap().logins_written;
        assert_eq!(written, (REQUESTS * 100) as u64, "round {round}");
    }
    assert_eq!(db.count("user_logins").await, 5 * REQUESTS as i64 * 100);
    let distinct = db
        .text_rows("SELECT CAST(COUNT(DISTINCT user_id) AS TEXT) FROM user_logins")
        .await;
    assert_eq!(distinct, vec![vec![Some((5 * REQUESTS * 100).to_string())]]);
    let runs = db
        .text_rows("SELECT DISTINCT CAST(events AS TEXT) FROM sluice_idempotency")
        .await;
    assert_eq!(runs, vec![vec![Some("{[0,100)}".to_owned())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_split_differently_sqlite() {
    concurrent_writers_split_differently("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_split_differently_postgres() {
    concurrent_writers_split_differently("postgres").await;
}

/// Migration 0004 moves the per-event claims of 0003 into runs, so a retry
/// of a request stored before the upgrade is still caught.
async fn per_event_claims_move_into_runs(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let (v3, v4, ago) = if kind == "postgres" {
        (
            include_str!("../../../../migrations/postgres/0003_idempotency.sql"),
            include_str!("../../../../migrations/postgres/0004_idempotency_runs.sql"),
            "now() - interval '1 hour'",
        )
    } else {
        (
            include_str!("../../../../migrations/sqlite/0003_idempotency.sql"),
            include_str!("../../../../migrations/sqlite/0004_idempotency_runs.sql"),
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')",
        )
    };
    db.execute(v3).await;
    db.execute(&format!(
        "INSERT INTO sluice_idempotency (key, event_index, seen_at) VALUES \
         ('k', 0, {ago}), ('k', 1, {ago}), ('k', 2, {ago}), ('k', 7, {ago}), ('j', 5, {ago})"
    ))
    .await;
    db.execute(v4).await;
    let runs = db
        .text_rows("SELECT key, CAST(events AS TEXT) FROM sluice_idempotency ORDER BY key")
        .await;
    let runs: Vec<(String, Runs)> = runs
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                Runs::parse(r[1].as_deref().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            ("j".to_owned(), Runs::from_ranges(vec![(5, 6)])),
            ("k".to_owned(), Runs::from_ranges(vec![(0, 3), (7, 8)])),
        ]
    );
}

#[tokio::test]
async fn per_event_claims_move_into_runs_sqlite() {
    per_event_claims_move_into_runs("sqlite").await;
}

#[tokio::test]
async fn per_event_claims_move_into_runs_postgres() {
    per_event_claims_move_into_runs("postgres").await;
}
