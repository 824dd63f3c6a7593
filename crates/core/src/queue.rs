//! The queue between ingest and the writers: the [`Queue`] trait, its SQS
//! implementation, and the embedded SQLite queue for a single machine.
//!
//! The trait is shaped like SQS (batches of at most ten, receipt handles,
//! visibility timeouts) because SQS is what users scale out on; other backends
//! (an embedded one for a single machine) implement the same semantics.
//! Batch calls report per-entry failures as values, because SQS answers them
//! with HTTP 200 and a `Failed` list that is easy to ignore.

pub mod dead_letter;
mod sdk_error;
pub mod sqlite;
pub mod sqs;
pub mod sqs_error;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{QueueUrl, StartError};
pub use sqs_error::SqsErrorKind;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id for the message; stable across redeliveries.
    pub message_id: String,
    /// Handle for delete and visibility changes; new on every receive.
    pub receipt_handle: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// One entry of a batch call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// Index of the entry in the request.
    pub index: usize,
    pub code: String,
    /// True when the request was wrong (retrying it unchanged will fail again).
    pub sender_fault: bool,
}

impl EntryFailure {
    /// What the entry's code means, however the server spells it.
    pub fn kind(&self) -> SqsErrorKind {
        sqs_error::classify_code(&self.code)
    }

    /// The server refused this entry's body as too large (a fault of the
    /// sender's: re-pack smaller rather than retry).
    pub fn is_too_large(&self) -> bool {
        self.sender_fault && self.kind().is_too_large()
    }
}

/// Result of a send: the message id of each accepted entry, failures by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: Vec<(usize, String)>,
    pub failed: Vec<EntryFailure>,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QueueError {
    /// The service's error code when it answered (`AWS.SimpleQueueService.NonExistentQueue`, ...).
    pub code: Option<String>,
    pub message: String,
    /// What the error means: from the SDK's typed variant when it has one,
    /// else from the code (any spelling), else [`SqsErrorKind::Other`].
    pub kind: SqsErrorKind,
}

impl QueueError {
    pub fn new(code: Option<String>, message: impl Into<String>) -> Self {
        let kind = code
            .as_deref()
            .map_or(SqsErrorKind::Other, sqs_error::classify_code);
        Self {
            code,
            message: message.into(),
            kind,
        }
    }

    /// The same error, with a meaning known better than its code tells.
    pub fn with_kind(mut self, kind: SqsErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The embedded queue refuses sends until writers drain it (or its disk
    /// is full): retry later, and tell the client so.
    pub fn is_full(&self) -> bool {
        self.kind == SqsErrorKind::QueueFull
    }

    /// The batch or a message in it is over the queue's size limit.
    pub fn is_too_large(&self) -> bool {
        self.kind.is_too_large()
    }
}

/// Messages waiting and messages received but neither deleted nor visible again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
}

/// The code of [`QueueError::is_full`]: the embedded queue's own (SQS has no
/// such limit).
pub const QUEUE_FULL: &str = sqs_error::codes::QUEUE_FULL;

/// At most this many entries per batch call (SQS's limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// At most this many bytes of bodies in one batch call (SQS's limit, which
/// the embedded queue keeps too).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The largest message body (SQS's maximum `MaximumMessageSize`, which the
/// embedded queue keeps too).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends up to ten bodies in one call.
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError>;
    /// Long-polls for up to `max` (≤ 10) messages, hiding them for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError>;
    /// Deletes up to ten messages by receipt handle.
    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError>;
    /// Sets the visibility timeout of up to ten messages (zero makes them
    /// visible again at once).
    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError>;
    /// Approximate number of messages waiting (not in flight).
    async fn depth(&self) -> Result<u64, QueueError>;
    /// Approximate numbers of messages waiting and in flight.
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
    /// Approximate counts of this queue's dead-letter queue; `None` when
    /// it has none (or this is one).
    async fn dead_letter_counts(&self) -> Result<Option<QueueCounts>, QueueError> {
        Ok(None)
    }
    /// `queue` URL or path, for logs.
    fn describe(&self) -> String;
}

/// How long a service waits at start for the queue to answer: the SQS
/// queue-name lookup, and then [`check_answers`], each get this long.
pub const STARTUP_CHECK: Duration = Duration::from_secs(15);

/// Checks that a connected queue answers (its counts), so a wrong URL or
/// missing credentials stop a service at start rather than in a loop; the
/// reason otherwise.
pub async fn check_answers(queue: &dyn Queue, within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, queue.counts()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("did not answer within {} s", within.as_secs())),
    }
}

/// How a service starts on its queue: [`connect`], then [`check_answers`],
/// so a wrong URL fails at start rather than on the first request.
pub async fn connect_checked(url: &QueueUrl) -> Result<Arc<dyn Queue>, StartError> {
    let queue = connect(url).await.map_err(|e| StartError::Queue {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    check_answers(queue.as_ref(), STARTUP_CHECK)
        .await
        .map_err(|reason| StartError::Queue {
            url: queue.describe(),
            reason,
        })?;
    Ok(queue)
}

/// Connects to the queue a QUEUE_URL names (SQS or embedded); does not create
/// anything in SQS. An SQS endpoint that does not answer the queue-name
/// lookup within [`STARTUP_CHECK`] is an error saying so. An embedded queue file that does not exist yet is created
/// with its schema (redrive after [`sqlite::DEFAULT_MAX_RECEIVE_COUNT`]
/// receives), so a first run on one machine works without `setup`.
pub async fn connect(url: &QueueUrl) -> Result<Arc<dyn Queue>, QueueError> {
    match url {
        QueueUrl::Sqs(url) => {
            let settings = sqs::SqsSettings::from_env(url.clone());
            let queue = sqs::SqsQueue::connect_within(&settings, STARTUP_CHECK).await?;
            Ok(Arc::new(queue))
        }
        QueueUrl::Sqlite(path) => {
            let path = path.clone();
            let limits = embedded_limits()?;
            let queue =
                spawn_blocking(move || sqlite::SqliteQueue::open_with(path, limits)).await?;
            Ok(Arc::new(queue))
        }
    }
}

/// `setup`: creates the queue and its dead-letter queue (redrive after
/// `max_receive_count` receives) when missing; idempotent. Returns the queue
/// and a description of the dead-letter queue for the log.
pub async fn setup(
    url: &QueueUrl,
    max_receive_count: u32,
    visibility: Duration,
) -> Result<(Arc<dyn Queue>, String), QueueError> {
    match url {
        QueueUrl::Sqs(url) => {
            let settings = sqs::SqsSettings::from_env(url.clone());
            let client = sqs::client(&settings).await;
            let (queue, dlq) = sqs::SqsQueue::ensure_with_dead_letter_queue(
                &client,
                url,
                max_receive_count,
                visibility,
            )
            .await?;
            Ok((Arc::new(queue), dlq))
        }
        QueueUrl::Sqlite(path) => {
            // The visibility timeout is given with every receive; the embedded
            // queue keeps no default of its own.
            let path = path.clone();
            let limits = embedded_limits()?;
            let queue = spawn_blocking(move || {
                let queue = sqlite::SqliteQueue::open_with(path, limits)?;
                queue.set_max_receive_count(max_receive_count)?;
                Ok(queue)
            })
            .await?;
            let dlq = format!(
                "the dead-letter queue in {} (after {max_receive_count} receives; kept until deleted: nothing expires in the embedded queue)",
                queue.path().display()
            );
            Ok((Arc::new(queue), dlq))
        }
    }
}

/// `QUEUE_MAX_BYTES` and `QUEUE_MIN_FREE_BYTES`, for the embedded queue.
fn embedded_limits() -> Result<sqlite::Limits, QueueError> {
    sqlite::Limits::from_env().map_err(|e| QueueError::new(None, e.to_string()))
}

/// Runs blocking SQLite work off the async threads.
async fn spawn_blocking<T, F>(f: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, QueueError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| QueueError::new(None, "queue task cancelled or panicked"))?
}
