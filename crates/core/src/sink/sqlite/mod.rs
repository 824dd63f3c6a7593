//! SQLite sink: one connection, one `BEGIN IMMEDIATE` transaction per batch.
//!
//! rusqlite is blocking, so every database call runs off the async threads
//! (see [`crate::sqlite`]) on one connection behind a lock; SQLite
//! serialises writers anyway, so a pool would only add lock contention. The
//! connection runs in WAL mode with `synchronous=FULL` (the WAL is synced at
//! every commit: the queue message is deleted right after, so a commit must
//! survive power loss too; with thousand-row batches that is one sync per
//! batch) and a busy timeout, because several writer processes may share
//! one file: `BEGIN IMMEDIATE` takes the write lock up front, so a second
//! writer waits in the busy handler instead of failing on a read-to-write
//! upgrade, and still-busy after the timeout is reported as
//! [`SinkError::Transient`].
//!
//! Files: `migrate` (the migrations and their runner), `write` (the batch
//! transaction, receipts, rejected records), `logins`, `tune` (the row
//! inserts, through `insert`), `idempotency` (claims and purge), `error` (transient or
//! permanent).

mod error;
mod idempotency;
mod insert;
mod logins;
mod migrate;
mod tune;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use super::{Sink, SinkError};
use crate::records::{WriteBatch, WriteOutcome};
use crate::sqlite::{OpenOptions, SharedConnection, Synchronous};
use error::{classify, interrupted};

/// How long a statement waits for another process's write lock before it
/// reports the database as busy (transient).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes batches into one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    conn: Arc<SharedConnection>,
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
        let conn = crate::sqlite::off_thread(move || open_connection(&owned, busy_timeout))
            .await
            .map_err(interrupted)??;
        Ok(Self {
            conn: Arc::new(SharedConnection::new(conn, Synchronous::Full)),
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
        crate::sqlite::off_thread(move || locked(&conn, f))
            .await
            .map_err(interrupted)?
    }
}

/// Runs `f` on the connection under its lock (blocking).
fn locked<T>(
    conn: &SharedConnection,
    f: impl FnOnce(&mut Connection) -> Result<T, SinkError>,
) -> Result<T, SinkError> {
    let mut conn = conn
        .lock()
        .map_err(|e| classify("rolling back an abandoned transaction", e))?;
    f(&mut conn)
}

#[async_trait]
impl Sink for SqliteSink {
    async fn migrate(&self) -> Result<(), SinkError> {
        self.with_conn(migrate::migrate_all).await
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
        if let Some(result) =
            crate::sqlite::in_place(|| locked(&self.conn, |conn| write::write_batch(conn, batch)))
        {
            return result.map_err(interrupted)?;
        }
        let batch = batch.clone();
        self.with_conn(move |conn| write::write_batch(conn, &batch))
            .await
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
        self.with_conn(move |conn| idempotency::purge(conn, &before))
            .await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, SinkError> {
    let context = format!("opening {}", path.display());
    crate::sqlite::create_folder(path).map_err(|e| {
        SinkError::Permanent(format!("{context}: cannot create its folder: {}", e.kind()))
    })?;
    let options = OpenOptions {
        flags: OpenFlags::default(),
        busy_timeout,
        synchronous: Synchronous::Full,
        pragmas: &[],
        statement_cache: 32,
        what: "database",
    };
    crate::sqlite::open(path, &options).map_err(|e| classify(&context, e))
}
