//! The real `sluice-writer` binary's `/metrics`: every metric has `# HELP`
//! and `# TYPE`, and `promtool check metrics` finds nothing to say.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use sluice_core::wire::Envelope;

use crate::binary::{drain, sigterm, writer};
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writer_metric_is_described_and_promtool_is_satisfied() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::Sqlite(dir.path().join("m.db"));
    let port = sluice_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = queue.serve_env(
        db.url_string(),
        &[
            ("WRITER_ADDR", addr.as_str()),
            ("WRITER_LINGER_MS", "50"),
            ("RUST_LOG", "warn"),
        ],
    );
    // A login, a rejected record, and the same envelope twice (a duplicate):
    // rows, rejections, duplicates and deletes all get counted.
    let envelope = Envelope::new(vec![
        json!({"user_id": "m-1", "ip": "198.51.100.41"}),
        json!({"not": "a login"}),
    ])
    .encode();
    queue.send(std::slice::from_ref(&envelope)).await;
    let mut child = writer(dir.path(), &env, &[]).spawn().unwrap();
    let _stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            _ => String::new(),
        }
    };
    eventually(
        Duration::from_secs(60),
        "the first message deleted",
        || async { metric_value(&scrape().await, "sluice_writer_messages_deleted_total") >= 1.0 },
    )
    .await;
    queue.send(&[envelope]).await;
    eventually(Duration::from_secs(60), "the duplicate skipped", || async {
        metric_value(&scrape().await, "sluice_writer_duplicate_messages_total") >= 1.0
    })
    .await;
    let text = scrape().await;
    sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", stderr.await.unwrap_or_default());

    sluice_testkit::metrics::assert_exposition_is_clean(
        &text,
        &[
            "sluice_writer_messages_received_total",
            "sluice_writer_rows_written_total",
            "sluice_writer_rejected_records_total",
            "sluice_writer_duplicate_messages_total",
            "sluice_writer_batch_commit_seconds",
            "sluice_writer_batches_committed_total",
            "sluice_writer_messages_deleted_total",
        ],
        "198.51.100.41",
    );
}
