//! Amazon SQS (and SQS-speaking emulators) through aws-sdk-sqs.
//!
//! Connection settings follow the standard AWS variables, with three
//! conveniences for local use: `AWS_KEY`/`AWS_SECRET` as aliases, the
//! endpoint taken from a non-AWS `QUEUE_URL` when `AWS_ENDPOINT_URL` is unset,
//! and dummy credentials for local endpoints — so the SDK never falls back to
//! probing the EC2 metadata service on a developer's machine.

mod dead_letter;

pub(crate) use dead_letter::target_of;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::sdk_error::queue_error;
use super::{
    EntryFailure, Queue, QueueCounts, QueueError, QueueMessage, SendOutcome, SqsErrorKind,
};
use crate::backoff::Backoff;
use crate::config::env_var;

/// Where and how to reach SQS.
#[derive(Debug, Clone, Default)]
pub struct SqsSettings {
    pub queue_url: String,
    /// `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Static credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or
    /// the `AWS_KEY`/`AWS_SECRET` aliases.
    pub credentials: Option<(String, String)>,
}

impl SqsSettings {
    /// Reads the standard variables (and the aliases) from the environment.
    pub fn from_env(queue_url: String) -> Self {
        let credentials = match (
            env_var("AWS_ACCESS_KEY_ID").or_else(|| env_var("AWS_KEY")),
            env_var("AWS_SECRET_ACCESS_KEY").or_else(|| env_var("AWS_SECRET")),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => None,
        };
        Self {
            queue_url,
            endpoint_url: env_var("AWS_ENDPOINT_URL_SQS").or_else(|| env_var("AWS_ENDPOINT_URL")),
            region: env_var("AWS_REGION").or_else(|| env_var("AWS_DEFAULT_REGION")),
            credentials,
        }
    }

    fn is_aws_host(url: &str) -> bool {
        origin(url).is_some_and(|o| o.ends_with(".amazonaws.com") || o.contains(".amazonaws.com:"))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    Some(&url[..end])
}

/// `sqs.<region>.amazonaws.com` → region.
fn region_from_url(url: &str) -> Option<String> {
    let host = origin(url)?.split("://").nth(1)?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if host.contains("amazonaws.com") => Some(region.to_owned()),
        _ => None,
    }
}

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

/// Client-side timeouts: connecting fails fast, and an attempt outlives the
/// longest long poll (20 s).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

/// Builds an SDK client from settings.
pub async fn client(settings: &SqsSettings) -> Client {
    let endpoint = settings.endpoint_url.clone().or_else(|| {
        (!SqsSettings::is_aws_host(&settings.queue_url))
            .then(|| origin(&settings.queue_url).map(str::to_owned))
            .flatten()
    });
    let is_local = endpoint
        .as_deref()
        .is_some_and(|e| !SqsSettings::is_aws_host(e));
    let region = settings
        .region
        .clone()
        .or_else(|| region_from_url(&settings.queue_url))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region))
        .timeout_config(timeouts());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    match &settings.credentials {
        Some((id, secret)) => {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "sluice-environment",
            ));
        }
        None if is_local => {
            // Emulators accept anything; this keeps the SDK off the metadata service.
            loader = loader.credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "sluice-local",
            ));
        }
        None => {}
    }
    Client::new(&loader.load().await)
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
        let fifo = name.ends_with(".fifo");
        let dlq_name = match name.strip_suffix(".fifo") {
            Some(base) => format!("{base}-dlq.fifo"),
            None => format!("{name}-dlq"),
        };
        let mut create_dlq = client.create_queue().queue_name(&dlq_name);
        if fifo {
            create_dlq = create_dlq.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let dlq_url = create_dlq
            .send()
            .await
            .map_err(queue_error)?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let dlq_arn = attribute(client, &dlq_url, QueueAttributeName::QueueArn)
            .await?
            .ok_or_else(|| QueueError::new(None, "dead-letter queue has no ARN"))?;
        let mut create = client.create_queue().queue_name(name);
        if fifo {
            create = create.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let url = create
            .send()
            .await
            .map_err(queue_error)?
            .queue_url()
            .unwrap_or(queue_url)
            .to_owned();
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        client
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            )
            .send()
            .await
            .map_err(queue_error)?;
        let source_retention = attribute(client, &url, QueueAttributeName::MessageRetentionPeriod)
            .await?
            .and_then(|r| r.parse::<u64>().ok());
        let retention = dlq_retention(source_retention);
        client
            .set_queue_attributes()
            .queue_url(&dlq_url)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                retention.to_string(),
            )
            .send()
            .await
            .map_err(queue_error)?;
        let kept = attribute(client, &dlq_url, QueueAttributeName::MessageRetentionPeriod)
            .await?
            .and_then(|r| r.parse::<u64>().ok());
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

/// One attribute of a queue, when the server reports it.
async fn attribute(
    client: &Client,
    url: &str,
    name: QueueAttributeName,
) -> Result<Option<String>, QueueError> {
    Ok(client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .map_err(queue_error)?
        .attributes()
        .and_then(|a| a.get(&name).cloned()))
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
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(SendOutcome {
            sent: out
                .successful()
                .iter()
                .map(|s| {
                    (
                        s.id().parse().unwrap_or(usize::MAX),
                        s.message_id().to_owned(),
                    )
                })
                .collect(),
            failed: failures(out.failed()),
        })
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
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
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(failures(out.failed()))
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
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(failures(out.failed()))
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(queue_error)?;
        let n = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueCounts {
            visible: n(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }

    async fn dead_letter_counts(&self) -> Result<Option<QueueCounts>, QueueError> {
        self.dead_letter_counts_via_policy().await
    }

    fn describe(&self) -> String {
        self.queue_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_regions() {
        assert_eq!(
            origin("http://localhost:4566/000000000000/q"),
            Some("http://localhost:4566")
        );
        assert_eq!(
            region_from_url("https://sqs.eu-west-1.amazonaws.com/123/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_from_url("http://localhost:4566/0/q"), None);
        assert!(SqsSettings::is_aws_host(
            "https://sqs.eu-west-1.amazonaws.com/123/q"
        ));
        assert!(!SqsSettings::is_aws_host("http://127.0.0.1:9324/0/q"));
    }

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
