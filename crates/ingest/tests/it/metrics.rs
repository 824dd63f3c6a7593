//! The real `sluice-ingest` binary's `/metrics`: every metric has `# HELP`
//! and `# TYPE` (ingest used to describe its metrics before the recorder
//! existed, so none had help), and `promtool check metrics` finds nothing
//! to say.
#![allow(clippy::unwrap_used)]

use crate::binary::{Started, start_ingest};
use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn every_ingest_metric_is_described_and_promtool_is_satisfied() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("QUEUE_URL", queue.url().to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    // The log pipe stays open (held, unread) while the binary runs.
    let Started {
        mut child,
        addr,
        stderr: _stderr,
        ..
    } = start_ingest(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let events = format!("http://{addr}/events");
    // One accepted request and one refused: requests, events, messages,
    // bytes and queue calls all get counted.
    let ok = client
        .post(&events)
        .json(&json!([{"user_id": "m", "ip": "198.51.100.42"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let bad = client.post(&events).body("{").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.kill().await.unwrap();

    sluice_testkit::metrics::assert_exposition_is_clean(
        &text,
        &[
            "sluice_ingest_requests_total",
            "sluice_ingest_request_seconds",
            "sluice_ingest_events_accepted_total",
            "sluice_ingest_messages_sent_total",
        ],
        "198.51.100.42",
    );
}
