//! Several real `sluice-writer` processes on one queue and one database.
//!
//! Processes share nothing but the queue and the database, so only the
//! queue's visibility timeouts and the receipts committed with the rows keep
//! every event once. A SIGKILLed writer releases nothing: what it held comes
//! back after its visibility timeout, kept short here (2 s, the least the
//! writer accepts) so the tests stay quick.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::binary::{drain, sigterm, writer};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(120);

/// One `sluice-writer serve` child process, with its metrics address.
pub(crate) struct WriterProcess {
    child: Child,
    addr: SocketAddr,
    stderr: JoinHandle<String>,
    _stdout: JoinHandle<String>,
}

/// A loopback port nobody listens on right now.
impl WriterProcess {
    /// Starts the binary on `queue` and `db` with quick tuning; returns once
    /// `/readyz` answers 200 (migrations applied, queue answering).
    async fn start(dir: &Path, queue: &TestQueue, db: &TestDb) -> Self {
        Self::start_with(dir, queue.env(), db).await
    }

    /// [`start`](Self::start) with the queue given by its variables.
    pub(crate) async fn start_with(
        dir: &Path,
        mut env: Vec<(&'static str, String)>,
        db: &TestDb,
    ) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", sluice_testkit::free_port())
            .parse()
            .unwrap();
        env.extend([
            ("DATABASE_URL", db.url_string()),
            ("PII_KEY", test_key_base64()),
            ("WRITER_ADDR", addr.to_string()),
            ("WRITER_WAIT_SECS", "1".to_owned()),
            ("WRITER_LINGER_MS", "50".to_owned()),
            ("WRITER_VISIBILITY_TIMEOUT_SECS", "2".to_owned()),
            ("WRITER_SHUTDOWN_TIMEOUT_SECS", "10".to_owned()),
            ("WRITER_CONSUMERS", "2".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]);
        let mut child = writer(dir, &env, &[]).spawn().expect("start sluice-writer");
        let _stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let mut process = Self {
            child,
            addr,
            stderr,
            _stdout,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                let stderr = process.stderr.await.unwrap_or_default();
                panic!("sluice-writer exited at start ({status}):\n{stderr}");
            }
            if process.get("/readyz").await.is_some_and(|(s, _)| s == 200) {
                return process;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = process.child.kill().await;
                let stderr = process.stderr.await.unwrap_or_default();
                panic!("sluice-writer not ready within 60 s:\n{stderr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    /// A counter of this process (0 when it does not answer).
    async fn metric(&self, name: &str) -> f64 {
        match self.get("/metrics").await {
            Some((200, text)) => metric_value(&text, name),
            _ => 0.0,
        }
    }

    /// SIGKILL: no shutdown, nothing released or deleted.
    async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL sluice-writer");
    }

    /// SIGTERM and wait; returns the exit status and the log.
    pub(crate) async fn stop(mut self) -> (ExitStatus, String) {
        sigterm(self.child.id().expect("still running"));
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s of SIGTERM")
            .unwrap();
        (status, self.stderr.await.unwrap_or_default())
    }
}

async fn distinct_users(db: &TestDb) -> i64 {
    let rows = db
        .text_rows("SELECT CAST(COUNT(DISTINCT user_id) AS TEXT) FROM user_logins")
        .await;
    rows[0][0].as_deref().unwrap().parse().unwrap()
}

async fn assert_stops_cleanly(process: WriterProcess) {
    let (status, log) = process.stop().await;
    assert!(
        status.success(),
        "exit 0 after SIGTERM, got {status}; log tail:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
}

/// A writer killed while it holds received, uncommitted messages: another
/// writer gets them after their visibility timeout and every row lands once.
async fn killed_writer_messages_redelivered(backend: Backend) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
    let TestDb::Sqlite(path) = &db else {
        unreachable!()
    };
    let first = WriterProcess::start(dir.path(), &queue, &db).await;

    // Hold SQLite's write lock, so the writer receives but cannot commit.
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    queue
        .send(&envelope_bodies(&generated_logins(2_000, "killed"), 100))
        .await;
    eventually(WAIT, "the writer holding messages", || async {
        queue.counts().await.1 > 0
            && first.metric("sluice_writer_messages_received_total").await >= 1.0
    })
    .await;
    first.kill().await;
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(db.count("user_logins").await, 0, "nothing was committed");

    let second = WriterProcess::start(dir.path(), &queue, &db).await;
    eventually(WAIT, "2,000 rows and the queue drained", || async {
        db.count("user_logins").await == 2_000 && queue.remaining().await == 0
    })
    .await;
    assert_eq!(distinct_users(&db).await, 2_000, "every record once");
    assert_eq!(
        db.count("sluice_receipts").await,
        20,
        "one receipt a message"
    );
    assert!(second.metric("sluice_writer_messages_received_total").await >= 20.0);
    assert_stops_cleanly(second).await;
    assert_eq!(queue.counts().await, (0, 0));
    assert_eq!(queue.dead_letters().await, 0);
}

/// Three writer processes on one queue and one database, 20,000 logins in
/// 200 envelope-v1 messages, one writer SIGKILLed half-way: every event once.
async fn three_writers_every_event_once(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    // One after the other: starting on the same fresh files at once is
    // the next test's subject.
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(WriterProcess::start(dir.path(), &queue, &db).await);
    }
    let bodies = envelope_bodies(&generated_logins(20_000, "three"), 100);
    assert_eq!(bodies.len(), 200);

    // The first half; the victim is killed once it has taken part, so it
    // may die holding messages, and the second half is sent after.
    queue.send(&bodies[..100]).await;
    let victim = writers.pop().unwrap();
    eventually(WAIT, "the third writer receiving", || async {
        victim.metric("sluice_writer_messages_received_total").await >= 1.0
    })
    .await;
    victim.kill().await;
    let at_kill = db.count("user_logins").await;
    queue.send(&bodies[100..]).await;

    eventually(WAIT, "20,000 rows and the queue drained", || async {
        db.count("user_logins").await == 20_000 && queue.remaining().await == 0
    })
    .await;
    assert_eq!(distinct_users(&db).await, 20_000, "every event once");
    assert_eq!(db.count("sluice_receipts").await, 200);
    let mut received = Vec::new();
    for w in &writers {
        received.push(w.metric("sluice_writer_messages_received_total").await);
    }
    eprintln!(
        "three writers: {at_kill} rows when one was killed; the survivors received {received:?} messages"
    );
    for w in writers {
        assert_stops_cleanly(w).await;
    }
    assert_eq!(db.count("user_logins").await, 20_000);
    assert_eq!(queue.counts().await, (0, 0));
    assert_eq!(queue.dead_letters().await, 0);
}

/// Three writers started at the same moment on a queue file and a database
/// file that do not exist yet (`docker compose up --scale writer=3` on a
/// fresh volume): all three come up, several rounds in a row. The
/// processes race to switch the new files to WAL, which SQLite answers with
/// an immediate SQLITE_BUSY to the losers; opening retries that switch
/// within the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_writers_start_together_on_fresh_files() {
    for _round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::Sqlite(dir.path().join("sluice.db"));
        let queue_env = vec![(
            "QUEUE_URL",
            format!("sqlite://{}", dir.path().join("queue.db").display()),
        )];
        let (a, b, c) = tokio::join!(
            WriterProcess::start_with(dir.path(), queue_env.clone(), &db),
            WriterProcess::start_with(dir.path(), queue_env.clone(), &db),
            WriterProcess::start_with(dir.path(), queue_env.clone(), &db),
        );
        for w in [a, b, c] {
            assert_stops_cleanly(w).await;
        }
    }
}

on_both_queues! {
    killed_writer_redelivered => killed_writer_messages_redelivered();
    three_writers_sqlite => three_writers_every_event_once("sqlite");
    three_writers_postgres => three_writers_every_event_once("postgres");
}
