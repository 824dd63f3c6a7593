//! Opening a SQLite file the way every Sluice connection needs it.
//!
//! Several processes may share a file (writer replicas, ingest and the
//! writers on the embedded queue), so the busy timeout is set first — even
//! the switch to WAL needs a lock another process may hold — then WAL (one
//! writer and many readers at once) and the `synchronous` level the caller's
//! promise needs.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// `PRAGMA synchronous`: whether a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Synchronous {
    /// Synced at every commit: survives power loss.
    Full,
    /// Synced at checkpoints: safe against corruption, a commit may be lost.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How to open a connection; what differs between the queue and the sink.
#[derive(Debug, Clone)]
pub(crate) struct OpenOptions {
    pub flags: OpenFlags,
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
    /// Further `PRAGMA name = value`s, in order.
    pub pragmas: &'static [(&'static str, i64)],
    pub statement_cache: usize,
    /// Names the file in the warning when WAL is unavailable.
    pub what: &'static str,
}

/// Creates the folder of `path` when missing: a first run names one that
/// does not exist yet (`data/sluice.db`).
pub(crate) fn create_folder(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
}

/// Opens `path` with `options`: busy timeout, WAL (a warning when the file
/// system cannot have it: still correct, slower), `synchronous`, pragmas.
pub(crate) fn open(path: &Path, options: &OpenOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, options.flags)?;
    // Busy timeout first: switching to WAL itself needs a lock that another
    // process may hold at this moment.
    conn.busy_timeout(options.busy_timeout)?;
    let mode = super::wal::switch_to_wal(&conn, options.busy_timeout)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a file system without shared memory.
        tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite WAL mode unavailable for the {}", options.what);
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
    for (name, value) in options.pragmas {
        conn.pragma_update(None, name, value)?;
    }
    conn.set_prepared_statement_cache_capacity(options.statement_cache);
    Ok(conn)
}
