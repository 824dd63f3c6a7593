//! The queue's tables and format: created in an empty file, checked in one
//! that has them; a file of another format or holding other tables is
//! refused.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::sqlite_error;
use super::{DEFAULT_MAX_RECEIVE_COUNT, QueueError};

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
