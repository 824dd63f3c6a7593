//! The real `sluice-ingest` binary killed with SIGKILL while a keyed request
//! is being queued: the pusher sees a dropped connection and retries with
//! the same `Idempotency-Key` to a restarted ingest; each event is then
//! stored once. The queue's messages are written by the writer's own
//! classifier and SQLite sink, as `sluice-writer` does.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::classify::{Classifier, DEFAULT_MAX_RECORD_BYTES};
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::records::WriteBatch;
use sluice_core::sink::Sink;
use sluice_core::sink::sqlite::SqliteSink;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-ingest");

/// Starts the binary on `queue_url`; the child and its address.
async fn start(dir: &std::path::Path, queue_url: &str) -> (Child, String) {
    // Small messages: the request below takes many of them.
    let (child, addr) = start_with(
        dir,
        queue_url,
        &[
            ("INGEST_MAX_MESSAGE_BYTES", "1024"),
            ("INGEST_SEND_CONCURRENCY", "1"),
        ],
    )
    .await;
    (child, format!("http://{addr}/events"))
}

/// Starts the binary on `queue_url` with `env`; the child and its address.
pub async fn start_with(
    dir: &std::path::Path,
    queue_url: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("QUEUE_URL", queue_url)
        .env("INGEST_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .current_dir(dir)
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
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "ingest listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep reading its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sigkill_lands_once() {
    const N: usize = 6_000;
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let body: String = Value::Array(
        (0..N)
            .map(|i| json!({"user_id": format!("crash-{i}"), "ip": "10.1.2.3", "device_type": "ios"}))
            .collect(),
    )
    .to_string();
    let client = reqwest::Client::new();
    let post = |url: String| {
        client
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", "crash-test-1")
            .body(body.clone())
            .send()
    };

    let (mut first, url) = start(dir.path(), queue.url()).await;
    let attempt = tokio::spawn(post(url));
    let started = tokio::time::Instant::now();
    while queue.remaining().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing queued"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // The pusher's view: the connection dropped (or, had ingest been
    // quicker than the kill, a 202 it may never have read).
    let seen = attempt.await.unwrap();
    let queued_by_first = queue.remaining().await;
    assert!(queued_by_first > 0);
    eprintln!(
        "first attempt: {:?}, {queued_by_first} messages queued",
        seen.as_ref().map(reqwest::Response::status)
    );

    let (mut second, url) = start(dir.path(), queue.url()).await;
    let retry = post(url).await.unwrap();
    assert_eq!(retry.status(), 202);
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["accepted"], N);
    second.start_kill().unwrap();

    // Write everything queued, as a writer does.
    let key = PiiKey::from_bytes(&[7; 32]);
    let classifier = Classifier::new(
        Masker::new(Keyring::new(key, vec![]), Policy::default()),
        DEFAULT_MAX_RECORD_BYTES,
    );
    let sink = SqliteSink::open(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    sink.migrate().await.unwrap();
    let mut logins = 0;
    loop {
        let messages = queue
            .queue
            .receive(10, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        if messages.is_empty() {
            break;
        }
        let batch = WriteBatch {
            written_on: chrono::Utc::now().date_naive(),
            messages: messages
                .iter()
                .map(|m| classifier.body_rows(m.body.as_bytes(), &m.message_id))
                .collect(),
        };
        logins += sink.write(&batch).await.unwrap().logins_written;
        let handles: Vec<String> = messages.into_iter().map(|m| m.receipt_handle).collect();
        queue.queue.delete_batch(&handles).await.unwrap();
    }
    assert_eq!(logins, N as u64, "every login exactly once");
}
