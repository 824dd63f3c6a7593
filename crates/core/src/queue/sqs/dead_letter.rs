//! The counts of an SQS queue's dead-letter queue, found through the source
//! queue's `RedrivePolicy`: the writers export them as gauges, so an
//! operator sees dead letters without knowing the dead-letter queue's name.
//!
//! Looked up on every call (policy, URL, counts: three requests) rather than
//! cached, so a redrive policy changed while writers run is followed.

use aws_sdk_sqs::types::QueueAttributeName;

use super::{SqsQueue, attribute};
use crate::queue::sdk_error::queue_error;
use crate::queue::{Queue, QueueCounts, QueueError};

impl SqsQueue {
    /// `None` when the queue has no redrive policy.
    pub(super) async fn dead_letter_counts_via_policy(
        &self,
    ) -> Result<Option<QueueCounts>, QueueError> {
        let Some(policy) = attribute(
            &self.client,
            &self.queue_url,
            QueueAttributeName::RedrivePolicy,
        )
        .await?
        else {
            return Ok(None);
        };
        let Some((account, name)) = target_of(&policy) else {
            return Err(QueueError::new(
                None,
                "the queue's RedrivePolicy names no readable deadLetterTargetArn",
            ));
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(queue_error)?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let dead_letter = SqsQueue {
            client: self.client.clone(),
            queue_url: url,
        };
        dead_letter.counts().await.map(Some)
    }
}

/// The (account id, queue name) of a redrive policy's
/// `deadLetterTargetArn` (`arn:aws:sqs:<region>:<account>:<name>`).
pub(crate) fn target_of(policy: &str) -> Option<(String, String)> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        ["arn", _, "sqs", _, account, name] if !name.is_empty() => {
            Some((account.to_owned(), name.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_targets() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:q-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(
            target_of(policy),
            Some(("123456789012".to_owned(), "q-dlq".to_owned()))
        );
        for broken in [
            "",
            "{}",
            r#"{"deadLetterTargetArn": 5}"#,
            r#"{"deadLetterTargetArn": "q"}"#,
            r#"{"maxReceiveCount":5}"#,
            "not json",
        ] {
            assert_eq!(target_of(broken), None, "{broken}");
        }
    }
}
