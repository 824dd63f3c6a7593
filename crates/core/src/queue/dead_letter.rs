//! A queue together with its dead-letter queue, for the operator's tools
//! (`sluice-writer dlq`).
//!
//! Why here: where the dead-letter queue is depends on the backend. In SQS
//! it is whatever the source queue's `RedrivePolicy` names (an ARN, which
//! may belong to a queue `setup` did not create), so it is read from there
//! rather than guessed from a naming rule; in the embedded queue it is the
//! dead-letter half of the same file. Either way both come back as plain
//! [`Queue`]s, so the tools are written once.

use std::sync::Arc;

use aws_sdk_sqs::types::QueueAttributeName;

use super::sdk_error::queue_error;
use super::sqs::{SqsQueue, SqsSettings, target_of};
use super::{Queue, QueueError, STARTUP_CHECK, spawn_blocking, sqlite};
use crate::config::QueueUrl;

/// A source queue and the queue its failed messages go to.
#[derive(Clone)]
pub struct WithDeadLetter {
    pub source: Arc<dyn Queue>,
    pub dead_letter: Arc<dyn Queue>,
}

/// Opens the queue `url` names and its dead-letter queue. Creates nothing:
/// an embedded queue file that does not exist, or an SQS queue without a
/// redrive policy, is an error saying so.
pub async fn open(url: &QueueUrl) -> Result<WithDeadLetter, QueueError> {
    match url {
        QueueUrl::Sqs(url) => {
            let settings = SqsSettings::from_env(url.clone());
            let source = SqsQueue::connect_within(&settings, STARTUP_CHECK).await?;
            let dead_letter = sqs_dead_letter(&source).await?;
            Ok(WithDeadLetter {
                source: Arc::new(source),
                dead_letter: Arc::new(dead_letter),
            })
        }
        QueueUrl::Sqlite(path) => {
            let path = path.clone();
            let limits =
                sqlite::Limits::from_env().map_err(|e| QueueError::new(None, e.to_string()))?;
            let source = spawn_blocking(move || {
                if !path.exists() {
                    return Err(QueueError::new(
                        None,
                        format!("no queue file at {}", path.display()),
                    ));
                }
                sqlite::SqliteQueue::open_with(path, limits)
            })
            .await?;
            let dead_letter = source.dead_letter_queue();
            Ok(WithDeadLetter {
                source: Arc::new(source),
                dead_letter: Arc::new(dead_letter),
            })
        }
    }
}

/// The queue the source's `RedrivePolicy` sends failed messages to.
async fn sqs_dead_letter(source: &SqsQueue) -> Result<SqsQueue, QueueError> {
    let client = source.client();
    let policy = client
        .get_queue_attributes()
        .queue_url(source.url())
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(queue_error)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            QueueError::new(
                None,
                format!(
                    "{} has no RedrivePolicy, so no dead-letter queue (`sluice-writer setup` sets one)",
                    source.url()
                ),
            )
        })?;
    let (account, name) = target_of(&policy).ok_or_else(|| {
        QueueError::new(
            None,
            format!(
                "{}: RedrivePolicy names no dead-letter queue ARN",
                source.url()
            ),
        )
    })?;
    let mut lookup = client.get_queue_url().queue_name(&name);
    if !account.is_empty() {
        lookup = lookup.queue_owner_aws_account_id(&account);
    }
    let url = lookup
        .send()
        .await
        .map_err(queue_error)?
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| {
            QueueError::new(None, format!("dead-letter queue {name}: no URL returned"))
        })?;
    Ok(SqsQueue::from_client(client.clone(), url))
}
