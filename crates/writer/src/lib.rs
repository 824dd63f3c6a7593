//! `sluice-writer`: drains the queue, masks PII and writes rows.
//!
//! The binary (`main.rs`) parses the command line; everything else is here
//! so the integration tests run the very same code.

pub mod cli;
pub mod committer;
pub mod configuration;
pub mod consumer;
pub mod depth;
pub mod dlq;
pub mod health;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod pii_ops;
pub mod purge;
pub mod startup;
