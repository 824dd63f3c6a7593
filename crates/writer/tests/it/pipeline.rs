//! The whole pipeline in one process: `sluice-ingest` on 127.0.0.1:0 →
//! the SQS emulator → a writer → SQLite or PostgreSQL. What a pusher sees
//! (202 means durable) is checked against what lands in the database.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sluice_core::queue::Queue;
use sluice_ingest::batcher::BatchSettings;
use sluice_ingest::configuration::Settings;
use sluice_ingest::startup::Application as Ingest;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(90);

/// An ingest service running in this process.
pub(crate) struct RunningIngest {
    service: Service,
}

impl RunningIngest {
    pub(crate) async fn start(queue: Arc<dyn Queue>, settings: Settings) -> Self {
        let app = Ingest::build("127.0.0.1:0".parse().unwrap(), queue, settings)
            .await
            .unwrap();
        Self {
            service: Service::spawn(app.local_addr(), |t| app.run(t)),
        }
    }

    pub(crate) fn url(&self) -> String {
        self.service.url("/events")
    }

    pub(crate) async fn stop(self) {
        self.service.stop("ingest").await;
    }
}

/// The whole pipeline for a test: a fresh queue of a backend, the
/// directory holding a fresh database, that database, a writer and an
/// ingest (default settings) on them, and an HTTP client.
pub(crate) type Pipeline = (
    TestQueue,
    tempfile::TempDir,
    TestDb,
    RunningWriter,
    RunningIngest,
    reqwest::Client,
);

/// Starts a [`Pipeline`]; `None` (skip) when the queue's or the database's
/// service is absent.
pub(crate) async fn pipeline(backend: Backend, kind: &str) -> Option<Pipeline> {
    let queue = TestQueue::new(backend, 30).await?;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(kind, dir.path()).await?;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    let ingest = RunningIngest::start(queue.shared(), Settings::default()).await;
    Some((queue, dir, db, writer, ingest, reqwest::Client::new()))
}

/// Posts a body; returns the status and the JSON answer.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client.post(url).body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// The project's sample, with every id suffixed so each form lands anew.
fn sample(suffix: &str) -> Vec<Value> {
    let records: Vec<Value> =
        serde_json::from_str(include_str!("../../../../sample-data.json")).unwrap();
    records
        .into_iter()
        .map(|mut r| {
            for key in ["event_id", "user_id"] {
                if let Some(Value::String(id)) = r.get(key) {
                    let id = format!("{id}-{suffix}");
                    r[key] = Value::String(id);
                }
            }
            r
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `payout` of one event in `tune_events_current`, as text.
async fn current_payout(db: &TestDb, event_id: &str) -> Option<f64> {
    let sql = format!(
        "SELECT CAST(payout AS TEXT) FROM tune_events_current WHERE event_id = '{event_id}'"
    );
    match db {
        TestDb::Postgres(url) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .ok()?;
            let v: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(&mut c)
                .await
                .ok()?;
            v.flatten()?.parse().ok()
        }
        TestDb::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).ok()?;
            let v: Option<String> = c.query_row(&sql, [], |r| r.get(0)).ok()?;
            v?.parse().ok()
        }
    }
}

async fn sample_in_every_form(backend: Backend, kind: &str) {
    let (_queue, _dir, db, writer, ingest, client) = require!(pipeline(backend, kind).await);
    let url = ingest.url();

    // One object per request.
    for record in sample("object") {
        let (status, body) = post(&client, &url, record.to_string().into_bytes(), &[]).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    }
    // An array.
    let array = Value::Array(sample("array")).to_string().into_bytes();
    let (status, body) = post(&client, &url, array.clone(), &[]).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(8)));
    // NDJSON.
    let ndjson: String = sample("ndjson").iter().map(|r| format!("{r}\n")).collect();
    let (status, _) = post(
        &client,
        &url,
        ndjson.into_bytes(),
        &[("content-type", "application/x-ndjson")],
    )
    .await;
    assert_eq!(status, 202);
    // Gzip.
    let gz = gzip(Value::Array(sample("gzip")).to_string().as_bytes());
    let (status, _) = post(&client, &url, gz, &[("content-encoding", "gzip")]).await;
    assert_eq!(status, 202);

    eventually(WAIT, "every form's rows", || async {
        db.count("tune_events").await == 12
            && db.count("tune_adjustments").await == 8
            && db.count("user_logins").await == 12
    })
    .await;
    // The update adjustment (+8) applies to the conversion's payout (10);
    // the create is a conversion of its own, kept in the ledger only.
    for form in ["object", "array", "ndjson", "gzip"] {
        let id = format!("00000000-0000-4000-8000-000000000002-{form}");
        assert_eq!(current_payout(&db, &id).await, Some(18.0), "{form}");
    }

    // The same event_id posted again: still one row.
    let before = db.count("sluice_receipts").await;
    let (status, _) = post(&client, &url, array, &[]).await;
    assert_eq!(status, 202);
    eventually(WAIT, "the repeat committed", || async {
        db.count("sluice_receipts").await > before
    })
    .await;
    assert_eq!(db.count("tune_events").await, 12);
    assert_eq!(db.count("tune_adjustments").await, 8);

    // An adjustment posted before its event shows once the event arrives.
    let early = json!({"adjust_action": "update", "event_id": "early-1", "adjustment_sequence_id": 1,
        "adjustment_timestamp": "2026-11-22 10:00:00", "payout": 5, "revenue": 7});
    let (status, _) = post(&client, &url, early.to_string().into_bytes(), &[]).await;
    assert_eq!(status, 202);
    db.until_rows(
        "tune_adjustments",
        9,
        WAIT,
        "the early adjustment in the ledger",
    )
    .await;
    assert_eq!(current_payout(&db, "early-1").await, None);
    let event = json!({"event_id": "early-1", "action": "conversion", "payout": 1.5, "revenue": 3,
        "ip": "203.0.113.9", "datetime": 1_476_127_152});
    let (status, _) = post(&client, &url, event.to_string().into_bytes(), &[]).await;
    assert_eq!(status, 202);
    eventually(WAIT, "the event with its adjustment", || async {
        current_payout(&db, "early-1").await == Some(6.5)
    })
    .await;

    // No posted ip in plaintext anywhere in the database.
    let dump = db.dump().await;
    for ip in [
        "192.0.2.10",
        "198.51.100.23",
        "203.0.113.45",
        "192.0.2.77",
        "198.51.100.200",
        "2001:db8:1234::7",
        "203.0.113.9",
    ] {
        assert!(!dump.contains(ip), "plaintext ip in the database");
    }
    ingest.stop().await;
    writer.stop().await;
}

on_both_queues! {
    sample_every_form_sqlite => sample_in_every_form("sqlite");
    sample_every_form_postgres => sample_in_every_form("postgres");
    ten_thousand_events_from_32_clients => ten_thousand_events(32);
}

fn tune_events(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"event_id": format!("{prefix}-{i}"), "action": if i % 3 == 0 { "conversion" } else { "click" },
                "offer_id": i % 50, "affiliate_id": 1000 + i % 7, "payout": 1.25, "revenue": 2.5, "currency": "EUR",
                "country_code": "FR", "datetime": 1_476_127_152 + i, "ip": format!("10.9.{}.{}", i / 256 % 256, i % 256),
                "user_agent": "Mozilla/5.0", "aff_sub": format!("sub-{i}")})
        })
        .collect()
}

/// 10,000 events from concurrent clients: exactly 10,000 rows, in far
/// fewer queue messages than events.
async fn ten_thousand_events(backend: Backend, clients_n: usize) {
    let (queue, _dir, db, writer, ingest, client) = require!(pipeline(backend, "sqlite").await);
    let events = tune_events("load", 10_000);
    let mut clients = tokio::task::JoinSet::new();
    for share in events.chunks(10_000 / clients_n + 1) {
        let (client, url, share) = (client.clone(), ingest.url(), share.to_vec());
        clients.spawn(async move {
            let mut accepted = 0;
            for request in share.chunks(25) {
                let (status, body) = post(
                    &client,
                    &url,
                    Value::Array(request.to_vec()).to_string().into_bytes(),
                    &[],
                )
                .await;
                assert_eq!(status, 202, "{body}");
                accepted += body["accepted"].as_u64().unwrap();
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(n) = clients.join_next().await {
        accepted += n.unwrap();
    }
    assert_eq!(accepted, 10_000);
    all_landed(&db, &queue, "tune_events", 10_000).await;
    // One receipt per queue message.
    let messages = db.count("sluice_receipts").await;
    eprintln!(
        "10,000 events from {clients_n} clients in 400 requests arrived in {messages} queue messages"
    );
    assert!(messages <= 200, "{messages} messages for 10,000 events");
    ingest.stop().await;
    writer.stop().await;
}

/// A fauxqs of our own, so freezing it disturbs no other test.
pub(crate) struct OwnFauxqs {
    child: Child,
    pub(crate) endpoint: String,
}

impl OwnFauxqs {
    /// A fauxqs of the test's own (`None`, skip, without
    /// `SLUICE_TEST_FAUXQS`) with a fresh queue on it, and a SQLite database
    /// in a directory of its own: what a test that freezes the queue's
    /// server starts from.
    pub(crate) async fn with_queue_and_sqlite()
    -> Option<(Self, tempfile::TempDir, TestDb, TestQueue)> {
        let fauxqs = Self::start(&service("SLUICE_TEST_FAUXQS")?).await;
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::fresh("sqlite", dir.path()).await.unwrap();
        let queue = TestQueue::sqs(&fauxqs.endpoint, 30).await;
        Some((fauxqs, dir, db, queue))
    }

    pub(crate) async fn start(cli: &str) -> Self {
        let port = sluice_testkit::free_port();
        let child = Command::new("node")
            .arg(cli)
            .env("FAUXQS_PORT", port.to_string())
            .env("FAUXQS_HOST", "127.0.0.1")
            .env("FAUXQS_LOGGER", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fauxqs");
        let endpoint = format!("http://127.0.0.1:{port}");
        let health = format!("{endpoint}/health");
        eventually(Duration::from_secs(30), "fauxqs to answer", || {
            let health = health.clone();
            async move {
                reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        Self { child, endpoint }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
    }
}

impl Drop for OwnFauxqs {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The queue unreachable (its server frozen): POSTs answer 503 with
/// Retry-After within a bounded time; once it is back, every event that got
/// a 202 is in the database. On fauxqs only: it freezes a server of its own,
/// and what it checks is ingest's side of a stall, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_unreachable_then_back() {
    let (fauxqs, _dir, db, queue) = require!(OwnFauxqs::with_queue_and_sqlite().await);
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    let settings = Settings {
        batch: BatchSettings {
            enqueue_timeout: Duration::from_secs(2),
            ..BatchSettings::default()
        },
        ..Settings::default()
    };
    let ingest = RunningIngest::start(queue.shared(), settings).await;
    let client = reqwest::Client::new();
    let events = tune_events("outage", 300);
    let mut accepted: Vec<&Value> = Vec::new();
    let (status, _) = post(
        &client,
        &ingest.url(),
        Value::Array(events[..100].to_vec())
            .to_string()
            .into_bytes(),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    accepted.extend(&events[..100]);

    fauxqs.signal("-STOP");
    let started = Instant::now();
    let response = client
        .post(ingest.url())
        .header("content-type", "application/json")
        .body(Value::Array(events[100..200].to_vec()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "503 took {:?}",
        started.elapsed()
    );

    fauxqs.signal("-CONT");
    let (status, _) = post(
        &client,
        &ingest.url(),
        Value::Array(events[200..].to_vec())
            .to_string()
            .into_bytes(),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    accepted.extend(&events[200..]);

    let TestDb::Sqlite(path) = &db else {
        unreachable!()
    };
    let accepted: std::collections::HashSet<String> = accepted
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let loaded = || {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut stmt = c.prepare("SELECT event_id FROM tune_events").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect::<std::collections::HashSet<String>>()
    };
    eventually(WAIT, "every accepted event in the database", || {
        let present = loaded();
        let ok = accepted.is_subset(&present);
        async move { ok }
    })
    .await;
    assert_eq!(
        db.count("tune_events").await as usize,
        loaded().len(),
        "one row per event"
    );
    ingest.stop().await;
    writer.stop().await;
}
