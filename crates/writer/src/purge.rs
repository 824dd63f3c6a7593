//! Forgets old `Idempotency-Key` identities.
//!
//! Every key a writer claims is a row in `sluice_idempotency` (the runs of
//! its events stored); without a purge the table grows with every keyed
//! request ever received. Retries come within minutes or hours, so a key is
//! kept for `WRITER_IDEMPOTENCY_RETENTION_HOURS` (72 by default) after its
//! last claim and then deleted; a retry after that is new data. Every writer purges (at start, then every
//! few minutes): the deletes are idempotent, so replicas need no
//! coordination.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::sink::Sink;
use tokio_util::sync::CancellationToken;

/// How often a writer purges.
pub const INTERVAL: Duration = Duration::from_secs(600);

/// Deletes keys last claimed longer than `retention` ago; returns how many
/// identities (events) they held.
pub async fn once(
    sink: &dyn Sink,
    retention: Duration,
) -> Result<u64, sluice_core::sink::SinkError> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let before = chrono::Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    sink.purge_idempotency(before).await
}

/// Purges every [`INTERVAL`] until `stop`.
pub async fn run(sink: Arc<dyn Sink>, retention: Duration, stop: CancellationToken) {
    loop {
        match once(sink.as_ref(), retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "old idempotency keys purged"),
            Err(e) => {
                tracing::warn!(error = %e, "purging old idempotency keys failed; retried later")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = stop.cancelled() => return,
        }
    }
}
