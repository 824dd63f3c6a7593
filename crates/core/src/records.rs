//! Rows as the sinks write them.
//!
//! The writer turns each queue message into a [`MessageRows`]: every row that
//! message produces, already masked. A [`WriteBatch`] is many messages that
//! commit together in one transaction, each with its receipt, so a message's
//! rows are written exactly when its receipt is.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

use crate::idempotency::{Identity, RowOrigins};

/// One row of `user_logins`, exactly the columns of its plain DDL
/// (migrations/postgres/0001_init.sql) but the date,
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

/// A decimal amount (payout, revenue), kept as its exact text: PostgreSQL
/// stores it as `numeric` without rounding, SQLite as the nearest `REAL`.
/// Only [`Decimal::parse`] makes one, so the text is always a plain finite
/// decimal that both databases accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    /// Longest text accepted: far more digits than any amount has, and short
    /// enough that no value can fail a cast.
    pub const MAX_LEN: usize = 40;

    /// `[+-]digits[.digits][e[+-]digits]` (or `.5`, `5.`), finite as a
    /// 64-bit float, with an exponent of at most three digits.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return None;
        }
        let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (unsigned, None),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
            return None;
        }
        if let Some(e) = exponent {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            if e.is_empty() || e.len() > 3 || !digits(e) {
                return None;
            }
        }
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        Some(Self(text.strip_prefix('+').unwrap_or(text).to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nearest 64-bit float (SQLite's `REAL`).
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

/// One row of `tune_events`: a TUNE/HasOffers tracking event (impression,
/// click, conversion). Masked columns are already masked; `extra` is the
/// JSON object of every other field, PII masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuneEventRow {
    pub event_id: String,
    pub action: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
    pub offer_id: Option<i64>,
    pub affiliate_id: Option<i64>,
    pub advertiser_id: Option<i64>,
    pub payout: Option<Decimal>,
    pub revenue: Option<Decimal>,
    pub currency: Option<String>,
    pub country: Option<String>,
    pub status: Option<String>,
    pub masked_ip: Option<String>,
    pub masked_session_ip: Option<String>,
    pub masked_user_agent: Option<String>,
    pub masked_device_id: Option<String>,
    /// A JSON object, serialised.
    pub extra: String,
}

/// What a TUNE adjustment does (`adjust_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustAction {
    /// 1: a new event created through TUNE's API or upload tool.
    Create,
    /// 2: a change to the event with the same `event_id`.
    Update,
}

impl AdjustAction {
    /// The stored `smallint`.
    pub fn code(self) -> i16 {
        match self {
            AdjustAction::Create => 1,
            AdjustAction::Update => 2,
        }
    }
}

/// One row of `tune_adjustments`, the ledger of TUNE adjustment events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuneAdjustmentRow {
    pub event_id: String,
    pub adjustment_sequence_id: i64,
    pub adjust_action: AdjustAction,
    pub adjusted_at: Option<DateTime<Utc>>,
    /// Signed deltas.
    pub num: Option<i64>,
    pub payout: Option<Decimal>,
    pub revenue: Option<Decimal>,
    /// Absolute values after the adjustment, when TUNE sends them.
    pub current_payout: Option<Decimal>,
    pub current_revenue: Option<Decimal>,
    /// A JSON object, serialised.
    pub extra: String,
}

/// Every row one queue message produced, keyed by the message's receipt key
/// (the envelope `id`, else the queue's message id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRows {
    pub key: String,
    pub logins: Vec<LoginRow>,
    pub tune_events: Vec<TuneEventRow>,
    pub tune_adjustments: Vec<TuneAdjustmentRow>,
    pub rejected: Vec<RejectedRow>,
    /// The `Idempotency-Key` identities of the message's events, each
    /// stored at most once (see [`crate::idempotency`]).
    pub identities: Vec<Identity>,
    /// Which identity each row came from; empty while `identities` is.
    pub origins: RowOrigins,
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
        self.logins.len()
            + self.tune_events.len()
            + self.tune_adjustments.len()
            + self.rejected.len()
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
    /// Rows actually inserted: an `event_id` (or, for adjustments, an
    /// `(event_id, adjustment_sequence_id)`) already stored is skipped.
    pub tune_events_written: u64,
    pub tune_adjustments_written: u64,
}

impl WriteOutcome {
    /// Rows inserted into every table.
    pub fn rows_written(&self) -> u64 {
        self.logins_written
            + self.rejected_written
            + self.tune_events_written
            + self.tune_adjustments_written
    }
}

/// Which rows came from which `Idempotency-Key` identity (see
/// [`crate::idempotency`]): noted while a message is classified, used to
/// drop the rows of identities claimed before.
impl MessageRows {
    /// Records that the rows added since the last call came from the
    /// event whose identity is `origin`.
    pub fn note_origin(&mut self, origin: Option<u32>) {
        if self.identities.is_empty() {
            return;
        }
        let o = &mut self.origins;
        o.logins.resize(self.logins.len(), origin);
        o.tune_events.resize(self.tune_events.len(), origin);
        o.tune_adjustments
            .resize(self.tune_adjustments.len(), origin);
        o.rejected.resize(self.rejected.len(), origin);
    }

    /// This message without the rows of identities that are not `fresh`
    /// (claimed before, or earlier in the same batch); `fresh[j]` is for
    /// `identities[j]`.
    pub fn keep_fresh(&self, fresh: &[bool]) -> Cow<'_, MessageRows> {
        if fresh.iter().all(|f| *f) {
            return Cow::Borrowed(self);
        }
        let keep = |origin: &[Option<u32>], i: usize| match origin.get(i).copied().flatten() {
            Some(j) => fresh.get(j as usize).copied().unwrap_or(true),
            None => true,
        };
        fn kept<T: Clone>(rows: &[T], keep: impl Fn(usize) -> bool) -> Vec<T> {
            rows.iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, r)| r.clone())
                .collect()
        }
        let o = &self.origins;
        Cow::Owned(MessageRows {
            key: self.key.clone(),
            logins: kept(&self.logins, |i| keep(&o.logins, i)),
            tune_events: kept(&self.tune_events, |i| keep(&o.tune_events, i)),
            tune_adjustments: kept(&self.tune_adjustments, |i| keep(&o.tune_adjustments, i)),
            rejected: kept(&self.rejected, |i| keep(&o.rejected, i)),
            identities: Vec::new(),
            origins: RowOrigins::default(),
        })
    }
}
