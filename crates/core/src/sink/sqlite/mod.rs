//! SQLite sink: one connection, one `BEGIN IMMEDIATE` transaction per batch.
//!
//! rusqlite is blocking, so every database call runs in
//! [`tokio::task::spawn_blocking`] on one connection behind an
//! `Arc<Mutex<Connection>>`; SQLite serialises writers anyway, so a pool
//! would only add lock contention. The connection runs in WAL mode with
//! `synchronous=FULL` (the WAL is synced at every commit: the queue message
//! is deleted right after, so a commit must survive power loss too; with
//! thousand-row batches that is one sync per batch) and a busy
//! timeout, because several writer processes may share one file:
//! `BEGIN IMMEDIATE` takes the write lock up front, so a second writer waits
//! in the busy handler instead of failing on a read-to-write upgrade, and
//! still-busy after the timeout is reported as [`SinkError::Transient`].
//!
//! A batch is written as, per message: `INSERT OR IGNORE` its receipt; if
//! that changed no row the message is a duplicate (its receipt exists), else
//! insert its rows with cached prepared statements; then commit once.
//!
//! Migrations are the files of `migrations/sqlite/`, embedded at build time
//! and applied by a small runner (see `MIGRATIONS`) that records versions in
//! `sluice_migrations`. The whole run is one `BEGIN IMMEDIATE` transaction, so
//! two processes migrating at once serialise and the second finds nothing to do.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior, params};

use super::{Sink, SinkError};
use crate::records::{
    Decimal, LoginRow, MessageRows, RejectedRow, TuneAdjustmentRow, TuneEventRow, WriteBatch,
    WriteOutcome,
};

/// How long a statement waits for another process's write lock before it
/// reports the database as busy (transient).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One embedded migration file.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// Every SQLite migration, in version order. To add one, put
/// `migrations/sqlite/000N_name.sql` next to the others and list it here.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "init",
        sql: include_str!("../../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        description: "tune",
        sql: include_str!("../../../../migrations/sqlite/0002_tune.sql"),
    },
    Migration {
        version: 3,
        description: "idempotency",
        sql: include_str!("../../../../migrations/sqlite/0003_idempotency.sql"),
    },
];

/// Writes batches into one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteSink {
    /// Opens (creating if needed) the database file and sets WAL mode,
    /// `synchronous=FULL` and the busy timeout. The directory must exist.
    pub async fn open(path: &Path) -> Result<Self, SinkError> {
        Self::open_with_busy_timeout(path, BUSY_TIMEOUT).await
    }

    /// [`open`](Self::open) with an explicit busy timeout.
    pub async fn open_with_busy_timeout(
        path: &Path,
        busy_timeout: Duration,
    ) -> Result<Self, SinkError> {
        let owned = path.to_owned();
        let conn = blocking(move || open_connection(&owned, busy_timeout)).await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, SinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SinkError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        blocking(move || locked(&conn, f)).await
    }
}

/// Runs `f` on the connection under its lock (blocking).
fn locked<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&mut Connection) -> Result<T, SinkError>,
) -> Result<T, SinkError> {
    // A panic while the lock was held leaves it poisoned, but the
    // connection itself is fine: rusqlite's Transaction rolls back on
    // drop during unwinding. Make sure of it and carry on.
    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")
            .map_err(|e| classify("rolling back an abandoned transaction", e))?;
    }
    f(&mut conn)
}

#[async_trait]
impl Sink for SqliteSink {
    async fn migrate(&self) -> Result<(), SinkError> {
        self.with_conn(|conn| migrate(conn, MIGRATIONS)).await
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, SinkError> {
        if batch.messages.is_empty() {
            return Ok(WriteOutcome::default());
        }
        // On a multi-thread runtime (the writer's), write the borrowed batch
        // right here and let the runtime move this thread's other tasks
        // elsewhere: copying every row for spawn_blocking's 'static cost as
        // much CPU as a good part of the inserts, on a machine where CPU is
        // what bounds the writer.
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(|| {
                // As with spawn_blocking: a panic is a bug here, reported as
                // a refused batch; the transaction rolled back on unwind.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    locked(&self.conn, |conn| write_batch(conn, batch))
                }))
                .unwrap_or_else(|_| Err(SinkError::Permanent("SQLite task panicked".into())))
            });
        }
        let batch = batch.clone();
        self.with_conn(move |conn| write_batch(conn, &batch)).await
    }

    async fn ping(&self) -> Result<(), SinkError> {
        self.with_conn(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(|_| ())
                .map_err(|e| classify("ping", e))
        })
        .await
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, SinkError> {
        let before = before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM sluice_idempotency WHERE seen_at < ?1",
                params![before],
            )
            .map(|n| n as u64)
            .map_err(|e| classify("purging sluice_idempotency", e))
        })
        .await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, SinkError> {
    let context = format!("opening {}", path.display());
    // A first run names a folder that does not exist yet (data/sluice.db).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            SinkError::Permanent(format!("{context}: cannot create its folder: {}", e.kind()))
        })?;
    }
    let conn = Connection::open(path).map_err(|e| classify(&context, e))?;
    // Busy timeout first: switching to WAL itself needs a lock that another
    // process may hold at this moment.
    conn.busy_timeout(busy_timeout)
        .map_err(|e| classify(&context, e))?;
    let mode =
        crate::sqlite_wal::switch_to_wal(&conn, busy_timeout).map_err(|e| classify(&context, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a file system without shared memory: still correct, slower.
        tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite WAL mode unavailable");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| classify(&context, e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Applies the migrations not yet recorded in `sluice_migrations`, all in one
/// transaction. Versions recorded but unknown here (a newer writer migrated
/// the file) are left alone, so old and new writers can overlap in a rollout.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), SinkError> {
    let err = |e| classify("migrating", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS sluice_migrations (
             version     INTEGER PRIMARY KEY NOT NULL,
             description TEXT NOT NULL,
             applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         )",
    )
    .map_err(err)?;
    for migration in migrations {
        let applied: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sluice_migrations WHERE version = ?1)",
                [migration.version],
                |row| row.get(0),
            )
            .map_err(err)?;
        if applied {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(|e| {
            classify(
                &format!("applying SQLite migration {}", migration.version),
                e,
            )
        })?;
        tx.execute(
            "INSERT INTO sluice_migrations (version, description) VALUES (?1, ?2)",
            params![migration.version, migration.description],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

fn write_batch(conn: &mut Connection, batch: &WriteBatch) -> Result<WriteOutcome, SinkError> {
    let written_on = batch.written_on.format("%Y-%m-%d").to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| classify("beginning a transaction", e))?;
    let mut outcome = WriteOutcome::default();
    for message in &batch.messages {
        // A key repeated within the batch is caught here too: its second
        // receipt insert is ignored.
        let row_count = i64::try_from(message.row_count()).unwrap_or(i64::MAX);
        if !insert_receipt(&tx, &message.key, row_count)? {
            outcome.duplicate_keys.push(message.key.clone());
            continue;
        }
        // Events whose Idempotency-Key identity was stored before (a retried
        // request) are dropped, in this same transaction.
        let message = claim_identities(&tx, message)?;
        outcome.logins_written += insert_logins(&tx, &message.logins, &written_on)?;
        outcome.tune_events_written += insert_tune_events(&tx, &message.tune_events)?;
        outcome.tune_adjustments_written +=
            insert_tune_adjustments(&tx, &message.tune_adjustments)?;
        outcome.rejected_written += insert_rejected(&tx, &message.key, &message.rejected)?;
    }
    tx.commit().map_err(|e| classify("committing", e))?;
    Ok(outcome)
}

/// Claims the message's identities in `sluice_idempotency`; returns the
/// message without the rows of identities claimed before.
fn claim_identities<'a>(
    tx: &Transaction<'_>,
    message: &'a MessageRows,
) -> Result<Cow<'a, MessageRows>, SinkError> {
    if message.identities.is_empty() {
        return Ok(Cow::Borrowed(message));
    }
    let err = |e| classify("inserting sluice_idempotency", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO sluice_idempotency (key, event_index) VALUES (?1, ?2)",
        )
        .map_err(err)?;
    let mut fresh = Vec::with_capacity(message.identities.len());
    for identity in &message.identities {
        fresh.push(
            stmt.execute(params![identity.key, identity.index])
                .map_err(err)?
                > 0,
        );
    }
    Ok(message.keep_fresh(&fresh))
}

/// Inserts the receipt; false when it already existed (a duplicate message).
fn insert_receipt(tx: &Transaction<'_>, key: &str, row_count: i64) -> Result<bool, SinkError> {
    let err = |e| classify("inserting sluice_receipts", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO sluice_receipts (message_key, row_count) VALUES (?1, ?2)",
        )
        .map_err(err)?;
    // execute() returns sqlite3_changes(): 0 when the key was already there.
    Ok(stmt.execute(params![key, row_count]).map_err(err)? > 0)
}

fn insert_logins(
    tx: &Transaction<'_>,
    rows: &[LoginRow],
    written_on: &str,
) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify("inserting user_logins", e);
    // Many rows per statement: SQLite's per-statement work (step, reset,
    // opening the table) is a good part of a narrow row's cost.
    let mut chunks = rows.chunks_exact(LOGINS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = tx.prepare_cached(&LOGINS_INSERT_MANY).map_err(err)?;
        stmt.raw_bind_parameter(1, written_on).map_err(err)?;
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                bind_login(&mut stmt, 2 + i * 6, row).map_err(err)?;
            }
            stmt.raw_execute().map_err(err)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO user_logins \
                   (create_date, user_id, device_type, masked_ip, masked_device_id, locale, app_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(err)?;
        stmt.raw_bind_parameter(1, written_on).map_err(err)?;
        for row in rest {
            bind_login(&mut stmt, 2, row).map_err(err)?;
            stmt.raw_execute().map_err(err)?;
        }
    }
    Ok(rows.len() as u64)
}

/// Login rows per multi-row INSERT: 6 parameters each (plus the shared
/// date), far under SQLite's 32,766-parameter limit; past ~100 rows longer
/// statements gain nothing.
const LOGINS_PER_INSERT: usize = 100;

/// `INSERT INTO user_logins … VALUES (?1, ?2, …), (?1, ?8, …), …` for
/// [`LOGINS_PER_INSERT`] rows; `?1` is the date all rows share.
static LOGINS_INSERT_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let values: Vec<String> = (0..LOGINS_PER_INSERT)
        .map(|i| {
            let p = 2 + i * 6;
            format!(
                "(?1, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            )
        })
        .collect();
    format!(
        "INSERT INTO user_logins \
           (create_date, user_id, device_type, masked_ip, masked_device_id, locale, app_version) \
         VALUES {}",
        values.join(", ")
    )
});

/// Binds one login's six values from parameter `first` on.
fn bind_login(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    row: &LoginRow,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(first, &row.user_id)?;
    stmt.raw_bind_parameter(first + 1, &row.device_type)?;
    stmt.raw_bind_parameter(first + 2, &row.masked_ip)?;
    stmt.raw_bind_parameter(first + 3, &row.masked_device_id)?;
    stmt.raw_bind_parameter(first + 4, &row.locale)?;
    stmt.raw_bind_parameter(first + 5, row.app_version)
}

/// RFC 3339 UTC with milliseconds, the format of every SQLite timestamp
/// here (`strftime('%Y-%m-%dT%H:%M:%fZ')`), so they compare as strings.
fn timestamp(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn real(amount: Option<&Decimal>) -> Option<f64> {
    amount.map(Decimal::to_f64)
}

/// Inserts tracking events; an `event_id` already stored is skipped
/// (`ON CONFLICT DO NOTHING`, which unlike `INSERT OR IGNORE` still fails on
/// a NOT NULL or CHECK violation). Returns the rows inserted.
fn insert_tune_events(tx: &Transaction<'_>, rows: &[TuneEventRow]) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify("inserting tune_events", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO tune_events \
               (event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
                advertiser_id, payout, revenue, currency, country, status, masked_ip, \
                masked_session_ip, masked_user_agent, masked_device_id, extra) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .map_err(err)?;
    let mut inserted = 0;
    for row in rows {
        inserted += stmt
            .execute(params![
                row.event_id,
                row.action,
                timestamp(row.occurred_at),
                row.transaction_id,
                row.offer_id,
                row.affiliate_id,
                row.advertiser_id,
                real(row.payout.as_ref()),
                real(row.revenue.as_ref()),
                row.currency,
                row.country,
                row.status,
                row.masked_ip,
                row.masked_session_ip,
                row.masked_user_agent,
                row.masked_device_id,
                row.extra,
            ])
            .map_err(err)? as u64;
    }
    Ok(inserted)
}

/// Inserts adjustments; an `(event_id, adjustment_sequence_id)` already
/// stored is skipped. Returns the rows inserted.
fn insert_tune_adjustments(
    tx: &Transaction<'_>,
    rows: &[TuneAdjustmentRow],
) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify("inserting tune_adjustments", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO tune_adjustments \
               (event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, payout, \
                revenue, current_payout, current_revenue, extra) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (event_id, adjustment_sequence_id) DO NOTHING",
        )
        .map_err(err)?;
    let mut inserted = 0;
    for row in rows {
        inserted += stmt
            .execute(params![
                row.event_id,
                row.adjustment_sequence_id,
                row.adjust_action.code(),
                timestamp(row.adjusted_at),
                row.num,
                real(row.payout.as_ref()),
                real(row.revenue.as_ref()),
                real(row.current_payout.as_ref()),
                real(row.current_revenue.as_ref()),
                row.extra,
            ])
            .map_err(err)? as u64;
    }
    Ok(inserted)
}

fn insert_rejected(
    tx: &Transaction<'_>,
    key: &str,
    rows: &[RejectedRow],
) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify("inserting rejected_records", e);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO rejected_records (message_key, reason, payload, payload_format) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(err)?;
    for row in rows {
        stmt.execute(params![
            key,
            row.reason,
            row.payload,
            row.payload_format.as_str()
        ])
        .map_err(err)?;
    }
    Ok(rows.len() as u64)
}

/// Runs blocking work off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, SinkError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SinkError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        // The runtime is shutting down: the batch was not written, try again.
        Err(e) if e.is_cancelled() => Err(SinkError::Transient("SQLite task cancelled".into())),
        // A panic is a bug in this code; the transaction rolled back on unwind.
        Err(_) => Err(SinkError::Permanent("SQLite task panicked".into())),
    }
}

/// Sorts a rusqlite error into transient or permanent. SQLite's messages name
/// tables and columns but not the values, so they are kept.
fn classify(context: &str, err: rusqlite::Error) -> SinkError {
    let text = match err.sqlite_error_code() {
        Some(code) => format!("{context}: SQLite {code:?}: {err}"),
        None => format!("{context}: {err}"),
    };
    let transient = matches!(
        err.sqlite_error_code(),
        Some(
            // Another connection holds the lock past the busy timeout.
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                // The disk, not the data: may pass once space or memory frees up.
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::SchemaChanged
        )
    );
    if transient {
        SinkError::Transient(text)
    } else {
        SinkError::Permanent(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_transaction_free() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        // The runner wraps all files in one transaction; a BEGIN or COMMIT in
        // a file would end it early and break the all-or-nothing run.
        for migration in MIGRATIONS {
            for line in migration.sql.lines() {
                let word = line.split_whitespace().next().unwrap_or_default();
                let word = word.trim_end_matches(';').to_ascii_uppercase();
                assert!(
                    !matches!(word.as_str(), "BEGIN" | "COMMIT" | "END" | "ROLLBACK"),
                    "migration {} controls its own transaction",
                    migration.version
                );
            }
        }
    }

    fn logins(n: usize) -> Vec<LoginRow> {
        (0..n)
            .map(|i| LoginRow {
                user_id: format!("u{i}"),
                device_type: (i % 3 == 0).then(|| "ios".to_owned()),
                masked_ip: Some(format!("enc:k:{i}")),
                masked_device_id: (i % 2 == 0).then(|| format!("enc:k:d{i}")),
                locale: (i % 5 == 0).then(|| "FR".to_owned()),
                app_version: (i % 7 != 0).then_some(i as i32),
            })
            .collect()
    }

    /// Every row lands with its own values, through the multi-row INSERT
    /// and the single-row one for the rest, on both kinds of runtime.
    #[test]
    fn many_logins_round_trip_on_both_runtimes() {
        for multi_thread in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let mut runtime = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let runtime = runtime.enable_all().build().unwrap();
            let rows = logins(2 * LOGINS_PER_INSERT + 57);
            let written_on = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
            let outcome = runtime.block_on(async {
                let sink = SqliteSink::open(&path).await.unwrap();
                sink.migrate().await.unwrap();
                let mut a = crate::records::MessageRows::new("a");
                a.logins = rows.clone();
                let mut b = crate::records::MessageRows::new("b");
                b.logins = rows[..3].to_vec();
                sink.write(&WriteBatch {
                    written_on,
                    messages: vec![a, b],
                })
                .await
                .unwrap()
            });
            assert_eq!(outcome.logins_written, rows.len() as u64 + 3);
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT user_id, device_type, masked_ip, masked_device_id, locale, \
                     app_version, create_date FROM user_logins ORDER BY rowid",
                )
                .unwrap();
            let stored: Vec<(LoginRow, String)> = stmt
                .query_map([], |r| {
                    Ok((
                        LoginRow {
                            user_id: r.get(0)?,
                            device_type: r.get(1)?,
                            masked_ip: r.get(2)?,
                            masked_device_id: r.get(3)?,
                            locale: r.get(4)?,
                            app_version: r.get(5)?,
                        },
                        r.get(6)?,
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let expected: Vec<LoginRow> = rows.iter().chain(&rows[..3]).cloned().collect();
            assert_eq!(
                stored.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
                expected
            );
            assert!(stored.iter().all(|(_, d)| d == "2026-11-22"));
        }
    }

    #[test]
    fn busy_is_transient() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        );
        assert!(classify("x", busy).is_transient());
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!classify("x", constraint).is_transient());
    }
}
