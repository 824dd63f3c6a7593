//! Queue errors from SQLite errors: one line naming the file.

use std::path::Path;

use rusqlite::ErrorCode;

use super::{BUSY_TIMEOUT, QueueError};

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
