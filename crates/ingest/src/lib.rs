//! `sluice-ingest`: the HTTP front door. Pushers `POST /events`; events of
//! concurrent requests are packed into envelope messages and sent to SQS,
//! and a request is answered 202 only once the queue holds all its events.
//!
//! The path of a request, one module each: [`http`] (routes) → [`auth`] →
//! [`body`] (type, encoding, limits) → [`parse`] (events) → [`batcher`]
//! (group commit) → [`sender`] (one flush: [`pack`] into envelopes, send,
//! retry) → answer, with failures mapped to responses in [`error`]. The
//! binary (`main.rs`) parses the command line; everything else is here so
//! the integration tests run the very same code.

pub mod auth;
pub mod batcher;
pub mod body;
pub mod budget;
pub mod cli;
pub mod configuration;
mod cpu;
pub mod enqueue;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod pack;
pub mod parse;
mod sender;
pub mod serve;
pub mod startup;
