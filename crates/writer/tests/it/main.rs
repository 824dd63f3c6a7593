//! One integration-test binary for the writer (zero-to-production style):
//! shared helpers in `helpers`, one module per behaviour.

#[macro_use]
mod helpers;

mod bad_input;
mod binary;
mod body_props;

mod delivery;
mod disk_full;
mod dlq;
mod hostile;
mod idempotency;
mod metrics;
mod monitoring;
mod outage;
mod pii_ops;
mod pii_subject;
mod pipeline;
mod processes;
mod queue_trouble;
mod setup;
mod stalled_start;
mod tls;
mod tune;
