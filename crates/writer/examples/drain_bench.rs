//! Benchmark: drain 200,000 login records packed in ~256 KiB envelope-v1
//! messages with one `sluice-writer` process, then bulk-load the same masked
//! rows straight into the same table as a reference, in the same run.
//!
//! The writer is timed from answering `/healthz` (connected, migrated) to
//! its last row committed, as the bare loads are from an open connection to
//! a migrated table; the time from starting the process is printed beside.
//!
//! Run with `scripts/bench` (starts fauxqs and a throwaway PostgreSQL,
//! builds release). Reads `SLUICE_TEST_SQS_ENDPOINT`,
//! `SLUICE_TEST_DATABASE_URL`, `BENCH_ROWS` (default 200000) and
//! `BENCH_DATABASES` (default `postgres,sqlite`).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use sluice_core::classify::Classifier;
use sluice_core::idempotency::identity_key;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::queue::Queue;
use sluice_core::records::LoginRow;
use sluice_core::wire::{Envelope, KeySpan, decode_value};
use sluice_testkit::json::login_record;
use sqlx::Connection;

const KEY: [u8; 32] = [42u8; 32];
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
const COMMITTED_ROWS: &str =
    "SELECT CAST(COALESCE(SUM(row_count), 0) AS BIGINT) FROM sluice_receipts";

fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| login_record(i, format!("bench-{i:08}-{}", "0123456789abcdef0123")))
        .collect()
}

/// Packs records into envelopes whose encoded body stays under the limit;
/// with `keyed`, as if they came in requests of 100 with an
/// `Idempotency-Key` each (an identity per record, beside the events).
fn pack(records: &[Value], keyed: bool) -> Vec<String> {
    let probe = Envelope::new(records[..1000.min(records.len())].to_vec())
        .encode()
        .len();
    let per_message = ((MAX_MESSAGE_BYTES as f64 * 0.95) / (probe as f64 / 1000.0)) as usize;
    records
        .chunks(per_message.max(1))
        .enumerate()
        .map(|(m, c)| {
            let mut envelope = Envelope::new(c.to_vec());
            if keyed {
                let first = m * per_message.max(1);
                let end = first + c.len();
                let mut start = first;
                while start < end {
                    let count = (end - start).min(100 - start % 100);
                    let key = identity_key(format!("bench-{}", start / 100).as_bytes());
                    envelope.idempotency.push(KeySpan(
                        start - first,
                        key,
                        (start % 100) as u64,
                        count,
                    ));
                    start += count;
                }
            }
            let body = envelope.encode();
            assert!(
                body.len() <= MAX_MESSAGE_BYTES,
                "envelope too large: {}",
                body.len()
            );
            body
        })
        .collect()
}

async fn fresh_pg(admin: &str) -> String {
    let name = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Counts the rows committed so far, from the receipts: a few rows to sum,
/// where counting `user_logins` would scan the growing table on every poll
/// and compete with the writer it measures. One connection for the whole
/// drain: a new PostgreSQL connection per poll costs a backend process.
enum Counter {
    Postgres(sqlx::PgConnection),
    Sqlite(rusqlite::Connection),
}

impl Counter {
    async fn open(db: &str) -> Self {
        match db.strip_prefix("sqlite://") {
            Some(path) => Counter::Sqlite(rusqlite::Connection::open(path).unwrap()),
            None => Counter::Postgres(sqlx::PgConnection::connect(db).await.unwrap()),
        }
    }

    /// 0 until the writer has created the receipts table.
    async fn committed(&mut self) -> i64 {
        match self {
            Counter::Sqlite(c) => c.query_row(COMMITTED_ROWS, [], |r| r.get(0)).unwrap_or(0),
            Counter::Postgres(c) => sqlx::query_scalar(COMMITTED_ROWS)
                .fetch_one(c)
                .await
                .unwrap_or(0),
        }
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised name.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

struct Drain {
    /// From the writer answering `/healthz` (connected, migrated, its
    /// metrics installed) to the last row committed: the bare loads, too,
    /// are timed from an open connection to a migrated table.
    seconds: f64,
    /// From starting the process to the last row committed.
    with_start_seconds: f64,
    peak_rss_kib: u64,
    cpu_seconds: f64,
}

async fn drain(endpoint: &str, bodies: &[String], db_url: &str, rows: i64) -> Drain {
    let queue = sluice_testkit::fresh_queue(endpoint, &[]).await;
    for body in bodies {
        let out = queue.send_batch(std::slice::from_ref(body)).await.unwrap();
        assert!(out.failed.is_empty());
    }
    // target/<profile>/examples/drain_bench → target/<profile>/sluice-writer
    let exe = std::env::current_exe().unwrap();
    let writer = exe
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("sluice-writer");
    assert!(
        writer.exists(),
        "build the writer first: cargo build --release -p sluice-writer"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut counter = Counter::open(db_url).await;
    let started = Instant::now();
    let mut child = Command::new(&writer)
        .current_dir(dir.path())
        .env("QUEUE_URL", queue.url())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("DATABASE_URL", db_url)
        .env(
            "PII_KEY",
            base64::engine::general_purpose::STANDARD.encode(KEY),
        )
        .env("WRITER_ADDR", format!("127.0.0.1:{port}"))
        .env("WRITER_WAIT_SECS", "1")
        .env(
            "RUST_LOG",
            std::env::var("BENCH_WRITER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let http = reqwest::Client::new();
    while !http
        .get(&healthz)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the writer did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = Instant::now();
    while counter.committed().await < rows {
        assert!(Instant::now() < deadline, "drain did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = ready.elapsed().as_secs_f64();
    let with_start_seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_kib(child.id());
    let cpu = cpu_seconds(child.id());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    Drain {
        seconds,
        with_start_seconds,
        peak_rss_kib: peak,
        cpu_seconds: cpu,
    }
}

fn masked_rows(records: &[Value]) -> Vec<LoginRow> {
    let masker = Masker::new(
        Keyring::new(PiiKey::from_bytes(&KEY), vec![]),
        Policy::default(),
    );
    let classifier = Classifier::new(masker, 65_536);
    classifier
        .message_rows("bare".into(), decode_value(Value::Array(records.to_vec())))
        .logins
}

/// The reference: UNNEST in 5,000-row statements, no receipts, no queue.
async fn bare_postgres(url: &str, rows: &[LoginRow]) -> f64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let started = Instant::now();
    for chunk in rows.chunks(5_000) {
        let col = |f: fn(&LoginRow) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date) \
             SELECT * FROM UNNEST($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::int[], $7::date[])",
        )
        .bind(col(|r| Some(r.user_id.clone())))
        .bind(col(|r| r.device_type.clone()))
        .bind(col(|r| r.masked_ip.clone()))
        .bind(col(|r| r.masked_device_id.clone()))
        .bind(col(|r| r.locale.clone()))
        .bind(chunk.iter().map(|r| r.app_version).collect::<Vec<_>>())
        .bind(vec![today; chunk.len()])
        .execute(&mut c)
        .await
        .unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// The other reference: one binary `COPY … FROM STDIN` of every row, with
/// the sink's own encoder (`copy_logins`), no receipts, no queue.
async fn bare_postgres_copy(url: &str, rows: &[LoginRow]) -> f64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let started = Instant::now();
    let copied = sluice_core::sink::postgres::copy_logins(&mut c, rows, today)
        .await
        .unwrap();
    assert_eq!(copied, rows.len() as u64);
    started.elapsed().as_secs_f64()
}

/// Both bare PostgreSQL loads, UNNEST into `unnest_db` (migrated), COPY
/// into a fresh database, printed; returns the seconds of the faster one,
/// the one the writer is held to.
async fn bare_postgres_fastest(admin: &str, unnest_db: &str, rows: &[LoginRow]) -> f64 {
    let copy_db = fresh_pg(admin).await;
    migrate(&copy_db).await;
    let unnest = bare_postgres(unnest_db, rows).await;
    let copy = bare_postgres_copy(&copy_db, rows).await;
    let n = rows.len() as f64;
    println!(
        "postgres  bare UNNEST: {:>9.0} rows/s ({unnest:.2} s)   bare COPY binary: {:>9.0} rows/s ({copy:.2} s)   fastest: {}",
        n / unnest,
        n / copy,
        if copy < unnest { "COPY" } else { "UNNEST" }
    );
    unnest.min(copy)
}

/// The reference: one cached INSERT per row, 10,000 rows per transaction,
/// WAL with synchronous=FULL like the writer.
fn bare_sqlite(path: &str, rows: &[LoginRow]) -> f64 {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    let started = Instant::now();
    for chunk in rows.chunks(10_000) {
        let tx = c.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap();
            for r in chunk {
                stmt.execute(rusqlite::params![
                    r.user_id,
                    r.device_type,
                    r.masked_ip,
                    r.masked_device_id,
                    r.locale,
                    r.app_version,
                    today
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed().as_secs_f64()
}

async fn migrate(url: &str) {
    let db = sluice_core::config::DatabaseUrl::parse(url).unwrap();
    sluice_core::sink::connect(&db, 1)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("SLUICE_TEST_SQS_ENDPOINT").expect("SLUICE_TEST_SQS_ENDPOINT");
    let admin = std::env::var("SLUICE_TEST_DATABASE_URL").expect("SLUICE_TEST_DATABASE_URL");
    let n: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let records = records(n);
    let bodies = pack(&records, false);
    let keyed_bodies = pack(&records, true);
    let rows = masked_rows(&records);
    println!(
        "{n} login records in {} envelope-v1 messages (~{} KiB each, {} records each)",
        bodies.len(),
        bodies[0].len() / 1024,
        records.len().div_ceil(bodies.len())
    );
    let dir = tempfile::tempdir().unwrap();
    let databases = std::env::var("BENCH_DATABASES").unwrap_or_else(|_| "postgres,sqlite".into());
    for kind in databases.split(',').map(str::trim) {
        assert!(
            matches!(kind, "postgres" | "sqlite"),
            "BENCH_DATABASES: {kind}?"
        );
        let (writer_db, bare_db, keyed_db) = if kind == "postgres" {
            (
                fresh_pg(&admin).await,
                fresh_pg(&admin).await,
                fresh_pg(&admin).await,
            )
        } else {
            let p = |s: &str| format!("sqlite://{}", dir.path().join(s).display());
            (p("writer.db"), p("bare.db"), p("keyed.db"))
        };
        migrate(&bare_db).await;
        let d = drain(&endpoint, &bodies, &writer_db, n as i64).await;
        let bare = if kind == "postgres" {
            bare_postgres_fastest(&admin, &bare_db, &rows).await
        } else {
            let path = bare_db.trim_start_matches("sqlite://").to_owned();
            let rows = rows.clone();
            tokio::task::spawn_blocking(move || bare_sqlite(&path, &rows))
                .await
                .unwrap()
        };
        let writer_rate = n as f64 / d.seconds;
        let bare_rate = n as f64 / bare;
        println!(
            "{kind:8}  writer: {writer_rate:>9.0} rows/s ({:.2} s; {:.2} s from exec, ratio from exec {:.2}; CPU {:.2} s, peak RSS {} MiB)   bare bulk load: {bare_rate:>9.0} rows/s ({bare:.2} s)   ratio {:.2}",
            d.seconds,
            d.with_start_seconds,
            bare / d.with_start_seconds,
            d.cpu_seconds,
            d.peak_rss_kib / 1024,
            writer_rate / bare_rate
        );
        let k = drain(&endpoint, &keyed_bodies, &keyed_db, n as i64).await;
        let keyed_rate = n as f64 / k.seconds;
        println!(
            "{kind:8}  keyed:  {keyed_rate:>9.0} rows/s ({:.2} s; {:.2} s from exec; CPU {:.2} s, peak RSS {} MiB)   keyed/unkeyed {:.2}",
            k.seconds,
            k.with_start_seconds,
            k.cpu_seconds,
            k.peak_rss_kib / 1024,
            keyed_rate / writer_rate
        );
    }
}
