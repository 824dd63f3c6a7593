//! The queue file: created private (it holds events before masking), opened
//! with the shared SQLite settings plus the queue's own pragmas.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::error::sqlite_error;
use super::{BUSY_TIMEOUT, QueueError};
use crate::sqlite::{OpenOptions, Synchronous};

/// Creates a missing queue file readable by its owner only: it holds events
/// as ingest sent them, PII not yet masked. SQLite gives its `-wal` and
/// `-shm` files the same permissions.
fn create_private(path: &Path) -> Result<(), QueueError> {
    crate::sqlite::create_folder(path).map_err(|e| {
        QueueError::new(
            None,
            format!(
                "queue file {}: cannot create its folder: {}",
                path.display(),
                e.kind()
            ),
        )
    })?;
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
    // No URI flag: the path is a file name, whatever it looks like.
    let options = OpenOptions {
        flags: OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        busy_timeout: BUSY_TIMEOUT,
        synchronous: Synchronous::Full,
        pragmas: &[
            // A deleted message's pages are zeroed rather than left in the
            // free list, so raw events do not linger once the writer has
            // stored them.
            ("secure_delete", 1),
            // After a burst the WAL is cut back to this size at each
            // checkpoint instead of keeping its largest size on disk for good.
            ("journal_size_limit", 64 * 1024 * 1024),
        ],
        statement_cache: 16,
        what: "queue file",
    };
    crate::sqlite::open(path, &options).map_err(|e| sqlite_error(path, "opening", e))
}
