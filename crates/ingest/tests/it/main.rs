//! One integration-test binary for ingest: shared helpers in `helpers`, one
//! module per behaviour.

#[macro_use]
mod helpers;

mod api;
mod binary;
mod bombs;
mod crash;
mod delivery;
mod metrics;
mod openapi;
mod shutdown;
