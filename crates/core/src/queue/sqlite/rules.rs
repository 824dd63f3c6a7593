//! SQS's refusal rules: the checks SQS makes before storing anything, so a
//! client cannot tell the embedded queue from SQS by what it accepts.

use super::{MAX_MESSAGE_BYTES, QueueError};
use crate::queue::MAX_BATCH_ENTRIES;

/// Checks the size and count of a batch call, as SQS does before anything else.
pub(super) fn check_batch_len(len: usize) -> Result<(), QueueError> {
    if len == 0 {
        return Err(QueueError::new(
            Some("EmptyBatchRequest".into()),
            "EmptyBatchRequest: the batch has no entries",
        ));
    }
    if len > MAX_BATCH_ENTRIES {
        return Err(QueueError::new(
            Some("TooManyEntriesInBatchRequest".into()),
            format!("TooManyEntriesInBatchRequest: {len} entries, at most {MAX_BATCH_ENTRIES}"),
        ));
    }
    Ok(())
}

/// Why SQS would refuse this body, if it would.
pub(super) fn refusal(body: &str) -> Option<&'static str> {
    if body.is_empty() {
        return Some("MissingParameter");
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Some("MessageTooLong");
    }
    // SQS accepts the characters XML allows: #x9 | #xA | #xD | #x20-#xD7FF |
    // #xE000-#xFFFD | #x10000-#x10FFFF (Rust strings hold no surrogates).
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    (!body.chars().all(allowed)).then_some("InvalidMessageContents")
}
