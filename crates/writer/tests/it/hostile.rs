//! Hostile queue bodies, as a producer writing straight to the queue could
//! send them: every record either lands or is rejected with a reason,
//! nothing is loaded partly, no message goes to the dead-letter queue, and
//! no plaintext PII is stored. On both queues and both databases.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::wire::encode_body;
use sluice_writer::configuration::Tuning;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(90);

fn login(user: &str, ip: &str) -> Value {
    json!({"user_id": user, "ip": ip, "device_id": format!("dev-{ip}")})
}

/// Sends `rounds` one after the other to a writer, each drained before the
/// next is sent (so a repeat in a later round meets a committed receipt),
/// and checks what must hold after any body: the queue and its dead-letter
/// queue are empty and the writer still answers.
async fn drain_rounds(queue: &TestQueue, db: &TestDb, tuning: Tuning, rounds: &[Vec<String>]) {
    let writer = RunningWriter::start(queue.shared(), db, tuning).await;
    for bodies in rounds {
        queue.send(bodies).await;
        queue.until_empty(WAIT, "every message deleted").await;
    }
    assert_eq!(queue.dead_letters().await, 0, "nothing dead-lettered");
    let (status, _) = writer.get("/healthz").await;
    assert_eq!(status, 200);
    writer.stop().await;
}

async fn assert_no_plaintext(db: &TestDb, secrets: &[&str]) {
    let dump = db.dump().await;
    for secret in secrets {
        assert!(!dump.contains(secret), "plaintext {secret} stored");
    }
}

/// The user ids of the stored logins, in order.
async fn user_ids(db: &TestDb) -> Vec<String> {
    db.logins()
        .await
        .into_iter()
        .map(|l| l.row.user_id)
        .collect()
}

fn reasons(rejected: &[RejectedOut]) -> Vec<String> {
    let mut reasons: Vec<String> = rejected.iter().map(|r| r.reason.clone()).collect();
    reasons.sort_unstable();
    reasons
}

/// Issue 9, item 1: `{"events":[A],"events":[B]}` used to load B and drop A.
async fn repeated_structural_keys_reject_the_body_whole(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let (a, b, c) = (
        login("rk-a", "198.51.100.61"),
        login("rk-b", "198.51.100.62"),
        login("rk-c", "198.51.100.63"),
    );
    let repeated_events = format!(r#"{{"v":1,"events":[{a}],"events":[{b},{c}]}}"#);
    let repeated_id = format!(r#"{{"v":1,"id":"x1","id":"x2","events":[{a}]}}"#);
    let repeated_v = format!(r#"{{"v":1,"v":1,"id":"x3","events":[{b}]}}"#);
    let bodies = vec![
        repeated_events.clone(),
        encode_body(repeated_events.as_bytes()),
        repeated_id.clone(),
        encode_body(repeated_id.as_bytes()),
        repeated_v,
    ];
    drain_rounds(&queue, &db, test_tuning(), &[bodies]).await;
    assert_eq!(db.count("user_logins").await, 0, "nothing loaded partly");
    let rejected = db.rejected().await;
    let events = "envelope has a repeated \"events\" key";
    let id = "envelope has a repeated \"id\" key";
    let v = "envelope has a repeated \"v\" key";
    let mut expected = [vec![events; 6], vec![id; 2], vec![v]].concat();
    expected.sort_unstable();
    assert_eq!(reasons(&rejected), expected);
    // Each rejected event is its masked record, so it can be replayed.
    for r in &rejected {
        assert_eq!(r.payload_format, "masked_json");
        let record: Value = serde_json::from_str(&r.payload).unwrap();
        assert!(record["user_id"].as_str().unwrap().starts_with("rk-"));
    }
    // A receipt per message, counting every record it held.
    let total: Vec<Vec<Option<String>>> = db
        .text_rows("SELECT CAST(SUM(row_count) AS TEXT) FROM sluice_receipts")
        .await;
    assert_eq!(total[0][0].as_deref(), Some("9"));
    assert_no_plaintext(&db, &["198.51.100.61", "198.51.100.62", "198.51.100.63"]).await;
}

/// Issue 9, item 6: `{"v": 2, …}` or `{"v": "x", …}` used to load as v1.
async fn unknown_versions_are_rejected(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let bodies: Vec<String> = [json!(2), json!("x"), json!(1.5), Value::Null]
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let body = json!({"v": v, "id": format!("uv-{i}"),
                "events": [login(&format!("uv-{i}"), "198.51.100.71")]});
            encode_body(body.to_string().as_bytes())
        })
        .chain([
            // No `v`, as TUNE's own deliveries: read.
            encode_body(
                json!({"events": [login("uv-none", "198.51.100.72")]})
                    .to_string()
                    .as_bytes(),
            ),
            json!({"v": 1, "id": "uv-one", "events": [login("uv-one", "198.51.100.73")]})
                .to_string(),
        ])
        .collect();
    drain_rounds(&queue, &db, test_tuning(), &[bodies]).await;
    assert_eq!(user_ids(&db).await, ["uv-none", "uv-one"]);
    assert_eq!(
        reasons(&db.rejected().await),
        vec!["unknown envelope version (this writer reads \"v\": 1)"; 4]
    );
    assert_no_plaintext(&db, &["198.51.100.71", "198.51.100.72", "198.51.100.73"]).await;
}

/// Issue 9, item 2: an envelope id PostgreSQL cannot store (a NUL) used to
/// fail the receipt insert and send a good login to the dead-letter queue;
/// one over 200 bytes fell back to the message id, so a resent envelope
/// landed twice. Both now land once, however often they are delivered.
async fn unstorable_envelope_ids_land_once(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let ids = [
        "nul\u{0}id".to_owned(),
        "k".repeat(300),
        "x".repeat(4000),
        "ctl\u{1}\u{7f}".to_owned(),
    ];
    let bodies: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let body = json!({"v": 1, "id": id,
                "events": [login(&format!("ki-{i}"), &format!("198.51.100.{}", 80 + i)),
                           {"not": "a login"}]});
            encode_body(body.to_string().as_bytes())
        })
        .collect();
    // The same envelopes again, as a producer's retry would send them.
    drain_rounds(&queue, &db, test_tuning(), &[bodies.clone(), bodies]).await;
    assert_eq!(user_ids(&db).await, ["ki-0", "ki-1", "ki-2", "ki-3"]);
    assert_eq!(db.count("rejected_records").await, 4);
    let keys: Vec<String> = db
        .text_rows("SELECT message_key FROM sluice_receipts")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 4);
    for key in &keys {
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key:?}");
    }
    for r in db.rejected().await {
        assert!(keys.contains(&r.message_key));
    }
    assert_no_plaintext(
        &db,
        &[
            "198.51.100.80",
            "198.51.100.81",
            "198.51.100.82",
            "198.51.100.83",
        ],
    )
    .await;
}

/// Issue 9, item 3: a base64+gzip body of spaces used to become a rejected
/// row a thousand times its size. Now the compressed original is kept (and
/// recovers exactly); what is still over the bound keeps a prefix, with the
/// full size and a SHA-256 in the reason.
async fn rejected_payloads_are_bounded(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let max = 64 * 1024;
    // ~2 MiB expanded (32 times the bound), ~27 KB on the queue: zlib-rs's
    // fastest level, which the envelope uses, codes with fixed Huffman
    // tables, so a run of spaces compresses ~100:1, not a thousand.
    let spaces = encode_body(&vec![b' '; 2 << 20]);
    let bad_utf8 =
        encode_body(&[b"{\"ip\": \"198.51.100.91\"".as_slice(), &[0xff; 1 << 20]].concat());
    // Neither JSON nor base64, and larger than the bound.
    let junk = format!("198.51.100.92 {}", "junk ".repeat(40_000));
    let big_record = json!([{"user_id": "br", "ip": "198.51.100.93", "note": "n".repeat(200_000)}]);
    let bodies = vec![
        spaces.clone(),
        bad_utf8.clone(),
        junk.clone(),
        big_record.to_string(),
    ];
    let tuning = Tuning {
        max_rejected_bytes: max,
        ..test_tuning()
    };
    drain_rounds(&queue, &db, tuning, &[bodies]).await;
    let rejected = db.rejected().await;
    assert_eq!(rejected.len(), 4);
    let mut cut = 0;
    for r in &rejected {
        assert!(
            r.payload.len() <= max,
            "{} bytes for {}",
            r.payload.len(),
            r.reason
        );
        if r.reason.contains("payload cut to its first") {
            cut += 1;
            assert!(r.reason.contains("sha256 of the whole "), "{}", r.reason);
        }
    }
    assert_eq!(
        cut,
        2,
        "the junk body and the big record are cut: {:?}",
        reasons(&rejected)
    );
    let by_reason = |start: &str| {
        rejected
            .iter()
            .find(|r| r.reason.starts_with(start))
            .unwrap()
    };
    let recover = |r: &RejectedOut| masker().recover(&r.payload).unwrap();
    // Compressed bodies are kept as they came, whole.
    assert_eq!(recover(by_reason("invalid JSON")), spaces.as_bytes());
    assert_eq!(
        recover(by_reason("decompressed body is not valid UTF-8")),
        bad_utf8.as_bytes()
    );
    let junk_row = by_reason("body is neither JSON nor base64");
    assert!(
        junk_row
            .reason
            .contains(&format!("of {} bytes", junk.len()))
    );
    assert!(junk.as_bytes().starts_with(&recover(junk_row)));
    assert!(by_reason("record of about").payload.starts_with('{'));
    assert_no_plaintext(&db, &["198.51.100.91", "198.51.100.92", "198.51.100.93"]).await;
}

on_both_queues! {
    repeated_keys_postgres => repeated_structural_keys_reject_the_body_whole("postgres");
    repeated_keys_sqlite => repeated_structural_keys_reject_the_body_whole("sqlite");
    unknown_version_postgres => unknown_versions_are_rejected("postgres");
    unknown_version_sqlite => unknown_versions_are_rejected("sqlite");
    unstorable_ids_postgres => unstorable_envelope_ids_land_once("postgres");
    unstorable_ids_sqlite => unstorable_envelope_ids_land_once("sqlite");
    bounded_rejected_postgres => rejected_payloads_are_bounded("postgres");
    bounded_rejected_sqlite => rejected_payloads_are_bounded("sqlite");
}
