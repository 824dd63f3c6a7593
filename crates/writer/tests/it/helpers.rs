//! Shared test helpers: services from the environment, fresh queues and
//! databases, a writer running in-process, and polling with deadlines.
//!
//! Services are read from the environment (`scripts/test` starts them):
//! `SLUICE_TEST_SQS_ENDPOINT`, `SLUICE_TEST_DATABASE_URL` (an admin URL; each
//! test makes its own database) and `SLUICE_TEST_PG_BIN` (server binaries,
//! for tests that stop and start their own cluster). When one is missing the
//! test is skipped — or fails, under `SLUICE_REQUIRE_SERVICES=1`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use base64::Engine;
use serde_json::Value;
use sluice_core::config::DatabaseUrl;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::queue::Queue;
use sluice_core::records::LoginRow;
use sluice_core::sink::{self, Sink};
use sluice_writer::configuration::Tuning;
use sluice_writer::startup::Application;
use sqlx::Connection;

/// The key every test masks with; the binary gets it as `PII_KEY`.
pub const TEST_KEY: [u8; 32] = [42u8; 32];

pub fn test_key_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(TEST_KEY)
}

pub fn masker() -> Masker {
    Masker::new(
        Keyring::new(PiiKey::from_bytes(&TEST_KEY), vec![]),
        Policy::default(),
    )
}

pub use sluice_testkit::{Service, eventually, metric_value, poll_until, require, service};

// ---------------------------------------------------------------- queues

/// Which queue a test runs on: an SQS emulator (a service: skipped when
/// absent), fauxqs or moto, or the embedded SQLite queue (a file: always
/// runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// fauxqs (`SLUICE_TEST_SQS_ENDPOINT`).
    Sqs,
    /// moto (`SLUICE_TEST_SQS_ENDPOINT_MOTO`).
    Moto,
    Embedded,
}

/// A fresh queue of either backend.
///
/// Visibility: the writer asks for `Tuning::visibility` on every receive and
/// extension, on both backends, so a queue's own default matters only to a
/// caller that receives without one; `visibility_secs` sets that default on
/// SQS and is otherwise unused.
pub struct TestQueue {
    pub queue: Arc<dyn Queue>,
    pub backend: Backend,
    url: String,
    /// The emulator's endpoint (SQS only).
    endpoint: Option<String>,
    /// The embedded queue itself, for its dead-letter queue.
    embedded: Option<sluice_core::queue::sqlite::SqliteQueue>,
    /// Holds the embedded queue's file.
    _dir: Option<tempfile::TempDir>,
}

impl TestQueue {
    /// A fresh queue, or `None` when the backend's service is absent.
    pub async fn new(backend: Backend, visibility_secs: u32) -> Option<Self> {
        match backend {
            Backend::Sqs => {
                let endpoint = service("SLUICE_TEST_SQS_ENDPOINT")?;
                Some(Self::sqs(&endpoint, visibility_secs).await)
            }
            Backend::Moto => {
                let endpoint = service("SLUICE_TEST_SQS_ENDPOINT_MOTO")?;
                let mut queue = Self::sqs(&endpoint, visibility_secs).await;
                queue.backend = Backend::Moto;
                Some(queue)
            }
            Backend::Embedded => Some(Self::embedded()),
        }
    }

    /// A fresh, uniquely named queue on the emulator at `endpoint`.
    pub async fn sqs(endpoint: &str, visibility_secs: u32) -> Self {
        let visibility = visibility_secs.to_string();
        let queue = sluice_testkit::fresh_queue(
            endpoint,
            &[(QueueAttributeName::VisibilityTimeout, &visibility)],
        )
        .await;
        Self {
            queue: Arc::new(queue.clone()),
            backend: Backend::Sqs,
            url: queue.url().to_owned(),
            endpoint: Some(endpoint.to_owned()),
            embedded: None,
            _dir: None,
        }
    }

    /// A fresh embedded queue in a temporary folder of its own.
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = sluice_testkit::fresh_embedded_queue(dir.path());
        Self {
            // An absolute path, so `sqlite:///…`.
            url: format!("sqlite://{}", queue.path().display()),
            queue: Arc::new(queue.clone()),
            backend: Backend::Embedded,
            endpoint: None,
            embedded: Some(queue),
            _dir: Some(dir),
        }
    }

    /// The `QUEUE_URL` a spawned binary is given.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn shared(&self) -> Arc<dyn Queue> {
        Arc::clone(&self.queue)
    }

    /// The variables that point a spawned binary at this queue.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("QUEUE_URL", self.url.clone())];
        if let Some(endpoint) = &self.endpoint {
            env.extend([
                ("AWS_ENDPOINT_URL", endpoint.clone()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ]);
        }
        env
    }

    /// What `sluice-writer serve` needs to drain this queue into
    /// `database_url`: the queue's variables, the tests' key, a port of the
    /// OS's choosing and one-second receive waits (so that it stops
    /// briskly); then `extra`, which may add or override (the last of a
    /// name wins when spawned).
    pub fn serve_env(
        &self,
        database_url: String,
        extra: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        env.extend([
            ("DATABASE_URL", database_url),
            ("PII_KEY", test_key_base64()),
            ("WRITER_ADDR", "127.0.0.1:0".to_owned()),
            ("WRITER_WAIT_SECS", "1".to_owned()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    }

    /// Waits up to `timeout` until every message is deleted; `what` names
    /// the moment when it times out.
    pub async fn until_empty(&self, timeout: Duration, what: &str) {
        eventually(timeout, what, || async { self.remaining().await == 0 }).await;
    }

    /// Sends bodies ten at a time; every entry must be accepted.
    pub async fn send(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let out = self.queue.send_batch(chunk).await.expect("send batch");
            assert!(out.failed.is_empty(), "send failures: {:?}", out.failed);
        }
    }

    /// Messages visible plus in flight.
    pub async fn remaining(&self) -> u64 {
        let (visible, in_flight) = self.counts().await;
        visible + in_flight
    }

    /// (visible, in flight).
    pub async fn counts(&self) -> (u64, u64) {
        let c = self.queue.counts().await.expect("queue counts");
        (c.visible, c.in_flight)
    }

    /// Messages in the dead-letter queue (the embedded queue's; the SQS
    /// test queues have none).
    pub async fn dead_letters(&self) -> u64 {
        match &self.embedded {
            Some(queue) => {
                let c = queue
                    .dead_letter_queue()
                    .counts()
                    .await
                    .expect("DLQ counts");
                c.visible + c.in_flight
            }
            None => 0,
        }
    }
}

/// Generates, for each `name => case(args)`, one `#[tokio::test]` per queue
/// backend: `sqs::name` calls `case(Backend::Sqs, args)` (fauxqs),
/// `moto::name` calls `case(Backend::Moto, args)` and `embedded::name` calls
/// `case(Backend::Embedded, args)`, so a suite's body is written once and
/// runs on all three. moto is the second SQS server, so that a test tuned to
/// one server's behaviour shows up; it is slow (~20 ms per send, ~130 ms per
/// receive, seconds per call at a depth of a few thousand), but these suites
/// keep its queues shallow: all of them run on it in about 40 s.
macro_rules! on_both_queues {
    ($($name:ident => $case:ident($($arg:expr),* $(,)?);)+) => {
        mod sqs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$case(crate::helpers::Backend::Sqs, $($arg),*).await;
                }
            )+
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$case(crate::helpers::Backend::Moto, $($arg),*).await;
                }
            )+
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$case(crate::helpers::Backend::Embedded, $($arg),*).await;
                }
            )+
        }
    };
}

// ---------------------------------------------------------------- databases

/// A fresh PostgreSQL database on the server at `SLUICE_TEST_DATABASE_URL`.
pub async fn fresh_postgres(admin_url: &str) -> String {
    sluice_testkit::postgres::fresh_database(admin_url)
        .await
        .url
}

/// A database of either kind, for assertions.
#[derive(Debug, Clone)]
pub enum TestDb {
    Postgres(String),
    Sqlite(PathBuf),
}

/// A `user_logins` row as read back: the library's own row (so the columns
/// are listed once, where the sinks write them) and the date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOut {
    pub row: LoginRow,
    pub create_date: Option<String>,
}

/// Tests read a login's columns as its own fields (`login.user_id`).
impl std::ops::Deref for LoginOut {
    type Target = LoginRow;

    fn deref(&self) -> &LoginRow {
        &self.row
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedOut {
    pub message_key: String,
    pub reason: String,
    pub payload: String,
    pub payload_format: String,
}

impl TestDb {
    /// A fresh database of the given kind: `postgres` or `sqlite`.
    pub async fn fresh(kind: &str, dir: &Path) -> Option<Self> {
        match kind {
            "postgres" => {
                let admin = service("SLUICE_TEST_DATABASE_URL")?;
                Some(TestDb::Postgres(fresh_postgres(&admin).await))
            }
            _ => Some(TestDb::Sqlite(
                dir.join(format!("{}.db", uuid::Uuid::now_v7().simple())),
            )),
        }
    }

    pub fn url(&self) -> DatabaseUrl {
        match self {
            TestDb::Postgres(url) => DatabaseUrl::Postgres(url.clone().into()),
            TestDb::Sqlite(path) => DatabaseUrl::Sqlite(path.clone()),
        }
    }

    pub fn url_string(&self) -> String {
        match self {
            TestDb::Postgres(url) => url.clone(),
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    pub async fn sink(&self) -> Arc<dyn Sink> {
        let sink = sink::connect(&self.url(), 4).await.expect("connect sink");
        sink.migrate().await.expect("migrate");
        sink
    }

    /// Runs statements (DDL in tests).
    pub async fn execute(&self, sql: &str) {
        match self {
            TestDb::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            TestDb::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                c.execute_batch(sql).unwrap();
            }
        }
    }

    /// Row count of a table; 0 when the table does not exist yet or the
    /// database is unreachable (tests poll through outages).
    /// Rows in every table a record can end in: its kind's, or rejected.
    pub async fn rows_of_any_kind(&self) -> i64 {
        let mut rows = 0;
        for table in [
            "user_logins",
            "tune_events",
            "tune_adjustments",
            "rejected_records",
        ] {
            rows += self.count(table).await;
        }
        rows
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            TestDb::Postgres(url) => {
                let Ok(mut c) = sqlx::PgConnection::connect(url).await else {
                    return -1;
                };
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or(0)
            }
            TestDb::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(path).ok()?;
                    c.busy_timeout(Duration::from_secs(5)).ok()?;
                    c.query_row(&sql, [], |r| r.get::<_, i64>(0)).ok()
                })
                .await
                .unwrap()
                .unwrap_or(0)
            }
        }
    }

    /// Waits up to `timeout` until `table` holds exactly `rows` rows;
    /// `what` names the moment when it times out.
    pub async fn until_rows(&self, table: &str, rows: i64, timeout: Duration, what: &str) {
        eventually(timeout, what, || async { self.count(table).await == rows }).await;
    }

    /// Every `user_logins` row, by user id; read as text on both databases
    /// (one query path), the app version parsed back.
    pub async fn logins(&self) -> Vec<LoginOut> {
        let sql = "SELECT user_id, device_type, masked_ip, masked_device_id, locale, \
                   CAST(app_version AS TEXT), CAST(create_date AS TEXT) FROM user_logins \
                   ORDER BY user_id";
        self.text_rows(sql)
            .await
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let mut next = || r.next().unwrap();
                LoginOut {
                    row: LoginRow {
                        user_id: next().unwrap(),
                        device_type: next(),
                        masked_ip: next(),
                        masked_device_id: next(),
                        locale: next(),
                        app_version: next().map(|v| v.parse().unwrap()),
                    },
                    create_date: next(),
                }
            })
            .collect()
    }

    /// Every `rejected_records` row, in the order stored.
    pub async fn rejected(&self) -> Vec<RejectedOut> {
        let sql =
            "SELECT message_key, reason, payload, payload_format FROM rejected_records ORDER BY id";
        self.text_rows(sql)
            .await
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter().map(Option::unwrap);
                let mut next = || r.next().unwrap();
                RejectedOut {
                    message_key: next(),
                    reason: next(),
                    payload: next(),
                    payload_format: next(),
                }
            })
            .collect()
    }

    /// Every value of every user table as text, for PII searches.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        for table in [
            "user_logins",
            "rejected_records",
            "sluice_receipts",
            "tune_events",
            "tune_adjustments",
            "sluice_idempotency",
        ] {
            match self {
                TestDb::Postgres(url) => {
                    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                    let sql = format!("SELECT CAST(t.* AS TEXT) FROM {table} t");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                    out.push_str(&rows.join("\n"));
                }
                TestDb::Sqlite(_) => {}
            }
        }
        if let TestDb::Sqlite(path) = self {
            // The file's bytes, WAL included: what is at rest.
            for suffix in ["", "-wal"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                if let Ok(bytes) = std::fs::read(p) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        out
    }
}

/// Waits (two minutes at most each) until `table` holds exactly `rows`
/// rows and then until the queue is empty: everything sent has landed.
pub async fn all_landed(db: &TestDb, queue: &TestQueue, table: &str, rows: i64) {
    let timeout = Duration::from_secs(120);
    db.until_rows(table, rows, timeout, &format!("{rows} rows in {table}"))
        .await;
    queue.until_empty(timeout, "the queue drained").await;
}

// ---------------------------------------------------------------- writers

/// Tuning that makes tests quick: short polls and lingers.
pub fn test_tuning() -> Tuning {
    Tuning {
        consumers: 2,
        wait: Duration::from_secs(1),
        linger: Duration::from_millis(50),
        visibility: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(5),
        ..Tuning::default()
    }
}

/// A writer running in this process.
pub struct RunningWriter {
    service: Service,
}

impl RunningWriter {
    pub async fn start(queue: Arc<dyn Queue>, db: &TestDb, tuning: Tuning) -> Self {
        let sink = db.sink().await;
        Self::start_with_sink(queue, sink, tuning).await
    }

    pub async fn start_with_sink(
        queue: Arc<dyn Queue>,
        sink: Arc<dyn Sink>,
        tuning: Tuning,
    ) -> Self {
        Self::start_masking(queue, sink, masker(), tuning).await
    }

    /// A writer masking with `masker` rather than the tests' key.
    pub async fn start_masking(
        queue: Arc<dyn Queue>,
        sink: Arc<dyn Sink>,
        masker: Masker,
        tuning: Tuning,
    ) -> Self {
        let app = Application::build("127.0.0.1:0".parse().unwrap(), queue, sink, masker, tuning)
            .await
            .unwrap();
        Self {
            service: Service::spawn(app.local_addr(), |t| app.run(t)),
        }
    }

    /// Signals shutdown and waits for the writer to finish.
    pub async fn stop(self) {
        self.service.stop("writer").await;
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(self.service.url(path)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A counter's value summed over its label sets, from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        metric_value(&text, name)
    }
}

// ---------------------------------------------------------------- data

/// The project's copy of the reference login fixture: 100 records, one of
/// which is not a login.
pub fn login_fixture() -> Vec<Value> {
    serde_json::from_str(include_str!("../fixtures/login-records.json")).unwrap()
}

/// Every string value of the fixture's `ip` and `device_id` fields.
pub fn fixture_pii() -> Vec<String> {
    login_fixture()
        .iter()
        .flat_map(|r| {
            ["ip", "device_id"].map(|k| r.get(k).and_then(Value::as_str).map(str::to_owned))
        })
        .flatten()
        .collect()
}

/// `n` generated login records with unique user ids and ips.
pub fn generated_logins(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| sluice_testkit::json::login_record(i, format!("{tag}-{i:07}")))
        .collect()
}

/// Envelope-v1 bodies of `per_message` events each.
pub fn envelope_bodies(records: &[Value], per_message: usize) -> Vec<String> {
    records
        .chunks(per_message)
        .map(|chunk| sluice_core::wire::Envelope::new(chunk.to_vec()).encode())
        .collect()
}

// ---------------------------------------------------------------- TUNE

/// The project's copy of the reference TUNE click (`tune-click.json`).
pub fn tune_click_fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/tune-click.json")).unwrap()
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// Rows of a query whose columns are all text (cast them in the query:
    /// `CAST(x AS TEXT)` works on both databases).
    pub async fn text_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            TestDb::Postgres(url) => {
                use sqlx::Row;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                            .collect()
                    })
                    .collect()
            }
            TestDb::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                let mut stmt = c.prepare(sql).unwrap();
                let columns = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..columns)
                        .map(|i| r.get::<_, Option<String>>(i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    /// SQL for a timestamp column as whole Unix seconds, as text.
    pub fn epoch_sql(&self, column: &str) -> String {
        if self.is_postgres() {
            format!("CAST(CAST(EXTRACT(EPOCH FROM {column}) AS bigint) AS TEXT)")
        } else {
            format!("CAST(strftime('%s', {column}) AS TEXT)")
        }
    }

    /// SQL for a top-level field of a JSON column, as text.
    pub fn json_sql(&self, column: &str, field: &str) -> String {
        if self.is_postgres() {
            format!("{column}->>'{field}'")
        } else {
            format!("CAST(json_extract({column}, '$.{field}') AS TEXT)")
        }
    }
}
