//! One connection behind a mutex, handed out only when no transaction is
//! left open.
//!
//! A panic while the lock was held poisons it, but the connection itself is
//! fine: rusqlite's `Transaction` rolls back on drop during unwinding. The
//! lock makes sure of it (`ROLLBACK` when the connection is not in
//! autocommit) and carries on, so one bug costs one call, not the handle.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

use super::Synchronous;

#[derive(Debug)]
struct Held {
    conn: Connection,
    synchronous: Synchronous,
}

/// A connection shared by the clones of one handle.
#[derive(Debug)]
pub(crate) struct SharedConnection(Mutex<Held>);

/// The locked connection, free of any abandoned transaction.
pub(crate) struct Guard<'a>(MutexGuard<'a, Held>);

impl SharedConnection {
    /// `conn` as opened with `synchronous`.
    pub(crate) fn new(conn: Connection, synchronous: Synchronous) -> Self {
        Self(Mutex::new(Held { conn, synchronous }))
    }

    /// Locks the connection (blocking), rolling back a transaction a
    /// panicking holder left open.
    pub(crate) fn lock(&self) -> rusqlite::Result<Guard<'_>> {
        let held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.conn.is_autocommit() {
            held.conn.execute_batch("ROLLBACK")?;
        }
        Ok(Guard(held))
    }
}

impl Guard<'_> {
    /// Sets `synchronous` for the next commits, when not already set.
    pub(crate) fn set_synchronous(&mut self, level: Synchronous) -> rusqlite::Result<()> {
        if self.0.synchronous != level {
            self.0
                .conn
                .pragma_update(None, "synchronous", level.pragma())?;
            self.0.synchronous = level;
        }
        Ok(())
    }
}

impl Deref for Guard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_transaction_leaves_a_usable_connection() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let shared = SharedConnection::new(conn, Synchronous::Full);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let guard = shared.lock().unwrap();
            guard
                .execute_batch("BEGIN; INSERT INTO t VALUES (1)")
                .unwrap();
            panic!("a bug while the transaction is open");
        }));
        assert!(panicked.is_err());
        let guard = shared.lock().unwrap();
        assert!(guard.is_autocommit());
        let rows: i64 = guard
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }
}
