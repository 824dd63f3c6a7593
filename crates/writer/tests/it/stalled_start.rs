//! Start-up while the SQS server stalls: the queue-name lookup is retried
//! within the start-up check's budget, so a server that comes back in time
//! is used, and one that does not is reported as not answering — never as
//! "the queue does not exist", which sent operators the wrong way.
//!
//! These freeze a fauxqs of their own (SIGSTOP), so they need fauxqs's
//! command (`SLUICE_TEST_FAUXQS`); and fauxqs is the server that knows a
//! queue only by the URL it returned, which is what makes the lookup matter.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sluice_core::queue::STARTUP_CHECK;

use crate::binary::{aws_env, sqlite_url, startup_error, writer};
use crate::helpers::*;
use crate::pipeline::OwnFauxqs;

/// A queue on `fauxqs`, and `QUEUE_URL` as a user writes it
/// (`http://host:port/<account>/<name>`), which fauxqs only knows through the
/// lookup.
async fn queue_on(fauxqs: &OwnFauxqs) -> String {
    let queue = TestQueue::sqs(&fauxqs.endpoint, 30).await;
    let name = queue.url().rsplit('/').next().unwrap().to_owned();
    format!("{}/000000000000/{name}", fauxqs.endpoint)
}

fn serve_env(dir: &std::path::Path, endpoint: &str, url: &str) -> Vec<(&'static str, String)> {
    let mut env = aws_env(endpoint, url);
    env.extend([
        ("PII_KEY", test_key_base64()),
        ("DATABASE_URL", sqlite_url(&dir.join("x.db"))),
        ("WRITER_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    env
}

/// A fauxqs of the test's own holding a queue, frozen (SIGSTOP); a folder,
/// and the writer's settings for that queue.
async fn frozen_queue() -> Option<(OwnFauxqs, tempfile::TempDir, Vec<(&'static str, String)>)> {
    let cli = service("SLUICE_TEST_FAUXQS")?;
    let fauxqs = OwnFauxqs::start(&cli).await;
    let url = queue_on(&fauxqs).await;
    let dir = tempfile::tempdir().unwrap();
    let env = serve_env(dir.path(), &fauxqs.endpoint, &url);
    fauxqs.signal("-STOP");
    Some((fauxqs, dir, env))
}

/// Frozen for 8 s while the writer starts (longer than one lookup attempt),
/// then back: the writer starts and serves, and stops with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_stalls_at_start_is_waited_for() {
    let (fauxqs, dir, env) = require!(frozen_queue().await);
    let mut child = writer(dir.path(), &env, &[]).spawn().unwrap();
    // The stall itself, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(8)).await;
    fauxqs.signal("-CONT");

    // Migrations run only once the queue answered: tables mean it did.
    let db = dir.path().join("x.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let serving = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Err(status);
        }
        let has_tables = db.exists()
            && rusqlite::Connection::open(&db)
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*) FROM sqlite_master WHERE name = 'sluice_receipts'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .is_ok_and(|n| n == 1);
        if has_tables {
            break Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the writer did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if serving.is_ok() {
        crate::binary::sigterm(child.id().unwrap());
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the writer stops after SIGTERM")
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        serving.is_ok(),
        "the writer exited at start: {serving:?}\n{logs}"
    );
    assert_eq!(out.status.code(), Some(0), "{logs}");
    assert!(!logs.contains("does not exist"), "{logs}");
}

/// Frozen all along: the writer stops with one line saying the server did
/// not answer within the budget, not that the queue does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_never_answers_is_reported_as_such() {
    let (_fauxqs, _dir, env) = require!(frozen_queue().await);
    let line = startup_error(&env, "QUEUE_URL").await;
    let budget = format!("did not answer within {} s", STARTUP_CHECK.as_secs());
    assert!(line.contains(&budget), "says `{budget}`: {line}");
    assert!(!line.contains("does not exist"), "{line}");
}
