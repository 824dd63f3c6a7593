//! Opening the queue file: created private, WAL, its schema checked.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{BUSY_TIMEOUT, DEFAULT_MAX_RECEIVE_COUNT, QueueError};

/// Written in the meta table; a file of another format is refused.
const FORMAT: &str = "sluice-queue-1";

const SCHEMA: &str = "
CREATE TABLE sluice_queue_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE sluice_queue_messages (
    seq           INTEGER PRIMARY KEY,
    queue         INTEGER NOT NULL,           -- 0 the queue, 1 its dead-letter queue
    visible_at    INTEGER NOT NULL,           -- Unix milliseconds
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       INTEGER,                    -- nonce of the latest receive
    message_id    TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    body          TEXT NOT NULL               -- last: scans skip its overflow pages
);
CREATE INDEX sluice_queue_ready ON sluice_queue_messages (queue, visible_at, seq);
";

/// Creates a missing queue file readable by its owner only: it holds events
/// as ingest sent them, PII not yet masked. SQLite gives its `-wal` and
/// `-shm` files the same permissions.
fn create_private(path: &Path) -> Result<(), QueueError> {
    // A first run names a folder that does not exist yet (data/queue.db).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            QueueError::new(
                None,
                format!(
                    "queue file {}: cannot create its folder: {}",
                    path.display(),
                    e.kind()
                ),
            )
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(())
        }
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "its directory does not exist".to_owned(),
                std::io::ErrorKind::PermissionDenied => {
                    "this user may not write in its directory".to_owned()
                }
                _ => e.to_string(),
            };
            Err(QueueError::new(
                None,
                format!("queue file {}: cannot be created: {why}", path.display()),
            ))
        }
    }
}

/// The queue holds events before masking: say so when others can read it.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{:o}", meta.permissions().mode() & 0o777),
                "the queue file holds unmasked events and other users can read it; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, QueueError> {
    create_private(path)?;
    let err = |e| sqlite_error(path, "opening", e);
    // No URI flag: the path is a file name, whatever it looks like.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    // Busy timeout first: switching to WAL needs a lock another process may hold.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let mode = crate::sqlite_wal::switch_to_wal(&conn, BUSY_TIMEOUT).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite WAL mode unavailable for the queue file");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    // A deleted message's pages are zeroed rather than left in the free
    // list, so raw events do not linger once the writer has stored them.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(err)?;
    // After a burst the WAL is cut back to this size at each checkpoint
    // instead of keeping its largest size on disk for good.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Creates the schema in an empty file; checks a file that has one.
pub(super) fn init_schema(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    let err = |e| sqlite_error(path, "reading the schema", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let tables: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .map_err(err)?;
        stmt.query_map([], |row| row.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?
    };
    if tables.iter().any(|t| t == "sluice_queue_meta") {
        let format: Option<String> = tx
            .query_row(
                "SELECT value FROM sluice_queue_meta WHERE key = 'format'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(err)?;
        return match format.as_deref() {
            Some(FORMAT) => Ok(()),
            other => Err(QueueError::new(
                None,
                format!(
                    "queue file {}: has queue format {}, this build reads {FORMAT}",
                    path.display(),
                    other.unwrap_or("none")
                ),
            )),
        };
    }
    if !tables.is_empty() {
        return Err(QueueError::new(
            None,
            format!(
                "queue file {}: is a SQLite database but not a Sluice queue; the queue needs a file of its own",
                path.display()
            ),
        ));
    }
    tx.execute_batch(SCHEMA).map_err(err)?;
    tx.execute(
        "INSERT INTO sluice_queue_meta (key, value) VALUES ('format', ?1), ('max_receive_count', ?2)",
        params![FORMAT, DEFAULT_MAX_RECEIVE_COUNT.to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// One line naming the file and what failed. SQLite's messages never carry
/// bound values, so no message body can leak into it.
pub(super) fn sqlite_error(path: &Path, doing: &str, e: rusqlite::Error) -> QueueError {
    let what = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "busy: another connection held the file for longer than {} s",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::NotADatabase) => "is not a SQLite database".to_owned(),
        Some(ErrorCode::DiskFull) => {
            return QueueError::new(
                Some(crate::queue::QUEUE_FULL.into()),
                format!("queue file {}: {doing}: the disk is full", path.display()),
            );
        }
        Some(ErrorCode::CannotOpen) => {
            "cannot be opened (does its directory exist, and may this user write there?)".to_owned()
        }
        _ => e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    QueueError::new(
        None,
        format!("queue file {}: {doing}: {what}", path.display()),
    )
}

pub(super) fn read_max_receive_count(conn: &Connection) -> rusqlite::Result<u32> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM sluice_queue_meta WHERE key = 'max_receive_count'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_RECEIVE_COUNT))
}
