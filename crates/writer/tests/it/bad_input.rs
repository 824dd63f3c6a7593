//! Bad input ends in `rejected_records` with a reason; nothing panics and
//! every message is deleted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sluice_core::wire::{Envelope, encode_body};

use crate::helpers::*;

async fn bad_bodies_are_rejected(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let huge = Envelope::new(vec![
        json!({"user_id": "u-huge", "ip": "198.51.100.9", "note": "x".repeat(1 << 20)}),
    ]);
    let bodies = vec![
        "this is not json {".to_owned(),
        "{\"user_id\": \"u\", \"ip\": \"198.51.100.1\"".to_owned(),
        "42".to_owned(),
        "[]".to_owned(),
        // An SQS body is always text; invalid UTF-8 arrives inside the
        // compressed payload.
        encode_body(b"{\"ip\": \"198.51.100.2\", \xff\xfe}"),
        STANDARD.encode(b"plain bytes, not gzip"),
        huge.encode(),
        json!([{"user_id": "u-ok", "ip": "198.51.100.3"}, "scalar"]).to_string(),
    ];
    queue.send(&bodies).await;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue
        .until_empty(Duration::from_secs(60), "every message deleted")
        .await;
    assert_eq!(db.count("user_logins").await, 1);
    let rejected = db.rejected().await;
    let mut reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort_unstable();
    let mut expected = vec![
        "body is neither JSON nor base64",
        "invalid JSON at line 1 column 37",
        "JSON scalar where an object or array was expected",
        "empty JSON array",
        "decompressed body is not valid UTF-8",
        "base64 body is not gzip",
        "element 1 is not a JSON object",
    ];
    expected.sort_unstable();
    let (oversized, rest): (Vec<&str>, Vec<&str>) =
        reasons.into_iter().partition(|r| r.contains("byte limit"));
    assert_eq!(rest, expected);
    assert_eq!(oversized.len(), 1);
    for r in &rejected {
        for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.9"] {
            assert!(
                !r.payload.contains(ip),
                "plaintext ip in a rejected row ({})",
                r.reason
            );
        }
    }
    // Unparseable payloads are encrypted whole and recoverable.
    let broken = rejected
        .iter()
        .find(|r| r.reason.starts_with("invalid JSON"))
        .unwrap();
    assert_eq!(broken.payload_format, "encrypted");
    assert_eq!(
        masker().recover(&broken.payload).unwrap(),
        bodies[1].as_bytes()
    );
    let (status, _) = writer.get("/healthz").await;
    assert_eq!(status, 200);
    writer.stop().await;
}

on_both_queues! {
    bad_input_postgres => bad_bodies_are_rejected("postgres");
    bad_input_sqlite => bad_bodies_are_rejected("sqlite");
}
