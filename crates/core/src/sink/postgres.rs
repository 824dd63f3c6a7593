//! PostgreSQL sink: one transaction per batch, one statement per table.
//!
//! A batch is written as
//!
//! 1. one `INSERT INTO sluice_receipts … SELECT FROM UNNEST(keys, counts)
//!    ON CONFLICT DO NOTHING RETURNING message_key`: the keys that come back
//!    are the new messages, every other key is a redelivery (a duplicate);
//! 2. `user_logins`, which has no key, by one binary `COPY … FROM STDIN`
//!    of the new messages' rows (`copy`): the fastest load measured, and
//!    the receipts already keep a redelivered message's rows out;
//! 3. per other table, `INSERT … SELECT FROM UNNEST($1::text[], …)` with one
//!    array per column, for the rows of the new messages only (TUNE tables
//!    with `ON CONFLICT DO NOTHING`: an `event_id` or adjustment already
//!    stored, from another message, is skipped);
//! 4. commit.
//!
//! UNNEST binds one parameter per *column*, not per value, so a batch of any
//! size stays far below PostgreSQL's 65,535-parameter limit, and unlike COPY
//! it can skip keys already stored (ARCHITECTURE.md, "Measured choices").
//! Rows are still sent in chunks of `CHUNK_ROWS` to bound the size of one
//! statement.
//!
//! Columns are always named in the `INSERT`, so a `user_logins` table that
//! someone else created (same columns, any order) works as well.
//!
//! Errors are classified by `classify` into transient (retry later) and
//! permanent; their text carries the SQLSTATE, the server's primary message
//! and identifiers, never `detail()` or `where()`, which echo row values.
//! TLS failures that no retry fixes are configuration errors (`tls`).

mod copy;
mod idempotency;
mod tls;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgDatabaseError, PgPool, PgPoolOptions};

pub use self::copy::copy_logins;
use self::idempotency::claim_identities;
use super::{Sink, SinkError};
use crate::records::{
    Decimal, LoginRow, MessageRows, TuneAdjustmentRow, TuneEventRow, WriteBatch, WriteOutcome,
};

/// How long a write waits for a pooled connection (including connecting)
/// before it reports the database as unavailable.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per `INSERT … UNNEST` statement: measured fast at 5,000
/// (ARCHITECTURE.md, "Measured choices"),
/// and it keeps one statement's arrays to a few megabytes.
const CHUNK_ROWS: usize = 5_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Writes batches into PostgreSQL through a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresSink {
    pool: PgPool,
}

impl PostgresSink {
    /// Builds the pool for `url` without connecting: a database that is down
    /// at start is reported by the first use as [`SinkError::Transient`]
    /// (after [`DEFAULT_ACQUIRE_TIMEOUT`]), so the writer can start, report
    /// not-ready and retry. Only a malformed URL or a certificate file that
    /// cannot be read fails here, as [`SinkError::Configuration`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SinkError> {
        Self::connect_with_timeout(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT)
    }

    /// [`connect`](Self::connect) with an explicit acquire timeout.
    pub fn connect_with_timeout(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, SinkError> {
        tls::check_files(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_lazy(url)
            // The URL may hold a password: name the problem, not the URL.
            .map_err(|e| {
                SinkError::Configuration(format!("invalid PostgreSQL URL: {}", url_error(&e)))
            })?;
        Ok(Self { pool })
    }

    /// The underlying pool, for callers that need to run their own queries
    /// (tests, `/readyz` details).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn migrate(&self) -> Result<(), SinkError> {
        // sqlx takes a PostgreSQL advisory lock around the run, so concurrent
        // writers migrating at start are safe.
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => classify("migrating", inner),
            other => SinkError::Permanent(format!("migrating: {other}")),
        })
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, SinkError> {
        if batch.messages.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify("beginning a transaction", e))?;

        let mut fresh = insert_receipts(&mut tx, &batch.messages).await?;

        // One pass in batch order: the first occurrence of a key whose receipt
        // was just inserted is new; everything else is a duplicate (including
        // a key repeated inside the batch, whose receipt was inserted once).
        let mut new = Vec::with_capacity(batch.messages.len());
        let mut duplicate_keys = Vec::new();
        for message in &batch.messages {
            if fresh.remove(message.key.as_str()) {
                new.push(message);
            } else {
                duplicate_keys.push(message.key.clone());
            }
        }
        // Events whose Idempotency-Key identity was stored before (a retried
        // request) are dropped here, in the same transaction as the rows.
        let new = claim_identities(&mut tx, new).await?;

        // Collected rather than streamed: an iterator with closures over
        // `new` held across the awaits is not `Send` for async_trait.
        let logins: Vec<&LoginRow> = new.iter().flat_map(|m| &m.logins).collect();
        let mut logins_written = 0;
        if !logins.is_empty() {
            logins_written = copy_logins(&mut tx, logins, batch.written_on).await?;
        }

        // Sorted by key (stable: the first of equal keys is the one kept), so
        // concurrent writers inserting overlapping keys take the index locks
        // in the same order instead of deadlocking.
        let mut events: Vec<&TuneEventRow> = new.iter().flat_map(|m| &m.tune_events).collect();
        events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        let mut tune_events_written = 0;
        for chunk in events.chunks(CHUNK_ROWS) {
            tune_events_written += insert_tune_events(&mut tx, chunk).await?;
        }

        let mut adjustments: Vec<&TuneAdjustmentRow> =
            new.iter().flat_map(|m| &m.tune_adjustments).collect();
        adjustments.sort_by(|a, b| {
            (a.event_id.as_str(), a.adjustment_sequence_id)
                .cmp(&(b.event_id.as_str(), b.adjustment_sequence_id))
        });
        let mut tune_adjustments_written = 0;
        for chunk in adjustments.chunks(CHUNK_ROWS) {
            tune_adjustments_written += insert_tune_adjustments(&mut tx, chunk).await?;
        }

        let rejected: Vec<RejectedRef<'_>> = new
            .iter()
            .flat_map(|m| m.rejected.iter().map(move |r| (m.key.as_str(), r)))
            .collect();
        let mut rejected_written = 0;
        for chunk in rejected.chunks(CHUNK_ROWS) {
            rejected_written += insert_rejected(&mut tx, chunk).await?;
        }

        tx.commit().await.map_err(|e| classify("committing", e))?;
        Ok(WriteOutcome {
            duplicate_keys,
            logins_written,
            rejected_written,
            tune_events_written,
            tune_adjustments_written,
        })
    }

    async fn ping(&self) -> Result<(), SinkError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| classify("ping", e))
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, SinkError> {
        idempotency::purge(&self.pool, before).await
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

/// Inserts one receipt per distinct key and returns the keys that were new.
async fn insert_receipts(
    conn: &mut PgConnection,
    messages: &[MessageRows],
) -> Result<HashSet<String>, SinkError> {
    let mut seen = HashSet::with_capacity(messages.len());
    let mut receipts: Vec<(&str, i32)> = messages
        .iter()
        .filter(|m| seen.insert(m.key.as_str()))
        .map(|m| {
            (
                m.key.as_str(),
                i32::try_from(m.row_count()).unwrap_or(i32::MAX),
            )
        })
        .collect();
    // Concurrent writers holding overlapping keys then take the index locks
    // in the same order, which avoids deadlocks between them.
    receipts.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (keys, counts): (Vec<&str>, Vec<i32>) = receipts.into_iter().unzip();

    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO sluice_receipts (message_key, row_count) \
         SELECT * FROM UNNEST($1::text[], $2::int4[]) \
         ON CONFLICT (message_key) DO NOTHING \
         RETURNING message_key",
    )
    .bind(keys)
    .bind(counts)
    .fetch_all(conn)
    .await
    .map_err(|e| classify("inserting sluice_receipts", e))?;
    Ok(inserted.into_iter().collect())
}

/// One amount column as text, for an exact `::numeric` cast.
fn amounts<'a, T>(
    rows: &[&'a T],
    f: impl Fn(&'a T) -> Option<&'a Decimal>,
) -> Vec<Option<&'a str>> {
    rows.iter().map(|r| f(r).map(Decimal::as_str)).collect()
}

/// Inserts tracking events; an `event_id` already stored (or repeated in
/// the chunk) is skipped. Returns the rows inserted. Amounts travel as text
/// and are cast to `numeric` exactly; `extra` as text cast to `jsonb`.
async fn insert_tune_events(
    conn: &mut PgConnection,
    rows: &[&TuneEventRow],
) -> Result<u64, SinkError> {
    let text = |f: fn(&TuneEventRow) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let event_id: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let action: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    let occurred_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.occurred_at).collect();
    let offer_id: Vec<Option<i64>> = rows.iter().map(|r| r.offer_id).collect();
    let affiliate_id: Vec<Option<i64>> = rows.iter().map(|r| r.affiliate_id).collect();
    let advertiser_id: Vec<Option<i64>> = rows.iter().map(|r| r.advertiser_id).collect();
    let extra: Vec<&str> = rows.iter().map(|r| r.extra.as_str()).collect();

    let query = sqlx::query(
        "INSERT INTO tune_events \
           (event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
            advertiser_id, payout, revenue, currency, country, status, masked_ip, \
            masked_session_ip, masked_user_agent, masked_device_id, extra) \
         SELECT u.event_id, u.action, u.occurred_at, u.transaction_id, u.offer_id, \
                u.affiliate_id, u.advertiser_id, u.payout::numeric, u.revenue::numeric, \
                u.currency, u.country, u.status, u.masked_ip, u.masked_session_ip, \
                u.masked_user_agent, u.masked_device_id, u.extra::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[], \
                     $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[], \
                     $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], \
                     $16::text[], $17::text[]) \
           AS u(event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
                advertiser_id, payout, revenue, currency, country, status, masked_ip, \
                masked_session_ip, masked_user_agent, masked_device_id, extra) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(action)
    .bind(occurred_at)
    .bind(text(|r| r.transaction_id.as_deref()))
    .bind(offer_id)
    .bind(affiliate_id)
    .bind(advertiser_id)
    .bind(amounts(rows, |r| r.payout.as_ref()))
    .bind(amounts(rows, |r| r.revenue.as_ref()))
    .bind(text(|r| r.currency.as_deref()))
    .bind(text(|r| r.country.as_deref()))
    .bind(text(|r| r.status.as_deref()))
    .bind(text(|r| r.masked_ip.as_deref()))
    .bind(text(|r| r.masked_session_ip.as_deref()))
    .bind(text(|r| r.masked_user_agent.as_deref()))
    .bind(text(|r| r.masked_device_id.as_deref()))
    .bind(extra);
    inserted(conn, query, "tune_events").await
}

/// Inserts adjustments; an `(event_id, adjustment_sequence_id)` already
/// stored is skipped. Returns the rows inserted.
async fn insert_tune_adjustments(
    conn: &mut PgConnection,
    rows: &[&TuneAdjustmentRow],
) -> Result<u64, SinkError> {
    let event_id: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let sequence: Vec<i64> = rows.iter().map(|r| r.adjustment_sequence_id).collect();
    let action: Vec<i16> = rows.iter().map(|r| r.adjust_action.code()).collect();
    let adjusted_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.adjusted_at).collect();
    let num: Vec<Option<i64>> = rows.iter().map(|r| r.num).collect();
    let extra: Vec<&str> = rows.iter().map(|r| r.extra.as_str()).collect();

    let query = sqlx::query(
        "INSERT INTO tune_adjustments \
           (event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, payout, \
            revenue, current_payout, current_revenue, extra) \
         SELECT u.event_id, u.seq, u.action, u.adjusted_at, u.num, u.payout::numeric, \
                u.revenue::numeric, u.current_payout::numeric, u.current_revenue::numeric, \
                u.extra::jsonb \
         FROM UNNEST($1::text[], $2::int8[], $3::int2[], $4::timestamptz[], $5::int8[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
           AS u(event_id, seq, action, adjusted_at, num, payout, revenue, current_payout, \
                current_revenue, extra) \
         ON CONFLICT (event_id, adjustment_sequence_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(sequence)
    .bind(action)
    .bind(adjusted_at)
    .bind(num)
    .bind(amounts(rows, |r| r.payout.as_ref()))
    .bind(amounts(rows, |r| r.revenue.as_ref()))
    .bind(amounts(rows, |r| r.current_payout.as_ref()))
    .bind(amounts(rows, |r| r.current_revenue.as_ref()))
    .bind(extra);
    inserted(conn, query, "tune_adjustments").await
}

/// A rejected row with the key of the message it came from.
type RejectedRef<'a> = (&'a str, &'a crate::records::RejectedRow);

/// Inserts rejected records.
async fn insert_rejected(
    conn: &mut PgConnection,
    rows: &[RejectedRef<'_>],
) -> Result<u64, SinkError> {
    let message_key: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
    let reason: Vec<&str> = rows.iter().map(|(_, r)| r.reason.as_str()).collect();
    let payload: Vec<&str> = rows.iter().map(|(_, r)| r.payload.as_str()).collect();
    let payload_format: Vec<&str> = rows
        .iter()
        .map(|(_, r)| r.payload_format.as_str())
        .collect();

    let query = sqlx::query(
        "INSERT INTO rejected_records (message_key, reason, payload, payload_format) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])",
    )
    .bind(message_key)
    .bind(reason)
    .bind(payload)
    .bind(payload_format);
    inserted(conn, query, "rejected_records").await
}

/// Runs an UNNEST insert; returns the rows it inserted. `table` names the
/// table in errors.
async fn inserted(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    table: &str,
) -> Result<u64, SinkError> {
    query
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| classify(&format!("inserting {table}"), e))
}

/// Sorts a sqlx error into transient or permanent, with a text free of row
/// values. `context` says what the sink was doing (e.g. the table).
fn classify(context: &str, err: sqlx::Error) -> SinkError {
    use sqlx::Error as E;
    if let Some(reason) = tls::configuration_error(&err) {
        return SinkError::Configuration(format!("{context}: {reason}"));
    }
    match err {
        E::Database(db) => {
            let (transient, text) = match db.try_downcast_ref::<PgDatabaseError>() {
                Some(pg) => (is_transient_sqlstate(pg.code()), pg_error_text(context, pg)),
                None => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    let message = redact_if_data(&code, db.message());
                    (
                        is_transient_sqlstate(&code),
                        format!("{context}: SQLSTATE {code}: {message}"),
                    )
                }
            };
            if transient {
                SinkError::Transient(text)
            } else {
                SinkError::Permanent(text)
            }
        }
        // The network, the pool or the connection went away: retry later.
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => SinkError::Transient(format!("{context}: {err}")),
        // Bad settings, encoding, decoding, or a bug: the same call fails again.
        other => SinkError::Permanent(format!("{context}: {other}")),
    }
}

/// SQLSTATEs worth retrying: the failure is about the server or the moment,
/// not the data.
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code.get(..2),
        // 08 connection exception, 40 serialization failure / deadlock,
        // 53 insufficient resources (disk full, out of memory, too many
        // connections), 58 system error (I/O error on the server).
        Some("08" | "40" | "53" | "58")
    ) || matches!(
        code,
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up).
        "57P01" | "57P02" | "57P03"
        // lock_not_available: lock_timeout expired while another writer held it.
        | "55P03"
    )
}

/// SQLSTATE, primary message and the identifiers PostgreSQL names — never the
/// detail, hint or context, which can quote row values.
fn pg_error_text(context: &str, pg: &PgDatabaseError) -> String {
    let code = pg.code();
    let mut text = format!(
        "{context}: SQLSTATE {code}: {}",
        redact_if_data(code, pg.message())
    );
    let fields = [
        ("table", pg.table()),
        ("column", pg.column()),
        ("constraint", pg.constraint()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            text.push_str(&format!(", {name} {value}"));
        }
    }
    text
}

/// Class 22 (data exception) primary messages sometimes quote the offending
/// value (`invalid input syntax for type integer: "…"`, `value "…" is out of
/// range`): blank out everything in double quotes for that class.
fn redact_if_data(code: &str, message: &str) -> String {
    if !code.starts_with("22") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// A URL parse error without the URL itself.
fn url_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Configuration(source) => source.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_sqlstates() {
        for code in [
            "08006", "08001", "40001", "40P01", "53100", "53300", "57P01", "57P03", "58030",
            "55P03",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in [
            "22001", "23505", "42P01", "42703", "57014", "XX000", "", "2",
        ] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn data_messages_are_redacted() {
        assert_eq!(
            redact_if_data(
                "22P02",
                r#"invalid input syntax for type integer: "secret""#
            ),
            r#"invalid input syntax for type integer: "…""#
        );
        assert_eq!(
            redact_if_data(
                "22003",
                r#"value "123456789012" is out of range for type integer"#
            ),
            r#"value "…" is out of range for type integer"#
        );
        assert_eq!(
            redact_if_data("42P01", r#"relation "user_logins" does not exist"#),
            r#"relation "user_logins" does not exist"#
        );
    }

    #[test]
    fn non_database_errors() {
        assert!(classify("x", sqlx::Error::PoolTimedOut).is_transient());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(classify("x", sqlx::Error::Io(io)).is_transient());
        assert!(!classify("x", sqlx::Error::RowNotFound).is_transient());
    }
}
