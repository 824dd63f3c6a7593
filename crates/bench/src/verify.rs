//! The end-to-end check: every accepted event in the database, once.
//!
//! While waiting, a cheap count of this run's rows is polled every 100 ms;
//! once it reaches the accepted count, the run's ids (and `loaded_at`) are
//! read and compared with what was accepted, event by event. Rows are found
//! by id prefix (`LIKE '<run-id>-%'`); run ids have no `-`, so no other
//! run's ids match, and ids are matched exactly again when read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use hdrhistogram::Histogram;
use sluice_core::config::{DatabaseUrl, ExposeSecret};

use crate::generate::{Generator, Plan};
use crate::load::latency_histogram;

/// The escape character of every LIKE pattern here (`ESCAPE '!'`): not a
/// backslash, whose meaning in a string literal differs between databases
/// and settings.
const LIKE_ESCAPE: char = '!';

/// The LIKE pattern that matches `<run-id>-<anything>`, with the pattern
/// characters of the run id escaped.
pub fn like_prefix_pattern(run_id: &str) -> String {
    let mut pattern = String::with_capacity(run_id.len() + 4);
    for ch in run_id.chars() {
        if matches!(ch, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(ch);
    }
    pattern.push_str("-%");
    pattern
}

/// `n` of an id `<run-id>-<n>`, when the id is one of this run's.
pub fn event_number(id: &str, run_id: &str) -> Option<u64> {
    let digits = id.strip_prefix(run_id)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A `loaded_at` read as text (SQLite: RFC 3339 UTC, or SQLite's own
/// `YYYY-MM-DD HH:MM:SS[.fff]`, taken as UTC), in µs since the epoch.
pub fn parse_timestamp_text(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Seconds (possibly fractional) since the epoch to µs.
fn seconds_to_us(seconds: f64) -> i64 {
    (seconds * 1_000_000.0).round() as i64
}

/// The two tables a run can land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    TuneEvents,
    UserLogins,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::TuneEvents => "tune_events",
            Table::UserLogins => "user_logins",
        }
    }

    fn id_column(self) -> &'static str {
        match self {
            Table::TuneEvents => "event_id",
            Table::UserLogins => "user_id",
        }
    }

    /// `COUNT(*), COUNT(DISTINCT id)` of the run's rows. Fixed text per table:
    /// nothing user-supplied is ever spliced into SQL (the pattern is bound).
    fn count_sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Table::TuneEvents, true) => {
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM tune_events WHERE event_id LIKE $1 ESCAPE '!'"
            }
            (Table::TuneEvents, false) => {
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM tune_events WHERE event_id LIKE ?1 ESCAPE '!'"
            }
            (Table::UserLogins, true) => {
                "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_logins WHERE user_id LIKE $1 ESCAPE '!'"
            }
            (Table::UserLogins, false) => {
                "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_logins WHERE user_id LIKE ?1 ESCAPE '!'"
            }
        }
    }

    /// The run's ids, with `loaded_at` for TUNE events (seconds since the
    /// epoch on PostgreSQL, whatever the column holds on SQLite).
    fn rows_sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Table::TuneEvents, true) => {
                "SELECT event_id, EXTRACT(EPOCH FROM loaded_at)::float8 FROM tune_events WHERE event_id LIKE $1 ESCAPE '!'"
            }
            (Table::TuneEvents, false) => {
                "SELECT event_id, loaded_at FROM tune_events WHERE event_id LIKE ?1 ESCAPE '!'"
            }
            (Table::UserLogins, true) => {
                "SELECT user_id, NULL::float8 FROM user_logins WHERE user_id LIKE $1 ESCAPE '!'"
            }
            (Table::UserLogins, false) => {
                "SELECT user_id, NULL FROM user_logins WHERE user_id LIKE ?1 ESCAPE '!'"
            }
        }
    }
}

/// One row of the run: its id and, for TUNE events, `loaded_at` in µs.
type Row = (String, Option<i64>);

/// A read-only view of the writer's database.
pub enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Self> {
        match url {
            DatabaseUrl::Postgres(raw) => {
                let cannot = |e: &dyn std::fmt::Display| {
                    anyhow!("DATABASE_URL: cannot connect to PostgreSQL ({e})")
                };
                // One plain connection first: a pool that cannot connect only
                // says it timed out, this says why (refused, auth, no such
                // database).
                let options: sqlx::postgres::PgConnectOptions =
                    raw.expose_secret().parse().map_err(|e| cannot(&e))?;
                let probe = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::ConnectOptions::connect(&options),
                )
                .await
                .map_err(|_| cannot(&"no answer within 10 s"))?
                .map_err(|e| cannot(&e))?;
                sqlx::Connection::close(probe).await.ok();
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(|e| cannot(&e))?;
                Ok(Db::Postgres(pool))
            }
            DatabaseUrl::Sqlite(path) => {
                let conn = open_sqlite(path)?;
                Ok(Db::Sqlite(Arc::new(Mutex::new(conn))))
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// `(COUNT(*), COUNT(DISTINCT id))` of the rows matching `pattern`.
    pub async fn counts(&self, table: Table, pattern: &str) -> anyhow::Result<(u64, u64)> {
        let sql = table.count_sql(matches!(self, Db::Postgres(_)));
        let (rows, distinct) = match self {
            Db::Postgres(pool) => sqlx::query_as::<_, (i64, i64)>(sql)
                .bind(pattern)
                .fetch_one(pool)
                .await
                .map_err(|e| query_error(table, e))?,
            Db::Sqlite(conn) => {
                let conn = conn.clone();
                let pattern = pattern.to_owned();
                tokio::task::spawn_blocking(move || -> anyhow::Result<(i64, i64)> {
                    let conn = conn
                        .lock()
                        .map_err(|_| anyhow!("SQLite connection poisoned"))?;
                    conn.query_row(sql, [&pattern], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(|e| query_error(table, e))
                })
                .await??
            }
        };
        Ok((rows.max(0) as u64, distinct.max(0) as u64))
    }

    /// Every row matching `pattern`: id and `loaded_at` (TUNE only).
    pub async fn rows(&self, table: Table, pattern: &str) -> anyhow::Result<Vec<Row>> {
        let sql = table.rows_sql(matches!(self, Db::Postgres(_)));
        match self {
            Db::Postgres(pool) => {
                let rows = sqlx::query_as::<_, (String, Option<f64>)>(sql)
                    .bind(pattern)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| query_error(table, e))?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at)| (id, at.map(seconds_to_us)))
                    .collect())
            }
            Db::Sqlite(conn) => {
                let conn = conn.clone();
                let pattern = pattern.to_owned();
                tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Row>> {
                    let conn = conn
                        .lock()
                        .map_err(|_| anyhow!("SQLite connection poisoned"))?;
                    let mut stmt = conn.prepare(sql).map_err(|e| query_error(table, e))?;
                    let rows = stmt
                        .query_map([&pattern], |r| {
                            let id: String = r.get(0)?;
                            let at: rusqlite::types::Value = r.get(1)?;
                            Ok((id, sqlite_time_us(&at)))
                        })
                        .map_err(|e| query_error(table, e))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| query_error(table, e))?;
                    Ok(rows)
                })
                .await?
            }
        }
    }

    /// Before the load: the tables answer (and `tune_events` has
    /// `loaded_at`), and no row carries this run's id prefix yet.
    pub async fn preflight(&self, tables: &[Table], pattern: &str) -> anyhow::Result<()> {
        for &table in tables {
            let (rows, _) = self.counts(table, pattern).await?;
            if rows > 0 {
                return Err(anyhow!(
                    "{} already has {rows} rows whose {} starts with this run id; pick another --run-id",
                    table.name(),
                    table.id_column()
                ));
            }
            // Reads no row (there are none yet), but fails when a column
            // is missing.
            self.rows(table, pattern).await?;
        }
        Ok(())
    }
}

fn open_sqlite(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    if !path.exists() {
        return Err(anyhow!(
            "DATABASE_URL: SQLite file {} does not exist (start the writer first: it creates it)",
            path.display()
        ));
    }
    // Read-only: the bench never writes, and WAL lets it read while the
    // writer commits.
    let conn = rusqlite::Connection::open_with_flags(
        PathBuf::from(path),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("DATABASE_URL: cannot open SQLite file {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

fn sqlite_time_us(value: &rusqlite::types::Value) -> Option<i64> {
    use rusqlite::types::Value;
    match value {
        Value::Text(text) => parse_timestamp_text(text),
        Value::Integer(secs) => secs.checked_mul(1_000_000),
        Value::Real(secs) => Some(seconds_to_us(*secs)),
        Value::Null | Value::Blob(_) => None,
    }
}

fn query_error(table: Table, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "reading {}: {e} (has the writer applied its migrations?)",
        table.name()
    )
}

/// What was expected in one table, what was found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCheck {
    pub table: &'static str,
    /// Accepted events that belong in this table.
    pub expected: u64,
    /// Accepted events found at least once.
    pub found: u64,
    /// Accepted events not found by the deadline.
    pub missing: u64,
    /// Accepted events found more than once.
    pub duplicated_events: u64,
    /// `COUNT(*) - COUNT(DISTINCT id)` over the run's rows.
    pub duplicate_rows: u64,
    /// Rows of events whose request was not accepted (a failed request may
    /// still have enqueued part of its events).
    pub unaccepted_rows: u64,
    /// The first few missing ids, for a look in the logs.
    pub missing_sample: Vec<String>,
}

/// The verification's results.
#[derive(Debug)]
pub struct Verification {
    pub database: &'static str,
    pub tables: Vec<TableCheck>,
    /// Per TUNE event: `loaded_at` minus when its request's 2xx arrived.
    pub end_to_end: Histogram<u64>,
    /// Events whose `loaded_at` is earlier than the 2xx's arrival (counted
    /// as 0 in `end_to_end`): the writer committed before the answer reached
    /// the bench.
    pub loaded_before_answer: u64,
    /// TUNE rows without a readable `loaded_at`.
    pub without_loaded_at: u64,
    /// Latest `loaded_at` of the run, µs since the epoch.
    pub last_loaded_at_us: Option<i64>,
    pub waited: Duration,
    pub timed_out: bool,
}

/// Which table event `n` belongs in and whether its request was accepted.
pub struct Expectation<'a> {
    pub generator: &'a Generator,
    pub plan: Plan,
    pub accepted_at_us: &'a [Option<i64>],
}

impl Expectation<'_> {
    fn table_of(&self, n: u64) -> Table {
        if self.generator.kind_of(n).is_tune() {
            Table::TuneEvents
        } else {
            Table::UserLogins
        }
    }

    fn accepted_at(&self, n: u64) -> Option<i64> {
        self.accepted_at_us
            .get(self.plan.request_of(n))
            .copied()
            .flatten()
    }

    /// Accepted events per table.
    pub fn expected(&self, table: Table) -> u64 {
        (0..self.plan.total)
            .filter(|&n| self.table_of(n) == table && self.accepted_at(n).is_some())
            .count() as u64
    }

    /// Compares the rows read from `table` with what was accepted.
    pub fn check(&self, table: Table, rows: &[Row], e2e: &mut E2e) -> TableCheck {
        let run_id = self.generator.run_id();
        let mut seen = vec![0u32; self.plan.total as usize];
        let mut check = TableCheck {
            table: table.name(),
            expected: self.expected(table),
            ..TableCheck::default()
        };
        for (id, loaded_at) in rows {
            let Some(n) = event_number(id, run_id).filter(|&n| n < self.plan.total) else {
                continue; // Not an id of this run (e.g. SQLite's case-blind LIKE).
            };
            let slot = &mut seen[n as usize];
            *slot = slot.saturating_add(1);
            if *slot > 1 {
                check.duplicate_rows += 1;
            }
            match self.accepted_at(n) {
                None => check.unaccepted_rows += 1,
                Some(answered) if table == Table::TuneEvents && *slot == 1 => {
                    e2e.record(answered, *loaded_at);
                }
                Some(_) => {}
            }
        }
        for n in 0..self.plan.total {
            if self.table_of(n) != table || self.accepted_at(n).is_none() {
                continue;
            }
            match seen[n as usize] {
                0 => {
                    check.missing += 1;
                    if check.missing_sample.len() < 5 {
                        check
                            .missing_sample
                            .push(crate::generate::event_id(run_id, n));
                    }
                }
                1 => check.found += 1,
                _ => {
                    check.found += 1;
                    check.duplicated_events += 1;
                }
            }
        }
        check
    }
}

/// End-to-end latency of TUNE events, accumulated row by row.
pub struct E2e {
    pub histogram: Histogram<u64>,
    pub loaded_before_answer: u64,
    pub without_loaded_at: u64,
    pub last_loaded_at_us: Option<i64>,
}

impl Default for E2e {
    fn default() -> Self {
        Self {
            histogram: latency_histogram(),
            loaded_before_answer: 0,
            without_loaded_at: 0,
            last_loaded_at_us: None,
        }
    }
}

impl E2e {
    /// One event: its request's 2xx arrived at `answered_us`, its row
    /// committed at `loaded_at_us`.
    pub fn record(&mut self, answered_us: i64, loaded_at_us: Option<i64>) {
        let Some(loaded) = loaded_at_us else {
            self.without_loaded_at += 1;
            return;
        };
        self.last_loaded_at_us = Some(self.last_loaded_at_us.map_or(loaded, |l| l.max(loaded)));
        let delta = loaded - answered_us;
        if delta < 0 {
            self.loaded_before_answer += 1;
        }
        self.histogram.saturating_record(delta.max(0) as u64);
    }
}

/// Waits (polling every `poll`) until every accepted event is in the
/// database or `wait` has passed, then checks each table event by event.
pub async fn verify(
    db: &Db,
    expect: &Expectation<'_>,
    tables: &[Table],
    wait: Duration,
    poll: Duration,
) -> anyhow::Result<Verification> {
    let pattern = like_prefix_pattern(expect.generator.run_id());
    let targets: Vec<(Table, u64)> = tables.iter().map(|&t| (t, expect.expected(t))).collect();
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_full_read: Option<Vec<u64>> = None;
    loop {
        let mut distinct = Vec::with_capacity(targets.len());
        for &(table, _) in &targets {
            distinct.push(db.counts(table, &pattern).await?.1);
        }
        let timed_out = start.elapsed() >= wait;
        let enough = targets
            .iter()
            .zip(&distinct)
            .all(|(&(_, want), &got)| got >= want);
        // Read the rows when the counts say everything may be there (and
        // they changed since the last read), or at the deadline.
        if timed_out || (enough && last_full_read.as_ref() != Some(&distinct)) {
            let mut e2e = E2e::default();
            let mut checks = Vec::with_capacity(targets.len());
            for &(table, _) in &targets {
                let rows = db.rows(table, &pattern).await?;
                checks.push(expect.check(table, &rows, &mut e2e));
            }
            let complete = checks.iter().all(|c| c.missing == 0);
            if timed_out || complete {
                return Ok(Verification {
                    database: db.kind(),
                    tables: checks,
                    end_to_end: e2e.histogram,
                    loaded_before_answer: e2e.loaded_before_answer,
                    without_loaded_at: e2e.without_loaded_at,
                    last_loaded_at_us: e2e.last_loaded_at_us,
                    waited: start.elapsed(),
                    timed_out: !complete,
                });
            }
            last_full_read = Some(distinct.clone());
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            let parts: Vec<String> = targets
                .iter()
                .zip(&distinct)
                .map(|(&(table, want), got)| format!("{} {got}/{want}", table.name()))
                .collect();
            eprintln!(
                "  … {:>6.1} s  loaded: {}",
                start.elapsed().as_secs_f64(),
                parts.join(", ")
            );
        }
        let left = wait.saturating_sub(start.elapsed());
        tokio::time::sleep(poll.min(left.max(Duration::from_millis(1)))).await;
    }
}

#[cfg(test)]
mod tests {
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
        let v = rt
            .block_on(verify(
                &db,
                &expect,
                &[Table::TuneEvents],
                Duration::from_secs(10),
                Duration::from_millis(20),
            ))
            .unwrap();
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
        let v = rt
            .block_on(verify(
                &db,
                &expect,
                &[Table::TuneEvents],
                Duration::from_millis(150),
                Duration::from_millis(20),
            ))
            .unwrap();
        assert!(v.timed_out);
        assert_eq!(v.tables[0].missing, 4);
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
