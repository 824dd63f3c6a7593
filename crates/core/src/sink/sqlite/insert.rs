//! The one loop every row insert of the SQLite sink runs: a cached statement
//! executed per row, its errors classified the sink's way.

use rusqlite::{CachedStatement, Transaction};

use super::error::classify;
use crate::sink::SinkError;

/// Runs the cached statement `sql` once per row (`run` binds and executes
/// it); returns the rows it changed. `table` names the table in errors.
pub(super) fn insert_each<R>(
    tx: &Transaction<'_>,
    table: &str,
    sql: &str,
    rows: &[R],
    run: impl Fn(&mut CachedStatement<'_>, &R) -> rusqlite::Result<usize>,
) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify(&format!("inserting {table}"), e);
    let mut stmt = tx.prepare_cached(sql).map_err(err)?;
    let mut changed = 0;
    for row in rows {
        changed += run(&mut stmt, row).map_err(err)? as u64;
    }
    Ok(changed)
}
