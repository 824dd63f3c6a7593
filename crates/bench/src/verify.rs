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
use sqlx::AssertSqlSafe;

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

    /// `SELECT {what}` of the run's rows: those whose id matches the bound
    /// pattern (`$1` on PostgreSQL, `?1` on SQLite). Only the fixed names
    /// here are spliced into SQL, never anything user-supplied.
    fn select_run(self, what: &str, postgres: bool) -> String {
        format!(
            "SELECT {what} FROM {} WHERE {} LIKE {} ESCAPE '!'",
            self.name(),
            self.id_column(),
            if postgres { "$1" } else { "?1" }
        )
    }

    /// `COUNT(*), COUNT(DISTINCT id)` of the run's rows.
    fn count_sql(self, postgres: bool) -> String {
        let id = self.id_column();
        self.select_run(&format!("COUNT(*), COUNT(DISTINCT {id})"), postgres)
    }

    /// The run's ids, with `loaded_at` for TUNE events (seconds since the
    /// epoch on PostgreSQL, whatever the column holds on SQLite).
    fn rows_sql(self, postgres: bool) -> String {
        let loaded_at = match (self, postgres) {
            (Table::TuneEvents, true) => "EXTRACT(EPOCH FROM loaded_at)::float8",
            (Table::TuneEvents, false) => "loaded_at",
            (Table::UserLogins, true) => "NULL::float8",
            (Table::UserLogins, false) => "NULL",
        };
        let id = self.id_column();
        self.select_run(&format!("{id}, {loaded_at}"), postgres)
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
            Db::Postgres(pool) => sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql))
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
                    conn.query_row(&sql, [&pattern], |r| Ok((r.get(0)?, r.get(1)?)))
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
                let rows = sqlx::query_as::<_, (String, Option<f64>)>(AssertSqlSafe(sql))
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
                    let mut stmt = conn.prepare(&sql).map_err(|e| query_error(table, e))?;
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
mod tests;
