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

use super::sqs::SqsQueue;
use super::{Queue, QueueError, QueueSettings, STARTUP_CHECK, spawn_blocking, sqlite};

/// A source queue and the queue its failed messages go to.
#[derive(Clone)]
pub struct WithDeadLetter {
    pub source: Arc<dyn Queue>,
    pub dead_letter: Arc<dyn Queue>,
}

/// Opens the queue the settings name and its dead-letter queue. Creates
/// nothing: an embedded queue file that does not exist, or an SQS queue
/// without a redrive policy, is an error saying so.
pub async fn open(settings: &QueueSettings) -> Result<WithDeadLetter, QueueError> {
    match settings {
        QueueSettings::Sqs(sqs) => {
            let source = SqsQueue::connect_within(sqs, STARTUP_CHECK).await?;
            let dead_letter = source.dead_letter_queue().await?.ok_or_else(|| {
                QueueError::new(
                    None,
                    format!(
                        "{} has no RedrivePolicy, so no dead-letter queue (`sluice-writer setup` sets one)",
                        source.url()
                    ),
                )
            })?;
            Ok(WithDeadLetter {
                source: Arc::new(source),
                dead_letter: Arc::new(dead_letter),
            })
        }
        QueueSettings::Embedded { path, limits } => {
            let (path, limits) = (path.clone(), *limits);
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
