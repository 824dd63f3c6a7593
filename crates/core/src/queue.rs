//! The queue between ingest and the writers: the [`Queue`] trait and its SQS
//! implementation.
//!
//! The trait is shaped like SQS (batches of at most ten, receipt handles,
//! visibility timeouts) because SQS is what users scale out on; other backends
//! (an embedded one for a single machine) implement the same semantics.
//! Batch calls report per-entry failures as values, because SQS answers them
//! with HTTP 200 and a `Failed` list that is easy to ignore.

pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;

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
}

impl QueueError {
    pub fn new(code: Option<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The batch or a message in it is over the queue's size limit.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("BatchRequestTooLong" | "InvalidParameterValue" | "MessageTooLong")
        )
    }
}

/// At most this many entries per batch call (SQS's limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

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
    /// `queue` URL or path, for logs.
    fn describe(&self) -> String;
}
