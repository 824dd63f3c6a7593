//! Amazon SQS (and SQS-speaking emulators) through aws-sdk-sqs. How to
//! reach it (endpoint, region, credentials) is in [`settings`].

mod dead_letter;
mod settings;

pub use settings::{SqsSettings, client};

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::sdk_error::queue_error;
use super::{
    EntryFailure, Queue, QueueCounts, QueueError, QueueMessage, Received, SendOutcome, SqsErrorKind,
};
use crate::backoff::Backoff;

/// The URL the service itself uses for the queue. AWS and LocalStack accept
/// any spelling of the host; some emulators (fauxqs) know a queue only by
/// the URL they returned (`sqs.<region>.<host>`), so for a non-AWS endpoint
/// the name is looked up.
///
/// The lookup is retried while the server does not answer (or is
/// throttling) until `within` has passed, and then fails with "did not
/// answer within N s": falling back to the configured URL after a stall
/// made a frozen-then-thawed emulator report "the queue does not exist",
/// pointing the operator the wrong way. Any other answer (the name unknown,
/// no `GetQueueUrl`) keeps the configured URL, and the start-up check
/// reports what is wrong with it.
async fn canonical_url(
    client: &Client,
    settings: &SqsSettings,
    within: Duration,
) -> Result<String, QueueError> {
    let configured = settings.queue_url.clone();
    if SqsSettings::is_aws_host(&configured) {
        return Ok(configured);
    }
    let Some(name) = configured
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
    else {
        return Ok(configured);
    };
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut last = None;
    loop {
        // One attempt may hang on a frozen server: bound it, so a lost
        // connection is retried rather than waited out.
        let attempt = tokio::time::Instant::now() + LOOKUP_ATTEMPT;
        match tokio::time::timeout_at(
            attempt.min(deadline),
            client.get_queue_url().queue_name(name).send(),
        )
        .await
        {
            Ok(Ok(out)) => return Ok(out.queue_url().map_or(configured, str::to_owned)),
            Ok(Err(e)) => {
                let e = queue_error(e);
                if !e.kind.is_transient() {
                    return Ok(configured);
                }
                last = Some(e.to_string());
            }
            Err(_) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let mut reason = format!(
                "the SQS endpoint did not answer within {} s",
                within.as_secs()
            );
            if let Some(last) = last {
                reason.push_str(&format!(" (last error: {last})"));
            }
            return Err(QueueError::new(None, reason).with_kind(SqsErrorKind::NoAnswer));
        }
        tokio::time::sleep_until((now + backoff.next_delay()).min(deadline)).await;
    }
}

/// How long one queue-name lookup may take before it is tried again.
const LOOKUP_ATTEMPT: Duration = Duration::from_secs(5);

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

fn failures(failed: &[BatchResultErrorEntry]) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            index: f.id().parse().unwrap_or(usize::MAX),
            code: f.code().to_owned(),
            sender_fault: f.sender_fault(),
        })
        .collect()
}

fn build_error(e: impl std::fmt::Display) -> QueueError {
    QueueError::new(None, format!("invalid request: {e}"))
}

/// The entries of a batch call, one per item, with ids `"0"`, `"1"`, …:
/// the index that the answer's successes and [`failures`] give back.
fn entries<T, E: std::fmt::Display>(
    items: &[String],
    build: impl Fn(String, &String) -> Result<T, E>,
) -> Result<Vec<T>, QueueError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| build(i.to_string(), item).map_err(build_error))
        .collect()
}

impl SqsQueue {
    /// Connects, looking the queue's URL up for up to `within` while the
    /// server does not answer (see [`canonical_url`]); an error when it
    /// never does.
    pub async fn connect_within(
        settings: &SqsSettings,
        within: Duration,
    ) -> Result<Self, QueueError> {
        let client = client(settings).await;
        let queue_url = canonical_url(&client, settings, within).await?;
        Ok(Self { client, queue_url })
    }

    /// Connects without failing: when the lookup gets no answer within
    /// [`super::STARTUP_CHECK`] the configured URL is used, and the first
    /// call reports the problem (for callers that check nothing at start).
    pub async fn connect(settings: &SqsSettings) -> Self {
        match Self::connect_within(settings, super::STARTUP_CHECK).await {
            Ok(queue) => queue,
            Err(_) => Self {
                client: client(settings).await,
                queue_url: settings.queue_url.clone(),
            },
        }
    }

    pub fn from_client(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.queue_url
    }

    /// Creates the queue and `<name>-dlq` with a redrive policy moving a
    /// message to the dead-letter queue after `max_receive_count` receives.
    /// Existing queues are kept and their redrive policy set: idempotent.
    ///
    /// The dead-letter queue keeps messages [`DLQ_RETENTION_SECS`] (14 days,
    /// SQS's maximum), never less than the queue itself: SQS counts a
    /// message's age from its first send, so a dead-letter queue that keeps
    /// messages no longer than its source can drop one soon after it
    /// arrives, before anyone looked at it. Returns the queue and a sentence
    /// saying what was set.
    pub async fn ensure_with_dead_letter_queue(
        client: &Client,
        queue_url: &str,
        max_receive_count: u32,
        visibility_timeout: Duration,
    ) -> Result<(SqsQueue, String), QueueError> {
        let name = queue_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| QueueError::new(None, "QUEUE_URL names no queue"))?;
        let dlq_name = match name.strip_suffix(".fifo") {
            Some(base) => format!("{base}-dlq.fifo"),
            None => format!("{name}-dlq"),
        };
        let dlq_url = create_queue(client, &dlq_name).await?.unwrap_or_default();
        let dlq_arn = attribute(client, &dlq_url, QueueAttributeName::QueueArn)
            .await?
            .ok_or_else(|| QueueError::new(None, "dead-letter queue has no ARN"))?;
        let url = create_queue(client, name)
            .await?
            .unwrap_or_else(|| queue_url.to_owned());
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        set_attributes(
            client,
            &url,
            [
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
                (
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout.as_secs().to_string(),
                ),
            ],
        )
        .await?;
        let retention_of = |url: String| async move {
            let kept = attribute(client, &url, QueueAttributeName::MessageRetentionPeriod).await?;
            Ok::<_, QueueError>(kept.and_then(|r| r.parse::<u64>().ok()))
        };
        let source_retention = retention_of(url.clone()).await?;
        let retention = dlq_retention(source_retention);
        let retention_attribute = QueueAttributeName::MessageRetentionPeriod;
        set_attributes(
            client,
            &dlq_url,
            [(retention_attribute, retention.to_string())],
        )
        .await?;
        let kept = retention_of(dlq_url.clone()).await?;
        if kept != Some(retention) {
            return Err(QueueError::new(
                None,
                format!(
                    "dead-letter queue {dlq_url}: MessageRetentionPeriod is {} after setting it to {retention}",
                    kept.map_or_else(|| "unknown".to_owned(), |k| k.to_string())
                ),
            ));
        }
        let said = format!(
            "{dlq_url} (after {max_receive_count} receives; MessageRetentionPeriod {retention} s = {} days, the queue's {})",
            retention / 86_400,
            source_retention.map_or_else(|| "unknown".to_owned(), |s| format!("{s} s")),
        );
        Ok((SqsQueue::from_client(client.clone(), url), said))
    }
}

/// How long `setup` has the dead-letter queue keep a message: 14 days, the
/// most SQS allows (`deploy/localstack/init-sqs.sh` sets the same).
pub const DLQ_RETENTION_SECS: u64 = 1_209_600;

/// The dead-letter queue's retention for a source queue keeping messages
/// `source` seconds: the maximum, and never less than the source's.
pub fn dlq_retention(source: Option<u64>) -> u64 {
    source.map_or(DLQ_RETENTION_SECS, |s| s.max(DLQ_RETENTION_SECS))
}

/// Creates the queue `name` (a FIFO queue for a `.fifo` name) unless it
/// exists; its URL, when the server returns one.
async fn create_queue(client: &Client, name: &str) -> Result<Option<String>, QueueError> {
    let mut create = client.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let out = create.send().await.map_err(queue_error)?;
    Ok(out.queue_url().map(str::to_owned))
}

async fn set_attributes(
    client: &Client,
    url: &str,
    attributes: impl IntoIterator<Item = (QueueAttributeName, String)>,
) -> Result<(), QueueError> {
    let mut set = client.set_queue_attributes().queue_url(url);
    for (name, value) in attributes {
        set = set.attributes(name, value);
    }
    set.send().await.map_err(queue_error)?;
    Ok(())
}

/// The attributes of a queue that the server reports, of those asked for.
async fn attributes(
    client: &Client,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(queue_error)?;
    Ok(out.attributes().cloned().unwrap_or_default())
}

/// One attribute of a queue, when the server reports it.
async fn attribute(
    client: &Client,
    url: &str,
    name: QueueAttributeName,
) -> Result<Option<String>, QueueError> {
    Ok(attributes(client, url, std::slice::from_ref(&name))
        .await?
        .remove(&name))
}

/// A count attribute; 0 when the server does not report it.
fn count(attributes: &HashMap<QueueAttributeName, String>, name: &QueueAttributeName) -> u64 {
    attributes
        .get(name)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One batch call (`send_message_batch`, `delete_message_batch`, …) on the
/// queue with `entries`, to its answer: written once, as the builders of
/// the three calls share no trait.
macro_rules! batch_call {
    ($queue:expr, $call:ident, $entries:expr) => {
        $queue
            .client
            .$call()
            .queue_url(&$queue.queue_url)
            .set_entries(Some($entries))
            .send()
            .await
            .map_err(queue_error)?
    };
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError> {
        let entries = entries(bodies, |id, body| {
            SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(body)
                .build()
        })?;
        let out = batch_call!(self, send_message_batch, entries);
        let sent = out.successful().iter().map(|s| {
            let index = s.id().parse().unwrap_or(usize::MAX);
            (index, s.message_id().to_owned())
        });
        Ok(SendOutcome {
            sent: sent.collect(),
            failed: failures(out.failed()),
        })
    }

    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Received {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(out
            .messages()
            .iter()
            .map(|m| QueueMessage {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let entries = entries(receipt_handles, |id, handle| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(handle)
                .build()
        })?;
        Ok(failures(
            batch_call!(self, delete_message_batch, entries).failed(),
        ))
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let entries = entries(receipt_handles, |id, handle| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(handle)
                .visibility_timeout(timeout.as_secs() as i32)
                .build()
        })?;
        let out = batch_call!(self, change_message_visibility_batch, entries);
        Ok(failures(out.failed()))
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let visible = QueueAttributeName::ApproximateNumberOfMessages;
        let found = attributes(
            &self.client,
            &self.queue_url,
            std::slice::from_ref(&visible),
        );
        Ok(count(&found.await?, &visible))
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ];
        let found = attributes(&self.client, &self.queue_url, &names).await?;
        Ok(QueueCounts {
            visible: count(&found, &names[0]),
            in_flight: count(&found, &names[1]),
        })
    }

    async fn dead_letter_counts(&self) -> Result<Option<QueueCounts>, QueueError> {
        match self.dead_letter_queue().await? {
            Some(dead_letter) => dead_letter.counts().await.map(Some),
            None => Ok(None),
        }
    }

    fn describe(&self) -> String {
        self.queue_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_kept_longest() {
        assert_eq!(DLQ_RETENTION_SECS, 14 * 24 * 3600);
        assert_eq!(dlq_retention(None), DLQ_RETENTION_SECS);
        assert_eq!(dlq_retention(Some(345_600)), DLQ_RETENTION_SECS);
        assert_eq!(dlq_retention(Some(DLQ_RETENTION_SECS)), DLQ_RETENTION_SECS);
        // A server that allows more than SQS does: never less than the source.
        assert_eq!(dlq_retention(Some(2_000_000)), 2_000_000);
    }
}
