//! Shared core of Sluice: everything both binaries agree on.
//!
//! The ingest service and the writer meet only at the queue, so the pieces they
//! must agree on — the wire format, the record shapes, how PII is masked, how
//! the queue and the databases are reached — live here, one module per concept.

pub mod backoff;
pub mod classify;
pub mod config;
pub mod fields;
pub mod idempotency;
pub mod key_file;
pub mod login;
pub mod malloc;
pub mod masking;
pub mod message_key;
pub mod queue;
pub mod records;
pub mod rejected;
pub mod shutdown;
pub mod sink;
pub(crate) mod sqlite;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod tune;
pub mod wire;
