//! The real `sluice-ingest` binary's `/metrics`: every metric has `# HELP`
//! and `# TYPE` (ingest used to describe its metrics before the recorder
//! existed, so none had help), and `promtool check metrics` finds nothing
//! to say.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::*;

#[tokio::test]
async fn every_ingest_metric_is_described_and_promtool_is_satisfied() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-ingest"))
        .env_clear()
        .envs([
            ("QUEUE_URL", queue.url()),
            ("INGEST_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .expect("a start-up log line within 30 s")
            .unwrap()
            .expect("the binary is still running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "ingest listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
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

    for family in [
        "sluice_ingest_requests_total",
        "sluice_ingest_request_seconds",
        "sluice_ingest_events_accepted_total",
        "sluice_ingest_messages_sent_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no help for {family}:\n{text}"
        );
    }
    let missing = sluice_testkit::undescribed_metrics(&text);
    assert!(missing.is_empty(), "without HELP or TYPE: {missing:?}");
    assert!(
        !text.contains("198.51.100.42"),
        "an event value in /metrics"
    );
    let findings = require!(sluice_testkit::promtool_check(&text));
    assert!(
        findings.is_empty(),
        "promtool check metrics: {findings}\n{text}"
    );
}
