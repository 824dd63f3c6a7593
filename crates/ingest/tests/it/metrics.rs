//! The real `sluice-ingest` binary's `/metrics`: every metric has `# HELP`
//! and `# TYPE` (ingest used to describe its metrics before the recorder
//! existed, so none had help), and `promtool check metrics` finds nothing
//! to say.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sluice_testkit::process::{log_lines, logged_address};

use crate::binary::ingest;
use crate::helpers::*;

#[tokio::test]
async fn every_ingest_metric_is_described_and_promtool_is_satisfied() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("QUEUE_URL", queue.url().to_owned()),
        ("INGEST_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut child = ingest(dir.path(), &env).spawn().unwrap();
    let mut stderr = log_lines(child.stderr.take().unwrap());
    let addr = logged_address(&mut stderr, "ingest listening", &mut String::new()).await;
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
