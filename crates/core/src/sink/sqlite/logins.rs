//! `user_logins`: many rows per INSERT statement.

use rusqlite::Transaction;

use super::error::classify;
use crate::records::LoginRow;
use crate::sink::SinkError;

pub(super) fn insert_logins(
    tx: &Transaction<'_>,
    rows: &[LoginRow],
    written_on: &str,
) -> Result<u64, SinkError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let err = |e| classify("inserting user_logins", e);
    // Many rows per statement: SQLite's per-statement work (step, reset,
    // opening the table) is a good part of a narrow row's cost.
    let mut chunks = rows.chunks_exact(LOGINS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = tx.prepare_cached(&LOGINS_INSERT_MANY).map_err(err)?;
        stmt.raw_bind_parameter(1, written_on).map_err(err)?;
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                bind_login(&mut stmt, 2 + i * 6, row).map_err(err)?;
            }
            stmt.raw_execute().map_err(err)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO user_logins \
                   (create_date, user_id, device_type, masked_ip, masked_device_id, locale, app_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(err)?;
        stmt.raw_bind_parameter(1, written_on).map_err(err)?;
        for row in rest {
            bind_login(&mut stmt, 2, row).map_err(err)?;
            stmt.raw_execute().map_err(err)?;
        }
    }
    Ok(rows.len() as u64)
}

/// Login rows per multi-row INSERT: 6 parameters each (plus the shared
/// date), far under SQLite's 32,766-parameter limit; past ~100 rows longer
/// statements gain nothing.
pub(super) const LOGINS_PER_INSERT: usize = 100;

/// `INSERT INTO user_logins … VALUES (?1, ?2, …), (?1, ?8, …), …` for
/// [`LOGINS_PER_INSERT`] rows; `?1` is the date all rows share.
static LOGINS_INSERT_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let values: Vec<String> = (0..LOGINS_PER_INSERT)
        .map(|i| {
            let p = 2 + i * 6;
            format!(
                "(?1, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            )
        })
        .collect();
    format!(
        "INSERT INTO user_logins \
           (create_date, user_id, device_type, masked_ip, masked_device_id, locale, app_version) \
         VALUES {}",
        values.join(", ")
    )
});

/// Binds one login's six values from parameter `first` on.
fn bind_login(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    row: &LoginRow,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(first, &row.user_id)?;
    stmt.raw_bind_parameter(first + 1, &row.device_type)?;
    stmt.raw_bind_parameter(first + 2, &row.masked_ip)?;
    stmt.raw_bind_parameter(first + 3, &row.masked_device_id)?;
    stmt.raw_bind_parameter(first + 4, &row.locale)?;
    stmt.raw_bind_parameter(first + 5, row.app_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::WriteBatch;
    use crate::sink::Sink;
    use crate::sink::sqlite::SqliteSink;
    use rusqlite::Connection;

    fn logins(n: usize) -> Vec<LoginRow> {
        (0..n)
            .map(|i| LoginRow {
                user_id: format!("u{i}"),
                device_type: (i % 3 == 0).then(|| "ios".to_owned()),
                masked_ip: Some(format!("enc:k:{i}")),
                masked_device_id: (i % 2 == 0).then(|| format!("enc:k:d{i}")),
                locale: (i % 5 == 0).then(|| "FR".to_owned()),
                app_version: (i % 7 != 0).then_some(i as i32),
            })
            .collect()
    }

    /// Every row lands with its own values, through the multi-row INSERT
    /// and the single-row one for the rest, on both kinds of runtime.
    #[test]
    fn many_logins_round_trip_on_both_runtimes() {
        for multi_thread in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let mut runtime = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let runtime = runtime.enable_all().build().unwrap();
            let rows = logins(2 * LOGINS_PER_INSERT + 57);
            let written_on = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
            let outcome = runtime.block_on(async {
                let sink = SqliteSink::open(&path).await.unwrap();
                sink.migrate().await.unwrap();
                let mut a = crate::records::MessageRows::new("a");
                a.logins = rows.clone();
                let mut b = crate::records::MessageRows::new("b");
                b.logins = rows[..3].to_vec();
                sink.write(&WriteBatch {
                    written_on,
                    messages: vec![a, b],
                })
                .await
                .unwrap()
            });
            assert_eq!(outcome.logins_written, rows.len() as u64 + 3);
            // Each row as one JSON array, compared with what was written.
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT json_array(user_id, \
                       json_array(device_type, masked_ip, masked_device_id, locale), \
                       app_version, create_date) FROM user_logins ORDER BY rowid",
                )
                .unwrap();
            type Stored = (String, [Option<String>; 4], Option<i32>, String);
            let stored: Vec<Stored> = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|text| serde_json::from_str(&text.unwrap()).unwrap())
                .collect();
            let expected: Vec<Stored> = rows
                .iter()
                .chain(&rows[..3])
                .map(|r| {
                    let text = [&r.device_type, &r.masked_ip, &r.masked_device_id, &r.locale];
                    (
                        r.user_id.clone(),
                        text.map(Clone::clone),
                        r.app_version,
                        "2026-11-22".to_owned(),
                    )
                })
                .collect();
            assert_eq!(stored, expected);
        }
    }
}
