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

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ConfigError, Env, QueueUrl, StartError};
pub use sqs_error::SqsErrorKind;

/// Where the queue is and how to reach it: read and checked once by a
/// service's loader ([`QueueSettings::load`]), then handed to [`connect`],
/// [`setup`] and [`dead_letter::open`], which read nothing themselves.
#[derive(Debug, Clone)]
pub enum QueueSettings {
    /// An SQS queue, with the endpoint, region and credentials to reach it.
    Sqs(sqs::SqsSettings),
    /// An embedded queue file, with how far it may grow.
    Embedded {
        path: PathBuf,
        limits: sqlite::Limits,
    },
}

impl QueueSettings {
    /// The queue `url` names, and what reaching it takes from `env`. The
    /// embedded queue's limits (`QUEUE_MAX_BYTES`, `QUEUE_MIN_FREE_BYTES`)
    /// are checked whatever the queue, so a bad size always stops the
    /// service with one line naming it.
    pub fn load(env: &Env, url: &QueueUrl) -> Result<Self, ConfigError> {
        let limits = sqlite::Limits::load(env)?;
        Ok(match url {
            QueueUrl::Sqs(url) => Self::Sqs(sqs::SqsSettings::load(env, url.clone())),
            QueueUrl::Sqlite(path) => Self::Embedded {
                path: path.clone(),
                limits,
            },
        })
    }

    /// The URL these settings were loaded for.
    pub fn url(&self) -> QueueUrl {
        match self {
            Self::Sqs(sqs) => QueueUrl::Sqs(sqs.queue_url.clone()),
            Self::Embedded { path, .. } => QueueUrl::Sqlite(path.clone()),
        }
    }
}

/// The queue `url` names with nothing else set: SQS reached as its URL
/// says, an embedded queue with the default limits. For tests and tools.
impl From<QueueUrl> for QueueSettings {
    fn from(url: QueueUrl) -> Self {
        match url {
            QueueUrl::Sqs(queue_url) => Self::Sqs(sqs::SqsSettings {
                queue_url,
                ..sqs::SqsSettings::default()
            }),
            QueueUrl::Sqlite(path) => Self::Embedded {
                path,
                limits: sqlite::Limits::default(),
            },
        }
    }
}

impl fmt::Display for QueueSettings {
    /// The URL, as [`QueueUrl`] shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url().fmt(f)
    }
}

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

/// What [`Queue::receive`] returns.
pub type Received = Result<Vec<QueueMessage>, QueueError>;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends up to ten bodies in one call.
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError>;
    /// Long-polls for up to `max` (≤ 10) messages, hiding them for `visibility`.
    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Received;
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
pub async fn connect_checked(settings: &QueueSettings) -> Result<Arc<dyn Queue>, StartError> {
    let queue = connect(settings)
        .await
        .map_err(StartError::queue("reach the queue", settings))?;
    check_answers(queue.as_ref(), STARTUP_CHECK)
        .await
        .map_err(StartError::queue("reach the queue", &queue.describe()))?;
    Ok(queue)
}

/// Connects to the queue the settings name (SQS or embedded); does not
/// create anything in SQS. An SQS endpoint that does not answer the
/// queue-name lookup within [`STARTUP_CHECK`] is an error saying so. An
/// embedded queue file that does not exist yet is created with its schema
/// (redrive after [`sqlite::DEFAULT_MAX_RECEIVE_COUNT`] receives), so a
/// first run on one machine works without `setup`.
pub async fn connect(settings: &QueueSettings) -> Result<Arc<dyn Queue>, QueueError> {
    match settings {
        QueueSettings::Sqs(sqs) => {
            let queue = sqs::SqsQueue::connect_within(sqs, STARTUP_CHECK).await?;
            Ok(Arc::new(queue))
        }
        QueueSettings::Embedded { path, limits } => {
            let (path, limits) = (path.clone(), *limits);
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
    settings: &QueueSettings,
    max_receive_count: u32,
    visibility: Duration,
) -> Result<(Arc<dyn Queue>, String), QueueError> {
    match settings {
        QueueSettings::Sqs(sqs) => {
            let client = sqs::client(sqs).await;
            let (queue, dlq) = sqs::SqsQueue::ensure_with_dead_letter_queue(
                &client,
                &sqs.queue_url,
                max_receive_count,
                visibility,
            )
            .await?;
            Ok((Arc::new(queue), dlq))
        }
        QueueSettings::Embedded { path, limits } => {
            // The visibility timeout is given with every receive; the embedded
            // queue keeps no default of its own.
            let (path, limits) = (path.clone(), *limits);
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
