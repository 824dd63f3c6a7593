//! Sorting SQLite's errors into the sink's kinds.

use rusqlite::ErrorCode;

use crate::sink::SinkError;
use crate::sqlite::Interrupted;

/// Sorts a rusqlite error into transient or permanent. SQLite's messages name
/// tables and columns but not the values, so they are kept.
pub(super) fn classify(context: &str, err: rusqlite::Error) -> SinkError {
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

/// Blocking work that returned nothing, as a sink error.
pub(super) fn interrupted(why: Interrupted) -> SinkError {
    match why {
        // The runtime is shutting down: the batch was not written, try again.
        Interrupted::Cancelled => SinkError::Transient("SQLite task cancelled".into()),
        // A panic is a bug in this code; the transaction rolled back on unwind.
        Interrupted::Panicked => SinkError::Permanent("SQLite task panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
