//! Tests of the id, time and pattern helpers and of the check against
//! real SQLite files.

use super::*;
use crate::args::Kind;

#[test]
fn like_pattern_escapes_and_anchors() {
    assert_eq!(like_prefix_pattern("0193abc"), "0193abc-%");
    assert_eq!(like_prefix_pattern("night_ly"), "night!_ly-%");
    assert_eq!(like_prefix_pattern("a%b!c"), "a!%b!!c-%");
}

#[test]
fn event_numbers_match_exactly() {
    assert_eq!(event_number("run1-0", "run1"), Some(0));
    assert_eq!(event_number("run1-12345", "run1"), Some(12345));
    assert_eq!(event_number("run1-", "run1"), None);
    assert_eq!(event_number("run1-12a", "run1"), None);
    assert_eq!(event_number("run12-3", "run1"), None);
    assert_eq!(event_number("RUN1-3", "run1"), None);
    assert_eq!(event_number("run1-+3", "run1"), None);
}

#[test]
fn timestamps_parse() {
    let expected = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:32.123Z")
        .unwrap()
        .timestamp_micros();
    assert_eq!(
        parse_timestamp_text("2026-11-22T10:15:32.123Z"),
        Some(expected)
    );
    assert_eq!(
        parse_timestamp_text("2026-11-22T11:15:32.123+01:00"),
        Some(expected)
    );
    assert_eq!(
        parse_timestamp_text("2026-11-22 10:15:32.123"),
        Some(expected)
    );
    assert_eq!(parse_timestamp_text("yesterday"), None);
    use rusqlite::types::Value;
    assert_eq!(sqlite_time_us(&Value::Integer(2)), Some(2_000_000));
    assert_eq!(sqlite_time_us(&Value::Real(1.5)), Some(1_500_000));
    assert_eq!(sqlite_time_us(&Value::Null), None);
}

/// The SQL prefix match, run by SQLite itself: this run's ids match,
/// a run whose id merely starts the same does not, nor do ids with `_`
/// or `%` where the run id has a literal one.
#[test]
fn prefix_matching_in_sqlite() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE tune_events (event_id TEXT PRIMARY KEY, action TEXT, loaded_at TEXT);
         CREATE TABLE user_logins (user_id TEXT, masked_ip TEXT);
         INSERT INTO tune_events VALUES
           ('run_1-0', 'click', '2026-11-22T10:00:00.000Z'),
           ('run_1-1', 'click', '2026-11-22T10:00:00.500Z'),
           ('run_1x-0', 'click', NULL),
           ('runX1-0', 'click', NULL),
           ('run_10-0', 'click', NULL),
           ('other-run_1-0', 'click', NULL);
         INSERT INTO user_logins VALUES ('run_1-2', 'x'), ('run_1-2', 'x'), ('run_1-3', 'x'), ('run_1', 'x');",
    )
    .unwrap();
    let db = Db::Sqlite(Arc::new(Mutex::new(conn)));
    let pattern = like_prefix_pattern("run_1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            db.counts(Table::TuneEvents, &pattern).await.unwrap(),
            (2, 2)
        );
        assert_eq!(
            db.counts(Table::UserLogins, &pattern).await.unwrap(),
            (3, 2)
        );
        let mut rows = db.rows(Table::TuneEvents, &pattern).await.unwrap();
        rows.sort();
        assert_eq!(rows[0].0, "run_1-0");
        assert_eq!(rows[1].1.unwrap() - rows[0].1.unwrap(), 500_000);
        // Preflight refuses a run id that already has rows...
        assert!(db.preflight(&[Table::TuneEvents], &pattern).await.is_err());
        // ...and accepts a fresh one.
        db.preflight(
            &[Table::TuneEvents, Table::UserLogins],
            &like_prefix_pattern("fresh"),
        )
        .await
        .unwrap();
    });
}

#[test]
fn preflight_names_a_missing_column() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE tune_events (event_id TEXT PRIMARY KEY);")
        .unwrap();
    let db = Db::Sqlite(Arc::new(Mutex::new(conn)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(db.preflight(&[Table::TuneEvents], "x-%"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("loaded_at") && err.contains("tune_events"),
        "{err}"
    );
    let err = rt
        .block_on(db.preflight(&[Table::UserLogins], "x-%"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("user_logins"), "{err}");
}

#[test]
fn check_finds_missing_duplicated_and_unaccepted() {
    let generator = Generator::new("r", Kind::Tune, 0);
    let plan = Plan::new(30, 10);
    // Request 1 (events 10..20) failed.
    let accepted = [Some(1_000_000), None, Some(2_000_000)];
    let expect = Expectation {
        generator: &generator,
        plan,
        accepted_at_us: &accepted,
    };
    assert_eq!(expect.expected(Table::TuneEvents), 20);
    let mut rows: Vec<Row> = Vec::new();
    for n in 0..30 {
        if n == 5 || n == 25 {
            continue; // missing
        }
        let request = plan.request_of(n);
        // Loaded 250 ms after the answer (or whenever, for request 1).
        let answered = accepted[request].unwrap_or(0);
        rows.push((format!("r-{n}"), Some(answered + 250_000)));
    }
    rows.push(("r-7".into(), Some(9_000_000))); // a duplicate
    rows.push(("r-99".into(), Some(0))); // beyond the run: ignored
    rows.push(("rr-1".into(), Some(0))); // another run: ignored
    let mut e2e = E2e::default();
    let check = expect.check(Table::TuneEvents, &rows, &mut e2e);
    assert_eq!(check.expected, 20);
    assert_eq!(check.found, 18);
    assert_eq!(check.missing, 2);
    assert_eq!(check.missing_sample, vec!["r-5", "r-25"]);
    assert_eq!(check.duplicated_events, 1);
    assert_eq!(check.duplicate_rows, 1);
    assert_eq!(check.unaccepted_rows, 10);
    // One latency per accepted event found, from its own request's answer.
    assert_eq!(e2e.histogram.len(), 18);
    assert_eq!(
        e2e.histogram.max(),
        e2e.histogram.highest_equivalent(250_000)
    );
    assert_eq!(e2e.loaded_before_answer, 0);
    assert_eq!(e2e.last_loaded_at_us, Some(2_250_000));
}

#[test]
fn e2e_clamps_rows_loaded_before_the_answer() {
    let mut e2e = E2e::default();
    e2e.record(1_000_000, Some(900_000));
    e2e.record(1_000_000, Some(1_300_000));
    e2e.record(1_000_000, None);
    assert_eq!(e2e.loaded_before_answer, 1);
    assert_eq!(e2e.without_loaded_at, 1);
    assert_eq!(e2e.histogram.len(), 2);
    assert_eq!(e2e.histogram.min(), 0);
}

/// `verify` of `tune_events` alone, waiting up to `wait`, polling every 20 ms.
fn verify_tune_events(
    rt: &tokio::runtime::Runtime,
    db: &Db,
    expect: &Expectation<'_>,
    wait: Duration,
) -> Verification {
    rt.block_on(verify(
        db,
        expect,
        &[Table::TuneEvents],
        wait,
        Duration::from_millis(20),
    ))
    .unwrap()
}

#[test]
fn verify_waits_for_rows_that_arrive_late() {
    let path = std::env::temp_dir().join(format!(
        "sluice-bench-verify-{}-{}.db",
        std::process::id(),
        crate::load::now_us()
    ));
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE tune_events (event_id TEXT PRIMARY KEY, loaded_at TEXT);",
        )
        .unwrap();
    let db = Db::Sqlite(Arc::new(Mutex::new(open_sqlite(&path).unwrap())));
    let generator = Generator::new("late", Kind::Tune, 0);
    let plan = Plan::new(4, 2);
    let accepted = [Some(0), Some(0)];
    let expect = Expectation {
        generator: &generator,
        plan,
        accepted_at_us: &accepted,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let inserter = std::thread::spawn(move || {
        for n in 0..4 {
            std::thread::sleep(Duration::from_millis(60));
            writer
                .execute(
                    "INSERT INTO tune_events VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    [format!("late-{n}")],
                )
                .unwrap();
        }
    });
    let v = verify_tune_events(&rt, &db, &expect, Duration::from_secs(10));
    inserter.join().unwrap();
    assert_eq!(v.tables[0].missing, 0, "{:?}", v.tables);
    assert_eq!(v.tables[0].duplicated_events, 0);
    assert!(!v.timed_out);
    assert_eq!(v.tables[0].found, 4);
    assert_eq!(v.end_to_end.len(), 4);
    assert!(v.waited >= Duration::from_millis(200));

    // Nothing more will come: the deadline ends the wait and reports.
    let generator = Generator::new("never", Kind::Tune, 0);
    let expect = Expectation {
        generator: &generator,
        plan,
        accepted_at_us: &accepted,
    };
    let v = verify_tune_events(&rt, &db, &expect, Duration::from_millis(150));
    assert!(v.timed_out);
    assert_eq!(v.tables[0].missing, 4);
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
