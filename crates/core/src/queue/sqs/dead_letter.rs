//! An SQS queue's dead-letter queue, found through the source queue's
//! `RedrivePolicy` rather than guessed from a naming rule: the policy names
//! an ARN, which may belong to a queue `setup` did not create. The writers
//! export its counts as gauges, and `sluice-writer dlq` opens it, so an
//! operator never needs to know its name.
//!
//! Looked up on every call (policy, URL: two requests) rather than cached,
//! so a redrive policy changed while writers run is followed.

use aws_sdk_sqs::types::QueueAttributeName;

use super::{SqsQueue, attribute};
use crate::queue::QueueError;
use crate::queue::sdk_error::queue_error;

impl SqsQueue {
    /// The queue this one's `RedrivePolicy` sends failed messages to;
    /// `None` when it has no redrive policy.
    pub async fn dead_letter_queue(&self) -> Result<Option<SqsQueue>, QueueError> {
        let policy = attribute(
            &self.client,
            &self.queue_url,
            QueueAttributeName::RedrivePolicy,
        )
        .await?;
        let Some(policy) = policy.filter(|p| !p.trim().is_empty()) else {
            return Ok(None);
        };
        let (account, name) = target_of(&policy).ok_or_else(|| {
            let url = &self.queue_url;
            QueueError::new(
                None,
                format!("{url}: RedrivePolicy names no dead-letter queue ARN"),
            )
        })?;
        let mut lookup = self.client.get_queue_url().queue_name(&name);
        if !account.is_empty() {
            lookup = lookup.queue_owner_aws_account_id(&account);
        }
        let out = lookup.send().await.map_err(queue_error)?;
        let url = out.queue_url().ok_or_else(|| {
            QueueError::new(None, format!("dead-letter queue {name}: no URL returned"))
        })?;
        Ok(Some(SqsQueue::from_client(
            self.client.clone(),
            url.to_owned(),
        )))
    }
}

/// The (account id, queue name) of a redrive policy's
/// `deadLetterTargetArn` (`arn:aws:sqs:<region>:<account>:<name>`).
fn target_of(policy: &str) -> Option<(String, String)> {
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
