//! The real `sluice-ingest` binary killed with SIGKILL after the queue
//! acknowledged the whole of a keyed request, before the pusher got the
//! answer; the pusher retries with the same `Idempotency-Key` to a restarted
//! ingest, and a real `sluice-writer` drains the queue into SQLite: every
//! login is stored exactly once.
//!
//! The pusher talks to ingest through a proxy that passes the request on
//! and never passes the answer back. Ingest answers only once the queue has
//! acknowledged every message of the request, so the answer's first bytes
//! reaching the proxy mark that moment: ingest is killed then, and the
//! pusher sees its connection drop. That everything was queued is then
//! proven, not assumed: the writer drains the first attempt alone and stores
//! all of it before the retry is sent.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_testkit::process;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    env_extra: &[(&str, &str)],
) -> (Child, String) {
    // The caller's variables last: they may override these.
    let mut env = vec![
        ("QUEUE_URL", queue_url.to_owned()),
        ("INGEST_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    env.extend(env_extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut child = process::command(BIN, dir, &env, &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = process::log_lines(child.stderr.take().unwrap());
    let addr = process::logged_address(&mut stderr, "ingest listening", &mut String::new()).await;
    // Keep reading its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (child, addr)
}

/// `sluice-writer`, built beside this binary by `cargo test --workspace`
/// (what `scripts/test` runs); built here only when it is missing.
fn writer_binary() -> PathBuf {
    let writer = Path::new(BIN).with_file_name("sluice-writer");
    if !writer.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .args([
                "build",
                "--quiet",
                "-p",
                "sluice-writer",
                "--bin",
                "sluice-writer",
            ])
            .status()
            .unwrap();
        assert!(built.success() && writer.exists(), "building sluice-writer");
    }
    writer
}

/// A real writer draining `queue_url` into the SQLite file `db`.
fn start_writer(dir: &Path, queue_url: &str, db: &Path) -> Child {
    let env = [
        ("QUEUE_URL", queue_url.to_owned()),
        ("DATABASE_URL", format!("sqlite://{}", db.display())),
        // base64 of 32 bytes of 7.
        (
            "PII_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned(),
        ),
        ("WRITER_ADDR", "127.0.0.1:0".to_owned()),
        ("WRITER_WAIT_SECS", "1".to_owned()),
    ];
    process::command(writer_binary(), dir, &env, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A one-connection TCP proxy to `upstream` that passes the request on and
/// holds the answer back (the pusher never gets it); sends the answer's
/// first bytes on the channel when they arrive. Aborting the task drops
/// both connections.
async fn withholding_proxy(upstream: &str) -> (String, oneshot::Receiver<Vec<u8>>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = upstream.to_owned();
    let (answered, answer) = oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(&upstream).await.unwrap();
        let (mut from_client, _to_client) = client.split();
        let (mut from_server, mut to_server) = server.split();
        let forward = tokio::io::copy(&mut from_client, &mut to_server);
        let mut head = vec![0; 12];
        tokio::select! {
            _ = forward => {}
            read = from_server.read_exact(&mut head) => {
                if read.is_ok() {
                    answered.send(head).unwrap();
                }
            }
        }
        // Hold both connections open until aborted.
        std::future::pending::<()>().await;
    });
    (format!("http://{addr}/events"), answer, task)
}

/// Logins stored in the SQLite file, and how many distinct user ids.
fn stored_logins(db: &Path) -> (i64, i64) {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return (0, 0);
    };
    c.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_logins",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((0, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sigkill_lands_once() {
    const N: usize = 6_000;
    const WAIT: Duration = Duration::from_secs(90);
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
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

    // First attempt: the whole request queued, ingest killed, no answer.
    let (mut first, url) = start(dir.path(), queue.url()).await;
    let upstream = url
        .trim_start_matches("http://")
        .trim_end_matches("/events");
    let (proxied, answer, proxy) = withholding_proxy(upstream).await;
    let attempt = tokio::spawn(post(proxied));
    let head = tokio::time::timeout(WAIT, answer)
        .await
        .expect("ingest answers within the deadline")
        .expect("ingest answered");
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 202"),
        "ingest answered {:?}",
        String::from_utf8_lossy(&head)
    );
    proxy.abort();
    let seen = attempt.await.unwrap();
    assert!(seen.is_err(), "the pusher got an answer: {seen:?}");
    assert!(queue.remaining().await > 0);

    // A real writer drains it: all of the request was in the queue.
    let mut writer = start_writer(dir.path(), queue.url(), &db);
    eventually(WAIT, "the first attempt stored", || async {
        queue.remaining().await == 0 && stored_logins(&db).0 >= N as i64
    })
    .await;
    assert_eq!(stored_logins(&db), (N as i64, N as i64));

    // The pusher retries to a restarted ingest: the writer skips it all.
    let (mut second, url) = start(dir.path(), queue.url()).await;
    let retry = post(url).await.unwrap();
    assert_eq!(retry.status(), 202);
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["accepted"], N);
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    // Messages are deleted after their batch commits: an empty queue means
    // the retry's batches are committed.
    eventually(WAIT, "the retry drained", || async {
        queue.remaining().await == 0
    })
    .await;
    writer.start_kill().unwrap();
    writer.wait().await.unwrap();
    assert_eq!(
        stored_logins(&db),
        (N as i64, N as i64),
        "every login exactly once"
    );
}
