//! The tables that hold masked values, read and changed in batches.
//!
//! Every PII operation is a sweep over these tables: read a slice of rows,
//! decide in Rust (where the keys are) what changes, write the changes and
//! commit — one transaction per slice, so an operation killed midway leaves
//! every slice either done or untouched, and a rerun picks up what is left.
//!
//! Slices follow the physical order, because `user_logins` has no key:
//! PostgreSQL's `ctid` page ranges (a TID range scan, PostgreSQL 14+) and
//! SQLite's `rowid` ranges. Within a slice's transaction the rows are locked
//! (`FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`), so their `ctid` stays put until
//! the changes are written. Writers only insert, so they never wait on a
//! slice for longer than one commit.
//!
//! The SQL here is the operations' own, next to the sinks' but apart from
//! them, and needs no migration.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use sluice_core::config::{DatabaseUrl, ExposeSecret};
use sluice_core::sink::postgres::PostgresSink;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};

use super::OpsError;

/// How a column holds masked values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A typed column: a whole token, or NULL.
    Masked,
    /// JSON (`extra`): tokens as string values at any depth.
    Json,
    /// A rejected record's payload: masked JSON text, or one token (the
    /// bytes encrypted whole).
    Payload,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

/// A table and its columns that may hold masked values.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
}

const fn masked(name: &'static str) -> Column {
    Column {
        name,
        kind: ColumnKind::Masked,
    }
}

/// Every place the writer stores masked values.
pub const TABLES: &[Table] = &[
    Table {
        name: "user_logins",
        columns: &[masked("masked_ip"), masked("masked_device_id")],
    },
    Table {
        name: "tune_events",
        columns: &[
            masked("masked_ip"),
            masked("masked_session_ip"),
            masked("masked_user_agent"),
            masked("masked_device_id"),
            Column {
                name: "extra",
                kind: ColumnKind::Json,
            },
        ],
    },
    Table {
        name: "tune_adjustments",
        columns: &[Column {
            name: "extra",
            kind: ColumnKind::Json,
        }],
    },
    Table {
        name: "rejected_records",
        columns: &[Column {
            name: "payload",
            kind: ColumnKind::Payload,
        }],
    },
];

/// Where a row is, valid while its slice's transaction holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    /// PostgreSQL `ctid`, as text.
    Tid(String),
    /// SQLite `rowid`.
    RowId(i64),
}

/// One row: its place and the text of each of the table's columns.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: RowKey,
    pub cells: Vec<Option<String>>,
}

/// What a sweep does to a row.
#[derive(Debug, Clone)]
pub enum Change {
    /// Sets every column of the table to these values.
    Update {
        key: RowKey,
        cells: Vec<Option<String>>,
    },
    Delete(RowKey),
}

/// An open database.
#[derive(Clone)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(Arc<Mutex<Connection>>),
}

/// How long a SQLite slice waits for a writer's commit before it is retried.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL error as one line without row values: `detail()` and
/// `where()` may quote them.
fn pg_error(context: &str, e: sqlx::Error) -> OpsError {
    let text = match &e {
        sqlx::Error::Database(db) => format!(
            "{} ({})",
            db.message(),
            db.code().as_deref().unwrap_or("no code")
        ),
        other => other.to_string(),
    };
    OpsError::Database(format!("{context}: {text}"))
}

fn sqlite_error(context: &str, e: rusqlite::Error) -> OpsError {
    // rusqlite's messages name the statement and the error, never values
    // (they are bound parameters).
    OpsError::Database(format!("{context}: {e}"))
}

impl Store {
    /// Opens the database `DATABASE_URL` names; its tables must exist (the
    /// caller migrates first).
    pub async fn open(url: &DatabaseUrl) -> Result<Self, OpsError> {
        match url {
            // The sink's own pool: the same URL handling and TLS settings.
            DatabaseUrl::Postgres(url) => {
                let sink = PostgresSink::connect(url.expose_secret(), 2)
                    .await
                    .map_err(|e| OpsError::Database(e.to_string()))?;
                Ok(Store::Postgres(sink.pool().clone()))
            }
            DatabaseUrl::Sqlite(path) => {
                let path = path.clone();
                let conn = tokio::task::spawn_blocking(move || {
                    let conn = Connection::open(&path)
                        .map_err(|e| sqlite_error("opening the database", e))?;
                    conn.busy_timeout(BUSY_TIMEOUT)
                        .map_err(|e| sqlite_error("opening the database", e))?;
                    // As the writer: a commit survives power loss.
                    conn.pragma_update(None, "synchronous", "FULL")
                        .map_err(|e| sqlite_error("opening the database", e))?;
                    // Old values and erased rows are overwritten with zeros
                    // in the file, not left in free space within its pages.
                    conn.pragma_update(None, "secure_delete", "ON")
                        .map_err(|e| sqlite_error("opening the database", e))?;
                    Ok::<_, OpsError>(conn)
                })
                .await
                .map_err(|e| OpsError::Database(format!("opening the database: {e}")))??;
                Ok(Store::Sqlite(Arc::new(Mutex::new(conn))))
            }
        }
    }

    /// After changes, on SQLite: `VACUUM` rewrites the file from its live
    /// rows (freed space in pages keeps old row bytes otherwise — a page
    /// split while writing leaves copies behind), then the write-ahead log
    /// is copied into the file and emptied, so neither keeps the values
    /// from before the change. Writers wait meanwhile (their busy timeout,
    /// then a retry). PostgreSQL's dead row versions go with its
    /// (auto)vacuum; the README says so.
    pub async fn settle(&self) -> Result<(), OpsError> {
        let Store::Sqlite(conn) = self else {
            return Ok(());
        };
        {
            let conn = Arc::clone(conn);
            blocking(move || {
                let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                conn.execute_batch("VACUUM")
                    .map_err(|e| sqlite_error("compacting the file (VACUUM)", e))
            })
            .await?;
        }
        for _ in 0..50 {
            let conn = Arc::clone(conn);
            let busy = blocking(move || {
                let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| sqlite_error("checkpointing", e))
            })
            .await?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(
            "the SQLite write-ahead log could not be emptied while other connections read; it empties at the next checkpoint"
        );
        Ok(())
    }

    /// Rows in the table, for sizing slices and the progress bar.
    pub async fn row_count(&self, table: &Table) -> Result<u64, OpsError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        match self {
            Store::Postgres(pool) => sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .map(|n| n.max(0) as u64)
                .map_err(|e| pg_error("counting rows", e)),
            Store::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                    conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
                        .map(|n| n.max(0) as u64)
                        .map_err(|e| sqlite_error("counting rows", e))
                })
                .await
            }
        }
    }

    /// One past the last position a row can have now: pages (PostgreSQL) or
    /// rowids (SQLite).
    pub async fn extent(&self, table: &Table) -> Result<u64, OpsError> {
        match self {
            Store::Postgres(pool) => {
                let sql = "SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::bigint)::bigint";
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(table.name)
                    .fetch_one(pool)
                    .await
                    .map(|n| n.max(0) as u64 + 1)
                    .map_err(|e| pg_error("sizing a table", e))
            }
            Store::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                let sql = format!("SELECT COALESCE(MAX(rowid), 0) FROM {}", table.name);
                blocking(move || {
                    let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                    conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
                        .map(|n| n.max(0) as u64 + 1)
                        .map_err(|e| sqlite_error("sizing a table", e))
                })
                .await
            }
        }
    }

    /// Positions per slice so that one holds about `batch_rows` rows.
    pub fn step(&self, rows: u64, extent: u64, batch_rows: usize) -> u64 {
        match self {
            // Pages: rows per page from the table's current fill.
            Store::Postgres(_) => {
                let per_page = (rows / extent.max(1)).max(1);
                (batch_rows as u64 / per_page).max(1)
            }
            Store::Sqlite(_) => batch_rows as u64,
        }
    }

    /// Reads the rows in `[from, to)` and applies what `decide` makes of them,
    /// in one transaction (read only when `write` is false).
    pub async fn slice<T, F>(
        &self,
        table: &'static Table,
        from: u64,
        to: u64,
        write: bool,
        decide: F,
    ) -> Result<(T, usize), OpsError>
    where
        T: Send + 'static,
        F: FnOnce(Vec<Row>) -> (Vec<Change>, T) + Send + 'static,
    {
        let slice = Slice {
            table,
            from,
            to,
            write,
        };
        match self {
            Store::Postgres(pool) => pg_slice(pool, slice, decide).await,
            Store::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                    sqlite_slice(&mut conn, slice, decide)
                })
                .await
            }
        }
    }
}

/// One slice of a table: the rows at positions `[from, to)`, read and, when
/// `write`, changed in one transaction. What is done with the rows is
/// decided here, once for both databases; each only reads and writes.
#[derive(Debug, Clone, Copy)]
struct Slice {
    table: &'static Table,
    from: u64,
    to: u64,
    write: bool,
}

/// What `decide` made of a slice's rows.
struct Decided<T> {
    out: T,
    /// Changes decided, written or not: what a dry run reports.
    changed: usize,
    /// The changes to write: none when the slice only reads.
    to_write: Vec<Change>,
}

impl Slice {
    /// `SELECT` of the rows' places and columns, in the database's terms;
    /// rows to be changed are locked by PostgreSQL's `FOR UPDATE` (SQLite's
    /// transaction already holds the write lock).
    fn select_sql(&self, postgres: bool) -> String {
        let (key, from, to) = if postgres {
            ("ctid", "$1::tid", "$2::tid")
        } else {
            ("rowid", "?1", "?2")
        };
        format!(
            "SELECT {key}{}, {} FROM {} WHERE {key} >= {from} AND {key} < {to}{}",
            if postgres { "::text" } else { "" },
            select_list(self.table, postgres),
            self.table.name,
            if postgres && self.write {
                " FOR UPDATE"
            } else {
                ""
            }
        )
    }

    /// Runs `decide` over the rows read; a slice that only reads (a dry
    /// run) counts the changes and writes none.
    fn decide<T>(
        &self,
        rows: Vec<Row>,
        decide: impl FnOnce(Vec<Row>) -> (Vec<Change>, T),
    ) -> Decided<T> {
        let (changes, out) = decide(rows);
        let changed = changes.len();
        let to_write = if self.write { changes } else { Vec::new() };
        Decided {
            out,
            changed,
            to_write,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpsError> + Send + 'static,
) -> Result<T, OpsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpsError::Database(format!("SQLite task failed: {e}")))?
}

/// SQL list items, comma separated.
fn joined(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn select_list(table: &Table, postgres: bool) -> String {
    joined(table.columns.iter().map(|c| match (c.kind, postgres) {
        (ColumnKind::Json, true) => format!("{}::text", c.name),
        _ => c.name.to_owned(),
    }))
}

async fn pg_slice<T>(
    pool: &PgPool,
    slice: Slice,
    decide: impl FnOnce(Vec<Row>) -> (Vec<Change>, T),
) -> Result<(T, usize), OpsError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| pg_error("beginning a transaction", e))?;
    let rows = sqlx::query(AssertSqlSafe(slice.select_sql(true)))
        .bind(format!("({},0)", slice.from))
        .bind(format!("({},0)", slice.to))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| pg_error("reading rows", e))?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(Row {
                key: RowKey::Tid(r.try_get(0)?),
                cells: (1..=slice.table.columns.len())
                    .map(|i| r.try_get::<Option<String>, _>(i))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| pg_error("reading rows", e))?;
    let decided = slice.decide(rows, decide);
    pg_apply(&mut tx, slice.table, decided.to_write).await?;
    tx.commit().await.map_err(|e| pg_error("committing", e))?;
    Ok((decided.out, decided.changed))
}

fn tid(key: RowKey) -> String {
    match key {
        RowKey::Tid(t) => t,
        RowKey::RowId(id) => id.to_string(),
    }
}

/// Updates through one `UPDATE … FROM UNNEST` joined on `ctid` (a TID scan
/// per row) and deletes through one `ctid = ANY(…)`.
async fn pg_apply(
    tx: &mut sqlx::PgConnection,
    table: &Table,
    changes: Vec<Change>,
) -> Result<(), OpsError> {
    let mut deletes = Vec::new();
    let mut keys = Vec::new();
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); table.columns.len()];
    for change in changes {
        match change {
            Change::Delete(key) => deletes.push(tid(key)),
            Change::Update { key, cells } => {
                keys.push(tid(key));
                for (column, cell) in columns.iter_mut().zip(cells) {
                    column.push(cell);
                }
            }
        }
    }
    if !deletes.is_empty() {
        let sql = format!(
            "DELETE FROM {} WHERE ctid = ANY($1::text[]::tid[])",
            table.name
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(deletes)
            .execute(&mut *tx)
            .await
            .map_err(|e| pg_error("deleting rows", e))?;
    }
    if !keys.is_empty() {
        let sets = joined(table.columns.iter().enumerate().map(|(i, c)| match c.kind {
            ColumnKind::Json => format!("{0} = v.c{i}::jsonb", c.name),
            _ => format!("{0} = v.c{i}", c.name),
        }));
        let arrays = joined((0..table.columns.len()).map(|i| format!("${}::text[]", i + 2)));
        let names = joined((0..table.columns.len()).map(|i| format!("c{i}")));
        let sql = format!(
            "UPDATE {t} SET {sets} FROM UNNEST($1::text[], {arrays}) AS v(k, {names}) \
             WHERE {t}.ctid = v.k::tid",
            t = table.name
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(keys);
        for column in columns {
            query = query.bind(column);
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(|e| pg_error("updating rows", e))?;
    }
    Ok(())
}

fn sqlite_slice<T>(
    conn: &mut Connection,
    slice: Slice,
    decide: impl FnOnce(Vec<Row>) -> (Vec<Change>, T),
) -> Result<(T, usize), OpsError> {
    let err = |context: &'static str| move |e| sqlite_error(context, e);
    // IMMEDIATE takes the write lock before reading, so the rows read are
    // the rows changed.
    let behavior = if slice.write {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(err("beginning a transaction"))?;
    let rows = {
        let mut stmt = tx
            .prepare(&slice.select_sql(false))
            .map_err(err("reading rows"))?;
        let n = slice.table.columns.len();
        let bound = |position: u64| position.min(i64::MAX as u64) as i64;
        stmt.query_map(rusqlite::params![bound(slice.from), bound(slice.to)], |r| {
            Ok(Row {
                key: RowKey::RowId(r.get(0)?),
                cells: (1..=n)
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect::<Result<_, _>>()?,
            })
        })
        .map_err(err("reading rows"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("reading rows"))?
    };
    let decided = slice.decide(rows, decide);
    sqlite_apply(&tx, slice.table, decided.to_write)?;
    tx.commit().map_err(err("committing"))?;
    Ok((decided.out, decided.changed))
}

/// Updates and deletes row by row through two prepared statements.
fn sqlite_apply(
    tx: &rusqlite::Transaction<'_>,
    table: &Table,
    changes: Vec<Change>,
) -> Result<(), OpsError> {
    if changes.is_empty() {
        return Ok(());
    }
    let err = |context: &'static str| move |e| sqlite_error(context, e);
    let sets = joined(
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", c.name, i + 2)),
    );
    let mut update = tx
        .prepare(&format!(
            "UPDATE {} SET {sets} WHERE rowid = ?1",
            table.name
        ))
        .map_err(err("updating rows"))?;
    let mut delete = tx
        .prepare(&format!("DELETE FROM {} WHERE rowid = ?1", table.name))
        .map_err(err("deleting rows"))?;
    for change in changes {
        match change {
            Change::Delete(RowKey::RowId(id)) => {
                delete.execute([id]).map_err(err("deleting rows"))?;
            }
            Change::Update {
                key: RowKey::RowId(id),
                cells,
            } => {
                let mut values: Vec<rusqlite::types::Value> = vec![id.into()];
                values.extend(cells.into_iter().map(rusqlite::types::Value::from));
                update
                    .execute(rusqlite::params_from_iter(values))
                    .map_err(err("updating rows"))?;
            }
            _ => {}
        }
    }
    Ok(())
}
