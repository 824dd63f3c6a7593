//! A full disk never wedges the pipeline: the real `sluice-ingest` and
//! `sluice-writer` binaries with the embedded queue, or the SQLite
//! database, on a small tmpfs that fills up.
//!
//! Mounting needs root (CI runs as root): elsewhere these tests are skipped
//! with a message, and fail under `SLUICE_REQUIRE_SERVICES=1`. The ingest
//! binary is the one cargo built next to the writer's (`cargo test
//! --workspace`, as `scripts/test` runs, builds every binary).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sluice_core::queue::Queue;
use sluice_core::queue::sqlite::SqliteQueue;
use sluice_testkit::pg_cluster::Cluster;
use sluice_testkit::text::incompressible_hex;
use sluice_testkit::tmpfs::{Tmpfs, fill};
use sluice_testkit::{free_port, process};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::binary::{drain, sigterm};
use crate::helpers::*;
use crate::processes::WriterProcess;

const LAND_WITHIN: Duration = Duration::from_secs(180);

/// Logins with unique user ids, each padded with text that compresses
/// poorly, so a few requests fill megabytes.
fn padded_logins(tag: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let pad = incompressible_hex(i as u64, 96);
            json!({"user_id": format!("{tag}-{i:07}"), "ip": "10.1.2.3", "pad": pad})
        })
        .collect()
}

/// The `sluice-ingest` binary cargo built beside this crate's writer;
/// refused when older than ingest's or core's sources (a stale binary would
/// test old code).
fn ingest_binary() -> PathBuf {
    let writer = Path::new(env!("CARGO_BIN_EXE_sluice-writer"));
    let ingest = writer.with_file_name("sluice-ingest");
    let built = std::fs::metadata(&ingest)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build every binary first (`cargo build --workspace --bins`; scripts/test does)",
                ingest.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for sources in ["crates/ingest/src", "crates/core/src"] {
        let newest = newest_file(&root.join(sources));
        assert!(
            newest <= built,
            "{} is older than {sources}: rebuild it (`cargo build --workspace --bins`)",
            ingest.display()
        );
    }
    ingest
}

fn newest_file(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_file(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap()
        };
        newest = newest.max(time);
    }
    newest
}

/// A running `sluice-ingest` child (also started by `monitoring`).
pub(crate) struct IngestProcess {
    child: Child,
    pub(crate) addr: String,
    stderr: JoinHandle<String>,
    _stdout: JoinHandle<String>,
}

impl IngestProcess {
    pub(crate) async fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut env = env.to_vec();
        env.extend([
            ("INGEST_ADDR", addr.clone()),
            ("RUST_LOG", "warn".to_owned()),
        ]);
        let mut child = process::command(ingest_binary(), dir, &env, &[])
            .spawn()
            .expect("start sluice-ingest");
        let _stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let process = Self {
            child,
            addr,
            stderr,
            _stdout,
        };
        let url = format!("http://{}/readyz", process.addr);
        eventually(Duration::from_secs(60), "sluice-ingest ready", || {
            let url = url.clone();
            async move {
                reqwest::get(url)
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200)
            }
        })
        .await;
        process
    }

    /// Its `/metrics` text.
    pub(crate) async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Posts events; the status, the `Retry-After` header and the body.
    pub(crate) async fn post(&self, events: &[Value]) -> (u16, Option<String>, Value) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/events", self.addr))
            .json(events)
            .send()
            .await
            .expect("ingest answers");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn stop(mut self) -> String {
        sigterm(self.child.id().expect("still running"));
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s of SIGTERM")
            .unwrap();
        let log = self.stderr.await.unwrap_or_default();
        assert!(status.success(), "ingest exit {status}:\n{log}");
        log
    }
}

async fn readyz(writer: &WriterProcess) -> (u16, String) {
    writer.get("/readyz").await.unwrap_or((0, String::new()))
}

fn writer_env(queue_url: String) -> Vec<(&'static str, String)> {
    vec![("QUEUE_URL", queue_url)]
}

/// Polls `/readyz` (through `get`) until it answers 503 saying batches
/// cannot be committed; that answer.
async fn cannot_commit<F, Fut>(get: F) -> (u16, String)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (u16, String)>,
{
    poll_until(
        LAND_WITHIN,
        "/readyz to say batches cannot commit",
        get,
        |(status, body)| *status == 503 && body.contains("cannot be committed"),
    )
    .await
}

/// For `hold`, every message stays in the queue (nothing deleted, nothing
/// dead-lettered) and nothing lands: the leases outlive the visibility
/// timeout while the database cannot commit.
async fn assert_held(queue: &TestQueue, db: &TestDb, messages: usize, hold: Duration) {
    let held_until = tokio::time::Instant::now() + hold;
    while tokio::time::Instant::now() < held_until {
        assert_eq!(queue.remaining().await, messages as u64, "nothing deleted");
        assert_eq!(queue.dead_letters().await, 0, "nothing dead-lettered");
        assert_eq!(db.count("user_logins").await, 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Frees the space the filler took; then every message lands exactly once
/// and none is dead-lettered.
async fn lands_once_space_returns(filler: PathBuf, queue: &TestQueue, db: &TestDb, logins: usize) {
    std::fs::remove_file(filler).unwrap();
    eventually(LAND_WITHIN, "every message lands", || async move {
        queue.remaining().await == 0
    })
    .await;
    assert_exactly_once(db, logins).await;
    assert_eq!(queue.dead_letters().await, 0);
}

/// Every login exactly once: as many rows as distinct user ids as expected.
async fn assert_exactly_once(db: &TestDb, expected: usize) {
    let rows = db
        .text_rows(
            "SELECT CAST(COUNT(*) AS TEXT), CAST(COUNT(DISTINCT user_id) AS TEXT) FROM user_logins",
        )
        .await;
    let n = |i: usize| rows[0][i].as_deref().unwrap().parse::<usize>().unwrap();
    assert_eq!((n(0), n(1)), (expected, expected), "rows, distinct users");
    assert_eq!(db.count("rejected_records").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_sends_drains_without_help_and_accepts_again() {
    let tmpfs = require!(Tmpfs::mount("8m"));
    let dir = tempfile::tempdir().unwrap();
    let queue_path = tmpfs.path().join("queue.db");
    let queue_url = format!("sqlite://{}", queue_path.display());
    let ingest = IngestProcess::start(
        dir.path(),
        &[
            ("QUEUE_URL", queue_url.clone()),
            ("QUEUE_MIN_FREE_BYTES", "2MiB".to_owned()),
        ],
    )
    .await;

    // Post until ingest refuses: every 202 is a promise.
    let mut accepted = 0;
    let refusal = loop {
        assert!(accepted < 40_000, "never refused; is the queue bounded?");
        let (status, retry_after, body) = ingest.post(&padded_logins("u", accepted, 100)).await;
        match status {
            202 => accepted += 100,
            _ => break (status, retry_after, body),
        }
    };
    let (status, retry_after, body) = refusal;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "queue_full", "{body}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        accepted >= 1_000,
        "only {accepted} accepted before refusing"
    );
    let again = ingest.post(&padded_logins("u", accepted, 100)).await;
    assert_eq!(again.0, 503, "still full: {}", again.2);
    let metrics = ingest.metrics_text().await;
    let queue_bytes = metric_value(&metrics, "sluice_queue_bytes");
    let free_bytes = metric_value(&metrics, "sluice_queue_free_bytes");
    assert!(
        queue_bytes > 1_000_000.0,
        "queue bytes gauge: {queue_bytes}"
    );
    assert!(
        free_bytes > 0.0 && free_bytes < 8_000_000.0,
        "free bytes gauge: {free_bytes}"
    );

    // A writer started now drains the queue without any space freed by hand.
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    let writer = WriterProcess::start_with(dir.path(), writer_env(queue_url.clone()), &db).await;
    eventually(LAND_WITHIN, "every accepted login lands", || {
        let db = db.clone();
        async move { db.count("user_logins").await as usize >= accepted }
    })
    .await;

    // Sends are accepted again, and land too.
    let queue = SqliteQueue::open(&queue_path).unwrap();
    let mut more = 0;
    let deadline = tokio::time::Instant::now() + LAND_WITHIN;
    while ingest.post(&padded_logins("v", more, 100)).await.0 != 202 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never accepted again; on the tmpfs: {:?}",
            std::fs::read_dir(tmpfs.path())
                .unwrap()
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    more += 100;
    eventually(LAND_WITHIN, "the new logins land", || {
        let db = db.clone();
        async move { db.count("user_logins").await as usize >= accepted + more }
    })
    .await;
    eventually(LAND_WITHIN, "the queue is empty", || {
        let queue = queue.clone();
        async move {
            let c = queue.counts().await.unwrap();
            c.visible + c.in_flight == 0
        }
    })
    .await;
    assert_exactly_once(&db, accepted + more).await;
    let dlq = queue.dead_letter_queue().counts().await.unwrap();
    assert_eq!(dlq.visible + dlq.in_flight, 0, "nothing dead-lettered");

    let (status, writer_log) = writer.stop().await;
    assert!(status.success(), "writer exit {status}:\n{writer_log}");
    let log = ingest.stop().await;
    let refusing = log.matches("the embedded queue is full").count();
    let resumed = log.matches("the embedded queue has room again").count();
    assert_eq!((refusing, resumed), (1, 1), "one warning each way:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_keeps_the_messages_and_lands_them_once_space_returns() {
    let tmpfs = require!(Tmpfs::mount("8m"));
    let dir = tempfile::tempdir().unwrap();
    let queue = TestQueue::embedded();
    // The database on the small disk, migrated before the disk fills.
    let db = TestDb::fresh("sqlite", tmpfs.path()).await.unwrap();
    let writer = WriterProcess::start_with(dir.path(), queue.env(), &db).await;
    let filler = fill(tmpfs.path());

    let records = generated_logins(20_000, "full");
    let bodies = envelope_bodies(&records, 1_000);
    queue.send(&bodies).await;

    // The writer cannot commit: it says why and keeps every message.
    let (_, said) = cannot_commit(|| readyz(&writer)).await;
    assert!(
        said.to_lowercase().contains("full"),
        "names the full disk: {said}"
    );
    // Long enough for several visibility timeouts (2 s) and the default
    // maximum receive count (5): the leases must keep the messages alive.
    assert_held(&queue, &db, bodies.len(), Duration::from_secs(15)).await;

    // Space returns: everything lands once, and the writer is ready again.
    lands_once_space_returns(filler, &queue, &db, records.len()).await;
    poll_until(
        Duration::from_secs(30),
        "/readyz 200 again",
        || readyz(&writer),
        |(status, _)| *status == 200,
    )
    .await;
    let (status, log) = writer.stop().await;
    assert!(status.success(), "writer exit {status}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_postgres_disk_is_retried_without_deleting_and_lands_once_space_returns() {
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    let tmpfs = require!(Tmpfs::mount("256m"));
    let parent = tmpfs.path().to_owned();
    let cluster = tokio::task::spawn_blocking(move || Cluster::create_in(Path::new(&bin), &parent))
        .await
        .unwrap();
    let db = TestDb::Postgres(fresh_postgres(&cluster.admin_url()).await);
    let queue = TestQueue::embedded();
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    // A fresh WAL segment, so the server has room for its log while the
    // tables cannot grow (a WAL write that fails stops PostgreSQL itself).
    db.execute("CHECKPOINT; SELECT pg_switch_wal(); CHECKPOINT;")
        .await;
    let filler = fill(tmpfs.path());

    let records = generated_logins(5_000, "pgfull");
    let bodies = envelope_bodies(&records, 500);
    queue.send(&bodies).await;
    let (_, said) = cannot_commit(|| writer.get("/readyz")).await;
    assert!(said.contains("53100"), "names the full disk: {said}");
    assert_held(&queue, &db, bodies.len(), Duration::from_secs(10)).await;

    lands_once_space_returns(filler, &queue, &db, records.len()).await;
    writer.stop().await;
    drop(cluster);
}
