//! What a request hands the batcher and what it is told back: the tuning
//! of packing and sending, a request's events on their way, and why they
//! did not reach the queue.
//!
//! Its own file so that the batcher (which groups submissions) and the
//! sender (which flushes them) both depend on it and not on each other.

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use crate::events::Events;

/// Tuning of packing and sending.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Largest message body, measured on the encoded body (`INGEST_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// How long a batch waits for more requests when none is arriving (`INGEST_LINGER_MS`).
    pub linger: Duration,
    /// How long a batch waits at most while requests are still arriving (`INGEST_MAX_LINGER_MS`).
    pub max_linger: Duration,
    /// How long a request waits for the queue before 503 (`INGEST_ENQUEUE_TIMEOUT_MS`).
    pub enqueue_timeout: Duration,
    /// Batches being packed and sent at once (`INGEST_FLUSH_CONCURRENCY`).
    pub flush_concurrency: usize,
    /// `SendMessageBatch` calls in flight at once (`INGEST_SEND_CONCURRENCY`).
    pub send_concurrency: usize,
    /// Event JSON held in memory awaiting the queue (`INGEST_MAX_PENDING_BYTES`).
    pub max_pending_bytes: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 262_144,
            linger: Duration::from_millis(5),
            max_linger: Duration::from_millis(50),
            enqueue_timeout: Duration::from_millis(5_000),
            flush_concurrency: 4,
            send_concurrency: 8,
            max_pending_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a request's events are not in the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("the queue did not accept the events in time")]
    Unavailable,
    /// The embedded queue is full until the writers drain it.
    #[error("the queue is full")]
    Full,
    #[error("too many events are waiting for the queue")]
    Overloaded,
    /// The queue refused event `index` (from 0) as too large even alone.
    #[error("event {index} is larger than the queue accepts in one message")]
    TooLarge { index: usize },
    #[error("the service is shutting down")]
    Closed,
}

/// A request's events on their way to the queue.
pub(crate) struct Submission {
    pub(crate) events: Events,
    pub(crate) reply: oneshot::Sender<Result<(), EnqueueError>>,
    pub(crate) deadline: Instant,
    pub(crate) queued_at: Instant,
    /// This request's share of `max_pending_bytes`, held until it is answered.
    pub(crate) room: OwnedSemaphorePermit,
}
