//! Switching a SQLite file to WAL mode, for the SQLite sink and the embedded
//! queue alike.
//!
//! Writers started together on fresh files race to switch them to WAL, which
//! needs an exclusive lock; SQLite answers the loser SQLITE_BUSY at once,
//! without consulting the busy timeout. So the switch is retried here until
//! that timeout has passed, as every other statement effectively is.

use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// Sets `journal_mode=WAL`, retrying while another connection holds the
/// file, for at most `busy_timeout`; returns the mode now in effect.
pub(crate) fn switch_to_wal(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<String> {
    let deadline = Instant::now() + busy_timeout;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                // Blocking is fine: callers run this in the blocking pool.
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_connections_switch_a_fresh_file_at_once() {
        // An empty file is a fresh database to SQLite.
        let fresh = tempfile::NamedTempFile::new().unwrap();
        let path = fresh.path();
        let modes = crate::testing::at_once(
            8,
            || {
                let conn = Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                conn
            },
            |conn| switch_to_wal(&conn, Duration::from_secs(5)),
        );
        for mode in modes {
            assert_eq!(mode.unwrap().to_ascii_lowercase(), "wal");
        }
    }
}
