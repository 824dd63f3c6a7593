//! Rows as the sinks write them.
//!
//! The writer turns each queue message into a [`MessageRows`]: every row that
//! message produces, already masked. A [`WriteBatch`] is many messages that
//! commit together in one transaction, each with its receipt, so a message's
//! rows are written exactly when its receipt is.

use chrono::NaiveDate;

/// One row of `user_logins`, exactly DESIGN section 6's columns but the date,
/// which is the batch's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    pub user_id: String,
    pub device_type: Option<String>,
    pub masked_ip: Option<String>,
    pub masked_device_id: Option<String>,
    pub locale: Option<String>,
    pub app_version: Option<i32>,
}

/// How the payload of a rejected record is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The record parsed as JSON; PII fields are masked by the policy.
    MaskedJson,
    /// The bytes did not parse; they are encrypted whole with the PII key.
    Encrypted,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::MaskedJson => "masked_json",
            PayloadFormat::Encrypted => "encrypted",
        }
    }
}

/// One row of `rejected_records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub reason: String,
    pub payload: String,
    pub payload_format: PayloadFormat,
}

/// Every row one queue message produced, keyed by the message's receipt key
/// (the envelope `id`, else the queue's message id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRows {
    pub key: String,
    pub logins: Vec<LoginRow>,
    pub rejected: Vec<RejectedRow>,
}

impl MessageRows {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }

    /// Rows this message writes; recorded in its receipt.
    pub fn row_count(&self) -> usize {
        self.logins.len() + self.rejected.len()
    }
}

/// Messages that commit in one transaction. Keys are unique within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// `create_date` of the rows: the UTC date the batch is written.
    pub written_on: NaiveDate,
    pub messages: Vec<MessageRows>,
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Keys whose receipt already existed: their rows were skipped.
    pub duplicate_keys: Vec<String>,
    pub logins_written: u64,
    pub rejected_written: u64,
}
