//! Where rows end up: the [`Sink`] trait and its PostgreSQL and SQLite
//! implementations.
//!
//! A sink writes a whole [`WriteBatch`] in one transaction: first the receipts
//! (skipping messages whose receipt already exists — redelivered messages),
//! then the rows of the new messages with bulk statements. Errors are split
//! into transient (retry the same batch later), permanent (this data will
//! never be accepted) and configuration (these settings will never connect),
//! because the writer treats them very differently.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::DatabaseUrl;
use crate::records::{WriteBatch, WriteOutcome};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The database is unreachable, restarting, or the transaction hit a
    /// serialization or lock conflict: the same batch may succeed later.
    #[error("database unavailable: {0}")]
    Transient(String),
    /// The database refused this data or the schema is wrong: retrying the same
    /// batch will fail again. Never carries row values.
    #[error("database rejected the write: {0}")]
    Permanent(String),
    /// The settings can never work, whatever the data: a TLS certificate
    /// that is not trusted or names another host, a certificate file that
    /// cannot be read. Not about any message, so never a reason to give one
    /// up; at start it stops the writer at once instead of being waited out.
    #[error("{0}")]
    Configuration(String),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Applies the embedded migrations; safe to run repeatedly and concurrently.
    async fn migrate(&self) -> Result<(), SinkError>;
    /// Writes the batch in one transaction, receipts included.
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, SinkError>;
    /// Deletes `Idempotency-Key` identities claimed before `before`; returns
    /// how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64, SinkError>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<(), SinkError>;
    /// `postgres` or `sqlite`, for logs and metric labels.
    fn kind(&self) -> &'static str;
}

/// Connects to the database named by `DATABASE_URL`.
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match url {
        DatabaseUrl::Postgres(url) => Arc::new(
            postgres::PostgresSink::connect(
                crate::config::ExposeSecret::expose_secret(url),
                max_connections,
            )
            .await?,
        ),
        DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteSink::open(path).await?),
    })
}
