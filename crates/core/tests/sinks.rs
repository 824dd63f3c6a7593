//! Integration tests of the PostgreSQL and SQLite sinks against real databases.
//!
//! PostgreSQL tests need an admin URL in `SLUICE_TEST_DATABASE_URL` and create
//! one fresh database per test, so they run in parallel without interfering.
//! Without the variable they print a skip line, unless
//! `SLUICE_REQUIRE_SERVICES=1` (CI), where a missing database is a failure.
//! SQLite tests use temporary files.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use sluice_core::idempotency::Identity;
use sluice_core::records::{
    AdjustAction, Decimal, LoginRow, MessageRows, PayloadFormat, RejectedRow, TuneAdjustmentRow,
    TuneEventRow, WriteBatch,
};
use sluice_core::sink::postgres::PostgresSink;
use sluice_core::sink::sqlite::SqliteSink;
use sluice_core::sink::{Sink, SinkError};
use sqlx::{Connection, PgConnection};

// ---------------------------------------------------------------- fixtures

const PLAIN_USER_LOGINS_DDL: &str = "CREATE TABLE user_logins (
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)";

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 17).expect("valid date")
}

fn login(user_id: &str, app_version: Option<i32>) -> LoginRow {
    LoginRow {
        user_id: user_id.to_owned(),
        device_type: Some("android".to_owned()),
        masked_ip: Some(format!("enc:k1:ip-{user_id}")),
        masked_device_id: Some(format!("enc:k1:dev-{user_id}")),
        locale: Some("RU".to_owned()),
        app_version,
    }
}

/// A login with every optional column NULL.
fn bare_login(user_id: &str) -> LoginRow {
    LoginRow {
        user_id: user_id.to_owned(),
        device_type: None,
        masked_ip: None,
        masked_device_id: None,
        locale: None,
        app_version: None,
    }
}

fn rejected(reason: &str) -> RejectedRow {
    RejectedRow {
        reason: reason.to_owned(),
        payload: r#"{"foo":"bar"}"#.to_owned(),
        payload_format: PayloadFormat::MaskedJson,
    }
}

fn message(key: &str, logins: Vec<LoginRow>, rejected: Vec<RejectedRow>) -> MessageRows {
    MessageRows {
        key: key.to_owned(),
        logins,
        rejected,
        ..MessageRows::default()
    }
}

fn amount(text: &str) -> Option<Decimal> {
    Some(Decimal::parse(text).expect("valid amount"))
}

fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid time")
        .with_timezone(&Utc)
}

/// A conversion with every column set.
fn tune_event(event_id: &str, payout: Option<&str>, revenue: Option<&str>) -> TuneEventRow {
    TuneEventRow {
        event_id: event_id.to_owned(),
        action: "conversion".to_owned(),
        occurred_at: Some(time("2016-10-10T19:19:12.250Z")),
        transaction_id: Some(format!("tx-{event_id}")),
        offer_id: Some(180),
        affiliate_id: Some(1039),
        advertiser_id: Some(9_000_000_000),
        payout: payout.and_then(amount),
        revenue: revenue.and_then(amount),
        currency: Some("EUR".to_owned()),
        country: Some("US".to_owned()),
        status: Some("approved".to_owned()),
        masked_ip: Some(format!("enc:k1:ip-{event_id}")),
        masked_session_ip: None,
        masked_user_agent: Some("hmac:k1:ua".to_owned()),
        masked_device_id: Some("enc:k1:dev".to_owned()),
        extra: r#"{"network_id":"N","aff_sub":"enc:k1:sub","nested":{"n":1}}"#.to_owned(),
    }
}

/// An adjustment of `event_id` with signed deltas.
fn tune_adjustment(
    event_id: &str,
    sequence: i64,
    action: AdjustAction,
    deltas: (i64, &str, &str),
    adjusted_at: &str,
) -> TuneAdjustmentRow {
    TuneAdjustmentRow {
        event_id: event_id.to_owned(),
        adjustment_sequence_id: sequence,
        adjust_action: action,
        adjusted_at: Some(time(adjusted_at)),
        num: Some(deltas.0),
        payout: amount(deltas.1),
        revenue: amount(deltas.2),
        current_payout: None,
        current_revenue: None,
        extra: r#"{"action":"conversion"}"#.to_owned(),
    }
}

fn tune_message(
    key: &str,
    events: Vec<TuneEventRow>,
    adjustments: Vec<TuneAdjustmentRow>,
) -> MessageRows {
    MessageRows {
        key: key.to_owned(),
        tune_events: events,
        tune_adjustments: adjustments,
        ..MessageRows::default()
    }
}

/// e1 twice in one batch (two messages) and one adjustment twice: one row each.
fn duplicate_tune_batch() -> WriteBatch {
    let adjustment = || {
        tune_adjustment(
            "e1",
            7,
            AdjustAction::Update,
            (-1, "-10", "-20"),
            "2016-10-11T00:00:00Z",
        )
    };
    let mut second_copy = tune_event("e1", Some("999"), None);
    second_copy.action = "click".to_owned();
    batch(vec![
        tune_message(
            "t1",
            vec![tune_event("e1", Some("10"), Some("20"))],
            vec![adjustment()],
        ),
        tune_message(
            "t2",
            vec![second_copy, tune_event("e2", None, None)],
            vec![adjustment()],
        ),
    ])
}

/// The view test's batches, in arrival order: an update (and a create) for
/// e1 before e1 itself; then e1 and e2; then a second update of e1.
fn view_batches() -> Vec<WriteBatch> {
    vec![
        batch(vec![tune_message(
            "early-adjustments",
            vec![],
            vec![
                tune_adjustment(
                    "e1",
                    2,
                    AdjustAction::Update,
                    (-1, "-12.50", "-20"),
                    "2016-10-12T00:00:00Z",
                ),
                // A create is a new event in TUNE's model, not a change.
                tune_adjustment(
                    "e1",
                    1,
                    AdjustAction::Create,
                    (1, "100", "100"),
                    "2016-10-13T00:00:00Z",
                ),
            ],
        )]),
        batch(vec![tune_message(
            "events",
            vec![
                tune_event("e1", Some("12.50"), Some("20.10")),
                tune_event("e2", Some("0.1"), None),
            ],
            vec![],
        )]),
        batch(vec![tune_message(
            "late-update",
            vec![],
            vec![tune_adjustment(
                "e1",
                3,
                AdjustAction::Update,
                (0, "0.25", "0"),
                "2016-10-11T00:00:00Z",
            )],
        )]),
    ]
}

fn batch(messages: Vec<MessageRows>) -> WriteBatch {
    WriteBatch {
        written_on: day(),
        messages,
    }
}

/// Two messages: m1 with two logins (one all-NULL), m2 with one login and
/// one rejected record.
fn sample_batch() -> WriteBatch {
    batch(vec![
        message(
            "m1",
            vec![login("u1", Some(2_003_000)), bare_login("u2")],
            vec![],
        ),
        message(
            "m2",
            vec![login("u3", Some(96_000))],
            vec![rejected("unrecognized record shape")],
        ),
    ])
}

/// Every table and view the migrations make.
const TABLES: [&str; 6] = [
    "user_logins",
    "sluice_receipts",
    "rejected_records",
    "tune_events",
    "tune_adjustments",
    "tune_events_current",
];

type Login = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
);

// ---------------------------------------------------------------- PostgreSQL

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The admin URL, or `None` (after a skip line) when PostgreSQL tests are off.
fn admin_url(test: &str) -> Option<String> {
    match std::env::var("SLUICE_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("SLUICE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "SLUICE_REQUIRE_SERVICES=1 but SLUICE_TEST_DATABASE_URL is not set; \
                     set it to a PostgreSQL admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
                );
            }
            eprintln!("skipping {test}: SLUICE_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// Replaces the database name in a PostgreSQL URL, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A fresh database for one test.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(admin_url: String) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "sluice_test_{}_{}_{nanos}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to SLUICE_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn sink(&self) -> PostgresSink {
        PostgresSink::connect(&self.url, 4)
            .await
            .expect("connect sink")
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect test database")
    }

    /// Drops the database; a failing test leaves it behind for inspection.
    async fn drop_db(self, sink: PostgresSink) {
        sink.pool().close().await;
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("connect admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop test database");
    }
}

/// Creates a database, or returns from the test when PostgreSQL tests are off.
macro_rules! pg_db {
    ($test:expr) => {
        match admin_url($test) {
            Some(url) => TestDb::create(url).await,
            None => return,
        }
    };
}

async fn pg_count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .expect("count rows")
}

async fn pg_receipts(conn: &mut PgConnection) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT message_key, row_count FROM sluice_receipts ORDER BY message_key")
        .fetch_all(conn)
        .await
        .expect("read receipts")
}

async fn pg_logins(conn: &mut PgConnection) -> Vec<Login> {
    sqlx::query_as(
        "SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version \
         FROM user_logins ORDER BY user_id",
    )
    .fetch_all(conn)
    .await
    .expect("read logins")
}

#[tokio::test]
async fn pg_migrate_twice_is_idempotent() {
    let db = pg_db!("pg_migrate_twice_is_idempotent");
    // Two writers starting at once against a fresh database.
    let (sink, other) = (db.sink().await, db.sink().await);
    let (a, b) = tokio::join!(sink.migrate(), other.migrate());
    a.expect("concurrent migrate a");
    b.expect("concurrent migrate b");
    other.pool().close().await;
    sink.migrate().await.expect("migrate again");
    let mut conn = db.conn().await;
    for table in TABLES {
        assert_eq!(pg_count(&mut conn, table).await, 0, "{table}");
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("migrations");
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(sink.kind(), "postgres");
    sink.ping().await.expect("ping");
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_writes_rows_and_receipts() {
    let db = pg_db!("pg_writes_rows_and_receipts");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");

    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(outcome.logins_written, 3);
    assert_eq!(outcome.rejected_written, 1);

    let mut conn = db.conn().await;
    assert_eq!(
        pg_logins(&mut conn).await,
        vec![
            (
                Some("u1".into()),
                Some("android".into()),
                Some("enc:k1:ip-u1".into()),
                Some("enc:k1:dev-u1".into()),
                Some("RU".into()),
                Some(2_003_000)
            ),
            (Some("u2".into()), None, None, None, None, None),
            (
                Some("u3".into()),
                Some("android".into()),
                Some("enc:k1:ip-u3".into()),
                Some("enc:k1:dev-u3".into()),
                Some("RU".into()),
                Some(96_000)
            ),
        ]
    );
    let dates: Vec<Option<NaiveDate>> =
        sqlx::query_scalar("SELECT DISTINCT create_date FROM user_logins")
            .fetch_all(&mut conn)
            .await
            .expect("dates");
    assert_eq!(dates, vec![Some(day())]);
    assert_eq!(
        pg_receipts(&mut conn).await,
        vec![("m1".into(), 2), ("m2".into(), 2)]
    );
    let rejected: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT message_key, reason, payload, payload_format FROM rejected_records")
            .fetch_all(&mut conn)
            .await
            .expect("rejected");
    assert_eq!(
        rejected,
        vec![(
            "m2".into(),
            "unrecognized record shape".into(),
            r#"{"foo":"bar"}"#.into(),
            "masked_json".into()
        )]
    );
    let committed_recently: bool = sqlx::query_scalar(
        "SELECT bool_and(committed_at > now() - interval '1 hour') FROM sluice_receipts",
    )
    .fetch_one(&mut conn)
    .await
    .expect("committed_at");
    assert!(committed_recently);
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_same_batch_again_is_all_duplicates() {
    let db = pg_db!("pg_same_batch_again_is_all_duplicates");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    sink.write(&sample_batch()).await.expect("first write");

    let again = sink.write(&sample_batch()).await.expect("second write");
    assert_eq!(again.duplicate_keys, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!((again.logins_written, again.rejected_written), (0, 0));

    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "user_logins").await, 3);
    assert_eq!(pg_count(&mut conn, "rejected_records").await, 1);
    assert_eq!(pg_count(&mut conn, "sluice_receipts").await, 2);
    db.drop_db(sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_same_batch_from_two_writers_lands_once() {
    let db = pg_db!("pg_same_batch_from_two_writers_lands_once");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    // SQS delivered the same messages to two writer replicas at once.
    let other = db.sink().await;
    let batch = sample_batch();
    let (a, b) = tokio::join!(sink.write(&batch), other.write(&batch));
    let (a, b) = (a.expect("writer a"), b.expect("writer b"));
    let mut duplicates = [a.duplicate_keys, b.duplicate_keys].concat();
    duplicates.sort();
    assert_eq!(duplicates, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!(a.logins_written + b.logins_written, 3);
    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "user_logins").await, 3);
    assert_eq!(pg_count(&mut conn, "rejected_records").await, 1);
    other.pool().close().await;
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_mixed_batch_writes_only_unseen_messages() {
    let db = pg_db!("pg_mixed_batch_writes_only_unseen_messages");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    sink.write(&batch(vec![message(
        "seen",
        vec![login("a", None)],
        vec![],
    )]))
    .await
    .expect("first write");

    let outcome = sink
        .write(&batch(vec![
            message("seen", vec![login("a-again", None)], vec![rejected("x")]),
            message("unseen", vec![login("b", Some(1))], vec![]),
            // A key repeated inside one batch is written once.
            message("unseen", vec![login("b-again", Some(1))], vec![]),
            // A message with no rows still gets its receipt.
            message("empty", vec![], vec![]),
        ]))
        .await
        .expect("mixed write");
    assert_eq!(
        outcome.duplicate_keys,
        vec!["seen".to_owned(), "unseen".to_owned()]
    );
    assert_eq!((outcome.logins_written, outcome.rejected_written), (1, 0));

    let mut conn = db.conn().await;
    let users: Vec<Option<String>> =
        sqlx::query_scalar("SELECT user_id FROM user_logins ORDER BY user_id")
            .fetch_all(&mut conn)
            .await
            .expect("users");
    assert_eq!(users, vec![Some("a".into()), Some("b".into())]);
    assert_eq!(pg_count(&mut conn, "rejected_records").await, 0);
    assert_eq!(
        pg_receipts(&mut conn).await,
        vec![
            ("empty".into(), 0),
            ("seen".into(), 1),
            ("unseen".into(), 1)
        ]
    );
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_works_with_precreated_user_logins() {
    let db = pg_db!("pg_works_with_precreated_user_logins");
    let mut conn = db.conn().await;
    sqlx::query(PLAIN_USER_LOGINS_DDL)
        .execute(&mut conn)
        .await
        .expect("create plain user_logins");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate over existing table");
    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert_eq!(outcome.logins_written, 3);
    assert_eq!(pg_logins(&mut conn).await.len(), 3);
    // The table was left exactly as it was: seven columns.
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'user_logins'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("columns");
    assert_eq!(columns, 7);
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_value_too_long_is_permanent_and_leaves_nothing() {
    let db = pg_db!("pg_value_too_long_is_permanent_and_leaves_nothing");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");

    let secret = "device-type-that-is-far-too-long-SECRET-1234567890";
    let mut bad = login("u1", None);
    bad.device_type = Some(secret.to_owned());
    let err = sink
        .write(&batch(vec![
            message("good", vec![login("u0", None)], vec![]),
            message("bad", vec![bad], vec![]),
        ]))
        .await
        .expect_err("value too long must fail");
    let SinkError::Permanent(text) = &err else {
        panic!("expected a permanent error, got {err:?}");
    };
    assert!(text.contains("22001"), "{text}");
    assert!(text.contains("user_logins"), "{text}");
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!err.to_string().contains("SECRET"), "{err}");

    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "sluice_receipts").await, 0);
    assert_eq!(pg_count(&mut conn, "user_logins").await, 0);

    // The pool is healthy afterwards and a good batch goes through.
    let outcome = sink
        .write(&batch(vec![message(
            "good",
            vec![login("u0", None)],
            vec![],
        )]))
        .await
        .expect("good write");
    assert_eq!(outcome.logins_written, 1);
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_missing_table_is_permanent() {
    let db = pg_db!("pg_missing_table_is_permanent");
    let sink = db.sink().await;
    // Not migrated: relation does not exist (42P01).
    let err = sink.write(&sample_batch()).await.expect_err("no tables");
    assert!(
        matches!(&err, SinkError::Permanent(t) if t.contains("42P01")),
        "{err:?}"
    );
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_twenty_thousand_rows_in_one_write() {
    let db = pg_db!("pg_twenty_thousand_rows_in_one_write");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    // 20,000 rows x 7 columns would be 140,000 parameters in a multi-row
    // VALUES insert, over PostgreSQL's 65,535 limit.
    let messages = (0..20)
        .map(|m| {
            let logins = (0..1_000)
                .map(|i| login(&format!("user-{m}-{i}"), Some(i)))
                .collect();
            message(&format!("big-{m}"), logins, vec![rejected("r")])
        })
        .collect();
    let outcome = sink.write(&batch(messages)).await.expect("big write");
    assert_eq!(outcome.logins_written, 20_000);
    assert_eq!(outcome.rejected_written, 20);
    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "user_logins").await, 20_000);
    assert_eq!(pg_count(&mut conn, "sluice_receipts").await, 20);
    db.drop_db(sink).await;
}

// ---------------------------------------------------------------- PostgreSQL, TUNE

/// A row of tune_events_current: event_id, payout, revenue (as text: exact
/// numeric), num_delta, adjustment_count, last_adjusted_at.
type PgCurrent = (
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<DateTime<Utc>>,
);

async fn pg_current(conn: &mut PgConnection) -> Vec<PgCurrent> {
    sqlx::query_as(
        "SELECT event_id, payout::text, revenue::text, num_delta, adjustment_count, \
         last_adjusted_at FROM tune_events_current ORDER BY event_id",
    )
    .fetch_all(conn)
    .await
    .expect("read tune_events_current")
}

#[tokio::test]
async fn pg_tune_rows_round_trip() {
    let db = pg_db!("pg_tune_rows_round_trip");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");

    let bare = TuneEventRow {
        event_id: "e-bare".to_owned(),
        action: "impression".to_owned(),
        occurred_at: None,
        transaction_id: None,
        offer_id: None,
        affiliate_id: None,
        advertiser_id: None,
        payout: None,
        revenue: None,
        currency: None,
        country: None,
        status: None,
        masked_ip: None,
        masked_session_ip: None,
        masked_user_agent: None,
        masked_device_id: None,
        extra: "{}".to_owned(),
    };
    let mut create = tune_adjustment(
        "e-created",
        16_648_208_123_366,
        AdjustAction::Create,
        (1, "1.0", "2.0"),
        "2022-10-03T18:13:32Z",
    );
    create.current_payout = amount("1.0");
    create.current_revenue = amount("2.0");
    let outcome = sink
        .write(&batch(vec![tune_message(
            "m",
            vec![tune_event("e1", Some("12.50"), Some("0.1")), bare],
            vec![create],
        )]))
        .await
        .expect("write");
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (2, 1)
    );
    assert_eq!(outcome.rows_written(), 3);

    let mut conn = db.conn().await;
    type Typed = (
        String,
        String,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let typed: Vec<Typed> = sqlx::query_as(
        "SELECT event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
         advertiser_id, payout::text, revenue::text, currency, country, status \
         FROM tune_events ORDER BY event_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("typed columns");
    assert_eq!(
        typed,
        vec![
            (
                "e-bare".into(),
                "impression".into(),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ),
            (
                "e1".into(),
                "conversion".into(),
                Some(time("2016-10-10T19:19:12.250Z")),
                Some("tx-e1".into()),
                Some(180),
                Some(1039),
                Some(9_000_000_000),
                Some("12.50".into()),
                Some("0.1".into()),
                Some("EUR".into()),
                Some("US".into()),
                Some("approved".into())
            ),
        ]
    );
    type Masked = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        sqlx::types::Json<serde_json::Value>,
        bool,
    );
    let masked: Masked = sqlx::query_as(
        "SELECT masked_ip, masked_session_ip, masked_user_agent, masked_device_id, extra, \
         loaded_at > now() - interval '1 hour' FROM tune_events WHERE event_id = 'e1'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("masked columns");
    assert_eq!(
        masked,
        (
            Some("enc:k1:ip-e1".into()),
            None,
            Some("hmac:k1:ua".into()),
            Some("enc:k1:dev".into()),
            sqlx::types::Json(serde_json::json!(
                {"network_id": "N", "aff_sub": "enc:k1:sub", "nested": {"n": 1}}
            )),
            true
        )
    );
    let extra_type: String =
        sqlx::query_scalar("SELECT jsonb_typeof(extra) FROM tune_events WHERE event_id = 'e-bare'")
            .fetch_one(&mut conn)
            .await
            .expect("extra type");
    assert_eq!(extra_type, "object");

    type Adjustment = (
        String,
        i64,
        i16,
        Option<DateTime<Utc>>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let adjustment: Adjustment = sqlx::query_as(
        "SELECT event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, \
         payout::text, revenue::text, current_payout::text, current_revenue::text, \
         extra->>'action' FROM tune_adjustments",
    )
    .fetch_one(&mut conn)
    .await
    .expect("adjustment");
    assert_eq!(
        adjustment,
        (
            "e-created".into(),
            16_648_208_123_366,
            1,
            Some(time("2022-10-03T18:13:32Z")),
            Some(1),
            Some("1.0".into()),
            Some("2.0".into()),
            Some("1.0".into()),
            Some("2.0".into()),
            "conversion".into()
        )
    );
    assert_eq!(pg_receipts(&mut conn).await, vec![("m".into(), 3)]);
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_tune_duplicates_are_skipped() {
    let db = pg_db!("pg_tune_duplicates_are_skipped");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");

    let outcome = sink.write(&duplicate_tune_batch()).await.expect("write");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (2, 1)
    );
    let mut conn = db.conn().await;
    // The first copy is the one kept.
    let kept: (String, String) =
        sqlx::query_as("SELECT action, payout::text FROM tune_events WHERE event_id = 'e1'")
            .fetch_one(&mut conn)
            .await
            .expect("kept row");
    assert_eq!(kept, ("conversion".into(), "10".into()));

    // The same event and adjustment in a new message (TUNE sent them again).
    let outcome = sink
        .write(&batch(vec![tune_message(
            "t3",
            vec![tune_event("e1", Some("1"), None)],
            vec![tune_adjustment(
                "e1",
                7,
                AdjustAction::Update,
                (0, "5", "5"),
                "2016-10-11T00:00:00Z",
            )],
        )]))
        .await
        .expect("write again");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (0, 0)
    );
    // And the first batch redelivered: receipts skip it.
    let again = sink
        .write(&duplicate_tune_batch())
        .await
        .expect("redelivery");
    assert_eq!(again.duplicate_keys, vec!["t1".to_owned(), "t2".to_owned()]);
    assert_eq!(again.rows_written(), 0);

    assert_eq!(pg_count(&mut conn, "tune_events").await, 2);
    assert_eq!(pg_count(&mut conn, "tune_adjustments").await, 1);
    assert_eq!(pg_count(&mut conn, "sluice_receipts").await, 3);
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_tune_view_applies_updates_even_when_they_come_first() {
    let db = pg_db!("pg_tune_view_applies_updates_even_when_they_come_first");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    let mut conn = db.conn().await;
    let [early, events, late] = <[WriteBatch; 3]>::try_from(view_batches()).expect("3 batches");

    sink.write(&early).await.expect("early adjustments");
    assert_eq!(pg_count(&mut conn, "tune_adjustments").await, 2);
    assert!(pg_current(&mut conn).await.is_empty(), "no event yet");

    sink.write(&events).await.expect("events");
    let day = |d: &str| Some(time(&format!("{d}T00:00:00Z")));
    assert_eq!(
        pg_current(&mut conn).await,
        vec![
            (
                "e1".into(),
                Some("0.00".into()),
                Some("0.10".into()),
                -1,
                1,
                day("2016-10-12")
            ),
            ("e2".into(), Some("0.1".into()), None, 0, 0, None),
        ]
    );

    sink.write(&late).await.expect("second update");
    assert_eq!(
        pg_current(&mut conn).await[0],
        (
            "e1".into(),
            Some("0.25".into()),
            Some("0.10".into()),
            -1,
            2,
            day("2016-10-12")
        )
    );
    // The view carries the event's other columns unchanged.
    let (action, offer, masked_ip): (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT action, offer_id, masked_ip FROM tune_events_current WHERE event_id = 'e1'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("view columns");
    assert_eq!(
        (action.as_str(), offer, masked_ip.as_deref()),
        ("conversion", Some(180), Some("enc:k1:ip-e1"))
    );
    db.drop_db(sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_overlapping_tune_events_from_two_writers() {
    let db = pg_db!("pg_overlapping_tune_events_from_two_writers");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    let other = db.sink().await;
    // Different messages (keys) holding the same events in opposite orders:
    // sorted inserts keep the two transactions from deadlocking.
    let events: Vec<TuneEventRow> = (0..200)
        .map(|i| tune_event(&format!("e{i:03}"), Some("1"), None))
        .collect();
    let mut reversed = events.clone();
    reversed.reverse();
    let a = batch(
        events
            .chunks(20)
            .enumerate()
            .map(|(i, c)| tune_message(&format!("a{i}"), c.to_vec(), vec![]))
            .collect(),
    );
    let b = batch(
        reversed
            .chunks(20)
            .enumerate()
            .map(|(i, c)| tune_message(&format!("b{i}"), c.to_vec(), vec![]))
            .collect(),
    );
    let (ra, rb) = tokio::join!(sink.write(&a), other.write(&b));
    let (ra, rb) = (ra.expect("writer a"), rb.expect("writer b"));
    assert_eq!(ra.tune_events_written + rb.tune_events_written, 200);
    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "tune_events").await, 200);
    other.pool().close().await;
    db.drop_db(sink).await;
}

#[tokio::test]
async fn pg_unreachable_database_is_transient() {
    // Port 1 on localhost: connection refused, no server needed.
    let sink = PostgresSink::connect_with_timeout(
        "postgres://sluice:secret-password@127.0.0.1:1/sluice",
        1,
        Duration::from_millis(300),
    )
    .expect("lazy connect succeeds");
    let err = sink.ping().await.expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err:?}");
    let err = sink.write(&sample_batch()).await.expect_err("write");
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("secret-password"));

    let err = PostgresSink::connect("postgres://u:secret-password@host:notaport/db", 1)
        .await
        .expect_err("bad URL");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("secret-password"), "{err}");
}

// ---------------------------------------------------------------- SQLite

fn sqlite_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sluice.db");
    (dir, path)
}

async fn sqlite_sink(path: &Path) -> SqliteSink {
    let sink = SqliteSink::open(path).await.expect("open sqlite");
    sink.migrate().await.expect("migrate sqlite");
    sink
}

fn lite(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open sqlite for checks")
}

fn lite_count(path: &Path, table: &str) -> i64 {
    lite(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count rows")
}

fn lite_receipts(path: &Path) -> Vec<(String, i64)> {
    let conn = lite(path);
    let mut stmt = conn
        .prepare("SELECT message_key, row_count FROM sluice_receipts ORDER BY message_key")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn lite_logins(path: &Path) -> Vec<(Login, Option<String>)> {
    let conn = lite(path);
    let mut stmt = conn
        .prepare(
            "SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, \
             create_date FROM user_logins ORDER BY user_id",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((
            (
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ),
            r.get(6)?,
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test]
async fn sqlite_migrate_twice_is_idempotent() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    sink.migrate().await.expect("second migrate");
    // Another process (here: another connection) opening and migrating too.
    let other = SqliteSink::open(&path).await.expect("open again");
    other
        .migrate()
        .await
        .expect("migrate from a second connection");
    assert_eq!(lite_count(&path, "sluice_migrations"), 3);
    for table in TABLES {
        assert_eq!(lite_count(&path, table), 0, "{table}");
    }
    let mode: String = lite(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    assert_eq!(sink.kind(), "sqlite");
    sink.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_migrations_both_succeed() {
    let (_dir, path) = sqlite_file();
    let a = SqliteSink::open(&path).await.expect("open a");
    let b = SqliteSink::open(&path).await.expect("open b");
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("migrate a");
    rb.expect("migrate b");
    assert_eq!(lite_count(&path, "sluice_migrations"), 3);
}

#[tokio::test]
async fn sqlite_writes_rows_and_receipts() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;

    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(outcome.logins_written, 3);
    assert_eq!(outcome.rejected_written, 1);

    let date = Some("2024-05-17".to_owned());
    assert_eq!(
        lite_logins(&path),
        vec![
            (
                (
                    Some("u1".into()),
                    Some("android".into()),
                    Some("enc:k1:ip-u1".into()),
                    Some("enc:k1:dev-u1".into()),
                    Some("RU".into()),
                    Some(2_003_000)
                ),
                date.clone()
            ),
            (
                (Some("u2".into()), None, None, None, None, None),
                date.clone()
            ),
            (
                (
                    Some("u3".into()),
                    Some("android".into()),
                    Some("enc:k1:ip-u3".into()),
                    Some("enc:k1:dev-u3".into()),
                    Some("RU".into()),
                    Some(96_000)
                ),
                date
            ),
        ]
    );
    assert_eq!(
        lite_receipts(&path),
        vec![("m1".into(), 2), ("m2".into(), 2)]
    );
    let conn = lite(&path);
    let rejected: (String, String, String, String, String) = conn
        .query_row(
            "SELECT message_key, reason, payload, payload_format, rejected_at FROM rejected_records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("rejected");
    assert_eq!(
        (
            rejected.0.as_str(),
            rejected.1.as_str(),
            rejected.2.as_str(),
            rejected.3.as_str()
        ),
        (
            "m2",
            "unrecognized record shape",
            r#"{"foo":"bar"}"#,
            "masked_json"
        )
    );
    // RFC 3339 UTC timestamps.
    chrono::DateTime::parse_from_rfc3339(&rejected.4).expect("rejected_at is RFC 3339");
    let committed_at: String = conn
        .query_row(
            "SELECT committed_at FROM sluice_receipts LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("committed_at");
    assert!(committed_at.ends_with('Z'), "{committed_at}");
    chrono::DateTime::parse_from_rfc3339(&committed_at).expect("committed_at is RFC 3339");
}

#[tokio::test]
async fn sqlite_same_batch_again_is_all_duplicates() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    sink.write(&sample_batch()).await.expect("first write");

    let again = sink.write(&sample_batch()).await.expect("second write");
    assert_eq!(again.duplicate_keys, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!((again.logins_written, again.rejected_written), (0, 0));
    assert_eq!(lite_count(&path, "user_logins"), 3);
    assert_eq!(lite_count(&path, "rejected_records"), 1);
    assert_eq!(lite_count(&path, "sluice_receipts"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_same_batch_from_two_writers_lands_once() {
    let (_dir, path) = sqlite_file();
    let a = sqlite_sink(&path).await;
    let b = SqliteSink::open(&path).await.expect("open b");
    let batch = sample_batch();
    let (ra, rb) = tokio::join!(a.write(&batch), b.write(&batch));
    let (ra, rb) = (ra.expect("writer a"), rb.expect("writer b"));
    let mut duplicates = [ra.duplicate_keys, rb.duplicate_keys].concat();
    duplicates.sort();
    assert_eq!(duplicates, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!(lite_count(&path, "user_logins"), 3);
    assert_eq!(lite_count(&path, "rejected_records"), 1);
}

#[tokio::test]
async fn sqlite_mixed_batch_writes_only_unseen_messages() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    sink.write(&batch(vec![message(
        "seen",
        vec![login("a", None)],
        vec![],
    )]))
    .await
    .expect("first write");

    let outcome = sink
        .write(&batch(vec![
            message("seen", vec![login("a-again", None)], vec![rejected("x")]),
            message("unseen", vec![login("b", Some(1))], vec![]),
            message("unseen", vec![login("b-again", Some(1))], vec![]),
            message("empty", vec![], vec![]),
        ]))
        .await
        .expect("mixed write");
    assert_eq!(
        outcome.duplicate_keys,
        vec!["seen".to_owned(), "unseen".to_owned()]
    );
    assert_eq!((outcome.logins_written, outcome.rejected_written), (1, 0));
    let users: Vec<Option<String>> = lite_logins(&path).into_iter().map(|(l, _)| l.0).collect();
    assert_eq!(users, vec![Some("a".into()), Some("b".into())]);
    assert_eq!(lite_count(&path, "rejected_records"), 0);
    assert_eq!(
        lite_receipts(&path),
        vec![
            ("empty".into(), 0),
            ("seen".into(), 1),
            ("unseen".into(), 1)
        ]
    );
}

#[tokio::test]
async fn sqlite_works_with_precreated_user_logins() {
    let (_dir, path) = sqlite_file();
    lite(&path)
        .execute_batch(PLAIN_USER_LOGINS_DDL)
        .expect("create plain user_logins");
    let sink = sqlite_sink(&path).await;
    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert_eq!(outcome.logins_written, 3);
    let logins = lite_logins(&path);
    assert_eq!(logins.len(), 3);
    // `date` has NUMERIC affinity in SQLite; the text date must survive it.
    assert!(
        logins
            .iter()
            .all(|(_, d)| d.as_deref() == Some("2024-05-17"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_sinks_write_concurrently() {
    let (_dir, path) = sqlite_file();
    let a = sqlite_sink(&path).await;
    let b = SqliteSink::open(&path).await.expect("open b");
    let batch_for = |prefix: &str| {
        batch(
            (0..50)
                .map(|m| {
                    let logins = (0..200)
                        .map(|i| login(&format!("{prefix}-{m}-{i}"), Some(i)))
                        .collect();
                    message(&format!("{prefix}-{m}"), logins, vec![])
                })
                .collect(),
        )
    };
    let (batch_a, batch_b) = (batch_for("a"), batch_for("b"));
    let task_a = tokio::spawn(async move {
        for chunk in batch_a.messages.chunks(5) {
            a.write(&batch(chunk.to_vec())).await?;
        }
        Ok::<_, SinkError>(())
    });
    let task_b = tokio::spawn(async move {
        for chunk in batch_b.messages.chunks(5) {
            b.write(&batch(chunk.to_vec())).await?;
        }
        Ok::<_, SinkError>(())
    });
    task_a.await.expect("join a").expect("writer a");
    task_b.await.expect("join b").expect("writer b");
    assert_eq!(lite_count(&path, "user_logins"), 2 * 50 * 200);
    assert_eq!(lite_count(&path, "sluice_receipts"), 100);
}

#[tokio::test]
async fn sqlite_locked_database_is_transient() {
    let (_dir, path) = sqlite_file();
    sqlite_sink(&path).await;
    let sink = SqliteSink::open_with_busy_timeout(&path, Duration::from_millis(50))
        .await
        .expect("open");
    // Another process holds the write lock for longer than the busy timeout.
    let holder = lite(&path);
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");
    let err = sink.write(&sample_batch()).await.expect_err("locked");
    assert!(err.is_transient(), "{err:?}");
    holder.execute_batch("ROLLBACK").expect("release");
    // Once released the same batch goes through.
    let outcome = sink
        .write(&sample_batch())
        .await
        .expect("write after unlock");
    assert_eq!(outcome.logins_written, 3);
}

// ---------------------------------------------------------------- SQLite, TUNE

/// A row of tune_events_current: event_id, payout, revenue, num_delta,
/// adjustment_count, last_adjusted_at.
type LiteCurrent = (String, Option<f64>, Option<f64>, i64, i64, Option<String>);

fn lite_current(path: &Path) -> Vec<LiteCurrent> {
    let conn = lite(path);
    let mut stmt = conn
        .prepare(
            "SELECT event_id, payout, revenue, num_delta, adjustment_count, last_adjusted_at \
             FROM tune_events_current ORDER BY event_id",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn sqlite_tune_rows_round_trip() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    let mut create = tune_adjustment(
        "e-created",
        16_648_208_123_366,
        AdjustAction::Create,
        (1, "1.0", "2.0"),
        "2022-10-03T18:13:32Z",
    );
    create.current_payout = amount("1.0");
    let outcome = sink
        .write(&batch(vec![tune_message(
            "m",
            vec![tune_event("e1", Some("12.50"), Some("0.1"))],
            vec![create],
        )]))
        .await
        .expect("write");
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (1, 1)
    );

    let conn = lite(&path);
    type Typed = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let typed: Typed = conn
        .query_row(
            "SELECT event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
             advertiser_id, payout, revenue, currency, country, status FROM tune_events",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                ))
            },
        )
        .expect("typed columns");
    assert_eq!(
        typed,
        (
            "e1".into(),
            "conversion".into(),
            Some("2016-10-10T19:19:12.250Z".into()),
            Some("tx-e1".into()),
            Some(180),
            Some(1039),
            Some(9_000_000_000),
            Some(12.5),
            Some(0.1),
            Some("EUR".into()),
            Some("US".into()),
            Some("approved".into())
        )
    );
    let (masked_ip, ua, network, loaded_at): (String, String, String, String) = conn
        .query_row(
            "SELECT masked_ip, masked_user_agent, json_extract(extra, '$.network_id'), loaded_at \
             FROM tune_events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("masked columns");
    assert_eq!(
        (masked_ip.as_str(), ua.as_str(), network.as_str()),
        ("enc:k1:ip-e1", "hmac:k1:ua", "N")
    );
    assert!(loaded_at.ends_with('Z'), "{loaded_at}");
    chrono::DateTime::parse_from_rfc3339(&loaded_at).expect("loaded_at is RFC 3339");

    type Adjustment = (
        String,
        i64,
        i64,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let adjustment: Adjustment = conn
        .query_row(
            "SELECT event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, payout, \
             revenue, current_payout, current_revenue FROM tune_adjustments",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .expect("adjustment");
    assert_eq!(
        adjustment,
        (
            "e-created".into(),
            16_648_208_123_366,
            1,
            Some("2022-10-03T18:13:32.000Z".into()),
            Some(1),
            Some(1.0),
            Some(2.0),
            Some(1.0),
            None
        )
    );
    assert_eq!(lite_receipts(&path), vec![("m".into(), 2)]);
}

#[tokio::test]
async fn sqlite_tune_duplicates_are_skipped() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    let outcome = sink.write(&duplicate_tune_batch()).await.expect("write");
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (2, 1)
    );
    let (action, payout): (String, f64) = lite(&path)
        .query_row(
            "SELECT action, payout FROM tune_events WHERE event_id = 'e1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("kept row");
    assert_eq!((action.as_str(), payout), ("conversion", 10.0));

    let outcome = sink
        .write(&batch(vec![tune_message(
            "t3",
            vec![tune_event("e1", Some("1"), None)],
            vec![tune_adjustment(
                "e1",
                7,
                AdjustAction::Update,
                (0, "5", "5"),
                "2016-10-11T00:00:00Z",
            )],
        )]))
        .await
        .expect("write again");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(outcome.rows_written(), 0);
    let again = sink
        .write(&duplicate_tune_batch())
        .await
        .expect("redelivery");
    assert_eq!(again.duplicate_keys, vec!["t1".to_owned(), "t2".to_owned()]);
    assert_eq!(again.rows_written(), 0);

    assert_eq!(lite_count(&path, "tune_events"), 2);
    assert_eq!(lite_count(&path, "tune_adjustments"), 1);
    assert_eq!(lite_count(&path, "sluice_receipts"), 3);
}

#[tokio::test]
async fn sqlite_tune_view_applies_updates_even_when_they_come_first() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    let [early, events, late] = <[WriteBatch; 3]>::try_from(view_batches()).expect("3 batches");

    sink.write(&early).await.expect("early adjustments");
    assert_eq!(lite_count(&path, "tune_adjustments"), 2);
    assert!(lite_current(&path).is_empty(), "no event yet");

    sink.write(&events).await.expect("events");
    let rows = lite_current(&path);
    assert_eq!(rows.len(), 2);
    let (id, payout, revenue, num, count, last) = &rows[0];
    assert_eq!(id, "e1");
    assert!(close(*payout, 0.0), "{payout:?}");
    assert!(close(*revenue, 0.1), "{revenue:?}");
    assert_eq!((*num, *count), (-1, 1));
    assert_eq!(last.as_deref(), Some("2016-10-12T00:00:00.000Z"));
    assert_eq!(rows[1].0, "e2");
    assert!(close(rows[1].1, 0.1));
    assert_eq!(
        (rows[1].2, rows[1].3, rows[1].4, rows[1].5.clone()),
        (None, 0, 0, None)
    );

    sink.write(&late).await.expect("second update");
    let (_, payout, revenue, num, count, last) = lite_current(&path).remove(0);
    assert!(close(payout, 0.25), "{payout:?}");
    assert!(close(revenue, 0.1), "{revenue:?}");
    assert_eq!((num, count), (-1, 2));
    assert_eq!(last.as_deref(), Some("2016-10-12T00:00:00.000Z"));
}

#[tokio::test]
async fn sqlite_creates_a_missing_folder_and_refuses_an_impossible_one() {
    let (dir, _) = sqlite_file();
    // A first run: data/sluice.db before data/ exists.
    let path = dir.path().join("no/such/dir/x.db");
    let sink = SqliteSink::open(&path).await.expect("folder created");
    sink.migrate().await.unwrap();
    assert!(path.is_file());
    // A folder that cannot be made (a file is in the way) is a permanent error.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let err = SqliteSink::open(&blocker.join("x.db"))
        .await
        .expect_err("cannot create a folder under a file");
    assert!(!err.is_transient(), "{err:?}");
}

// ---------------------------------------------------------------- idempotency

/// Message `key` with one login per identity `(k, i)`.
fn keyed(key: &str, ids: &[(&str, i64)]) -> MessageRows {
    let mut m = message(key, vec![], vec![]);
    m.identities = ids
        .iter()
        .map(|(k, i)| Identity {
            key: (*k).to_owned(),
            index: *i,
        })
        .collect();
    for (j, (k, i)) in ids.iter().enumerate() {
        m.logins.push(login(&format!("{k}-{i}"), None));
        m.note_origin(Some(j as u32));
    }
    m
}

/// Identities stored before, and repeated within one batch, are written
/// once; unkeyed rows and new identities are written.
async fn identities_are_claimed_once(sink: &dyn Sink) -> u64 {
    let first = batch(vec![keyed("a1", &[("k", 0), ("k", 1)])]);
    assert_eq!(sink.write(&first).await.expect("write").logins_written, 2);
    let mut retry = keyed("a2", &[("k", 1), ("k", 2)]);
    retry.logins.push(login("unkeyed", None));
    retry.note_origin(None);
    let again = batch(vec![retry, keyed("a3", &[("k", 2), ("j", 0)])]);
    let outcome = sink.write(&again).await.expect("write");
    // k-2 and unkeyed from a2, j-0 from a3; k-1 stored before, k-2 twice.
    assert_eq!(outcome.logins_written, 3);
    sink.purge_idempotency(Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("purge")
}

#[tokio::test]
async fn sqlite_identities_are_claimed_once() {
    let (_dir, path) = sqlite_file();
    let sink = sqlite_sink(&path).await;
    assert_eq!(identities_are_claimed_once(&sink).await, 4);
    assert_eq!(lite_count(&path, "user_logins"), 5);
    assert_eq!(lite_count(&path, "sluice_idempotency"), 0);
}

#[tokio::test]
async fn pg_identities_are_claimed_once() {
    let db = pg_db!("pg_identities_are_claimed_once");
    let sink = db.sink().await;
    sink.migrate().await.expect("migrate");
    assert_eq!(identities_are_claimed_once(&sink).await, 4);
    let mut conn = db.conn().await;
    assert_eq!(pg_count(&mut conn, "user_logins").await, 5);
    drop(conn);
    db.drop_db(sink).await;
}
