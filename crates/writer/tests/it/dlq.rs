//! `sluice-writer dlq status | peek | redrive`, the binary, on fauxqs and on
//! the embedded queue: messages sent straight into the dead-letter queue
//! are counted, peeked without being consumed and without any plaintext of
//! their PII, redriven (`--max` first, then the rest) and loaded by a writer;
//! a redrive the source queue refuses keeps every message.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_core::queue::Queue;
use sluice_core::queue::sqlite::SqliteQueue;
use sluice_core::queue::sqs::{SqsQueue, SqsSettings};

use crate::binary::{Finished, aws_env, run, sqlite_url};
use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A queue made by `sluice-writer setup`, with handles on both halves.
struct Setup {
    env: Vec<(&'static str, String)>,
    source: Arc<dyn Queue>,
    dead_letter: Arc<dyn Queue>,
}

async fn setup(backend: Backend, dir: &Path) -> Option<Setup> {
    let mut env = match backend {
        Backend::Embedded => {
            let path = dir.join("queue.db");
            vec![("QUEUE_URL", sqlite_url(&path))]
        }
        _ => {
            let endpoint = service("SLUICE_TEST_SQS_ENDPOINT")?;
            let name = format!("dlq-{}", uuid::Uuid::now_v7().simple());
            aws_env(&endpoint, &format!("{endpoint}/000000000000/{name}"))
        }
    };
    env.push(("DATABASE_URL", sqlite_url(&dir.join("setup.db"))));
    env.push(("PII_KEY", test_key_base64()));
    let out = run(dir, &env, &["setup"], LIMIT).await;
    assert!(out.status.success(), "setup: {}", out.stderr);
    let url = env
        .iter()
        .find(|(k, _)| *k == "QUEUE_URL")
        .unwrap()
        .1
        .clone();
    let (source, dead_letter): (Arc<dyn Queue>, Arc<dyn Queue>) = match backend {
        Backend::Embedded => {
            let queue = SqliteQueue::open(dir.join("queue.db")).unwrap();
            (Arc::new(queue.clone()), Arc::new(queue.dead_letter_queue()))
        }
        _ => {
            // Each half looked up by name, as the emulator spells its URL.
            let open = |url: String| {
                let endpoint = env[0].1.clone();
                async move {
                    SqsQueue::connect(&SqsSettings {
                        queue_url: url,
                        endpoint_url: Some(endpoint),
                        region: Some("us-east-1".into()),
                        credentials: Some(("test".into(), "test".into())),
                    })
                    .await
                }
            };
            (
                Arc::new(open(url.clone()).await),
                Arc::new(open(format!("{url}-dlq")).await),
            )
        }
    };
    Some(Setup {
        env,
        source,
        dead_letter,
    })
}

impl Setup {
    async fn dlq(&self, dir: &Path, args: &[&str]) -> Finished {
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        run(dir, &self.env, &all, LIMIT).await
    }

    /// (queue visible, queue in flight, DLQ visible, DLQ in flight) as
    /// `dlq status` prints them.
    async fn status(&self, dir: &Path) -> [u64; 4] {
        let out = self.dlq(dir, &["status"]).await;
        assert!(out.status.success(), "dlq status: {}", out.stderr);
        let numbers = |prefix: &str| -> [u64; 2] {
            let line = out
                .stdout
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in {}", out.stdout));
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |w: &str| -> u64 {
                let i = words.iter().position(|x| *x == w).unwrap();
                let i = if w == "in" { i + 2 } else { i + 1 };
                words[i].parse().unwrap()
            };
            [after("visible"), after("in")]
        };
        let [qv, qf] = numbers("queue ");
        let [dv, df] = numbers("dead-letter queue ");
        [qv, qf, dv, df]
    }
}

/// What goes into the dead-letter queue: an envelope of three logins, and a
/// body that is not JSON at all — both carrying PII.
fn dead_letters(tag: &str) -> (Vec<String>, Vec<String>) {
    let logins = generated_logins(3, tag);
    let mut pii: Vec<String> = logins
        .iter()
        .flat_map(|r| [r["ip"].as_str().unwrap(), r["device_id"].as_str().unwrap()])
        .map(str::to_owned)
        .collect();
    let broken = "{\"user_id\": \"broken\", \"ip\": \"198.51.100.231\", oops".to_owned();
    pii.push("198.51.100.231".to_owned());
    let mut bodies = envelope_bodies(&logins, 3);
    bodies.push(broken);
    (bodies, pii)
}

async fn send(queue: &dyn Queue, bodies: &[String]) {
    let out = queue.send_batch(bodies).await.unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
}

async fn dead_letters_are_peeked_masked_and_redriven(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let q = require!(setup(backend, dir.path()).await);
    let tag = format!("dlq{}", uuid::Uuid::now_v7().simple());
    let (bodies, pii) = dead_letters(&tag);
    send(q.dead_letter.as_ref(), &bodies).await;

    assert_eq!(q.status(dir.path()).await, [0, 0, 2, 0], "status counts");

    // Peek: both messages, as masked rows, and nothing consumed.
    let out = q.dlq(dir.path(), &["peek", "5"]).await;
    assert!(out.status.success(), "dlq peek: {}", out.stderr);
    for (i, value) in pii.iter().enumerate() {
        assert!(
            !out.stdout.contains(value.as_str()) && !out.stderr.contains(value.as_str()),
            "peek output carries PII value #{i} in plaintext"
        );
    }
    let views: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(views.len(), 2, "{}", out.stdout);
    let logins: Vec<&Value> = views
        .iter()
        .flat_map(|v| v["user_logins"].as_array().unwrap())
        .collect();
    assert_eq!(logins.len(), 3, "{}", out.stdout);
    for login in &logins {
        assert!(login["user_id"].as_str().unwrap().starts_with(&tag));
        assert!(login["masked_ip"].is_string(), "{login}");
    }
    let rejected: Vec<&Value> = views
        .iter()
        .flat_map(|v| v["rejected_records"].as_array().unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "{}", out.stdout);
    assert_eq!(rejected[0]["payload_format"], "encrypted");
    assert_eq!(
        q.status(dir.path()).await,
        [0, 0, 2, 0],
        "peek leaves every message visible"
    );
    // Peek again: the same two.
    let again = q.dlq(dir.path(), &["peek"]).await;
    assert_eq!(again.stdout.lines().count(), 2, "{}", again.stderr);

    // Redrive one, then the rest.
    let out = q.dlq(dir.path(), &["redrive", "--max", "1"]).await;
    assert!(out.status.success(), "dlq redrive --max 1: {}", out.stderr);
    assert!(out.stdout.contains("moved 1 "), "{}", out.stdout);
    assert_eq!(q.status(dir.path()).await, [1, 0, 1, 0]);
    let out = q.dlq(dir.path(), &["redrive"]).await;
    assert!(out.status.success(), "dlq redrive: {}", out.stderr);
    assert!(out.stdout.contains("moved 1 "), "{}", out.stdout);
    assert_eq!(q.status(dir.path()).await, [2, 0, 0, 0]);

    // A writer loads them: the logins with the masks peek showed.
    let db = TestDb::Sqlite(dir.path().join("load.db"));
    let writer = RunningWriter::start(Arc::clone(&q.source), &db, test_tuning()).await;
    eventually(Duration::from_secs(30), "the redriven rows", || async {
        db.count("user_logins").await == 3 && db.count("rejected_records").await == 1
    })
    .await;
    writer.stop().await;
    let mut stored: Vec<String> = db
        .logins()
        .await
        .into_iter()
        .filter_map(|l| l.row.masked_ip)
        .collect();
    let mut shown: Vec<String> = logins
        .iter()
        .map(|l| l["masked_ip"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    shown.sort();
    assert_eq!(stored, shown, "peek masks as the writer does");
    let counts = q.source.counts().await.unwrap();
    assert_eq!((counts.visible, counts.in_flight), (0, 0));
}

/// A source queue that refuses every send (the embedded queue keeping room
/// to drain): the redrive fails, and every message is still in the
/// dead-letter queue, visible at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redrive_keeps_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = setup(Backend::Embedded, dir.path()).await.unwrap();
    let (bodies, _) = dead_letters("refused");
    send(q.dead_letter.as_ref(), &bodies).await;
    q.env
        .push(("QUEUE_MIN_FREE_BYTES", "1125899906842624".to_owned()));
    let out = q.dlq(dir.path(), &["redrive"]).await;
    assert!(!out.status.success(), "the redrive cannot succeed");
    assert!(
        out.stderr.contains("QUEUE_MIN_FREE_BYTES"),
        "{}",
        out.stderr
    );
    assert_eq!(q.status(dir.path()).await, [0, 0, 2, 0]);
}

sluice_testkit::cases! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    dead_letters_on_fauxqs => dead_letters_are_peeked_masked_and_redriven(Backend::Sqs);
    dead_letters_on_the_embedded_queue => dead_letters_are_peeked_masked_and_redriven(Backend::Embedded);
}

/// Without a redrive policy there is no dead-letter queue to find: one
/// line saying so, exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_a_redrive_policy_is_named() {
    let endpoint = require!(service("SLUICE_TEST_SQS_ENDPOINT"));
    let dir = tempfile::tempdir().unwrap();
    let queue = sluice_testkit::fresh_queue(&endpoint, &[]).await;
    let env = aws_env(&endpoint, queue.url());
    let out = run(dir.path(), &env, &["dlq", "status"], LIMIT).await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("RedrivePolicy"), "{}", out.stderr);
}
