//! From decoded items to masked rows: classification (README, "Records and
//! tables") and
//! the per-kind conversions.
//!
//! The rule that decides a record's kind ([`RecordKind::by_fields`]) and the
//! size bound ([`approx`]) are written once, in `classify/rule.rs`; the login
//! fast path ([`login::plain_login_row`]) asks them too rather than
//! restating them.
//!
//! Every item ends as exactly one row: in its kind's table, or in
//! `rejected_records` with the reason, its payload masked (parseable) or
//! encrypted (unparseable). Reasons never quote values, so they are safe to
//! store and to log.

use serde_json::{Map, Value};

use crate::masking::Masker;
use crate::records::{MessageRows, RejectedRow};
use crate::wire::{
    DecodedBody, InvalidPayload, Item, RAW_SAFE_DEPTH, RawRecords, decode_body_with, nesting,
};
use crate::{idempotency, login, message_key, rejected, tune};

pub(crate) mod rule;
pub use rule::{RecordKind, approx};

/// Records larger than this (strings and keys summed) are rejected: no
/// column or analyst wants them, and they would bloat every batch.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// Bound on one `rejected_records.payload` (`WRITER_MAX_REJECTED_BYTES`).
pub const DEFAULT_MAX_REJECTED_BYTES: usize = 256 * 1024;

/// Turns decoded message bodies into rows.
#[derive(Debug, Clone)]
pub struct Classifier {
    masker: Masker,
    max_record_bytes: usize,
    max_rejected_bytes: usize,
}

impl Classifier {
    pub fn new(masker: Masker, max_record_bytes: usize) -> Self {
        Self {
            masker,
            max_record_bytes,
            max_rejected_bytes: DEFAULT_MAX_REJECTED_BYTES,
        }
    }

    /// Bounds each rejected row's payload (see [`crate::rejected`]).
    pub fn with_max_rejected_bytes(mut self, max: usize) -> Self {
        self.max_rejected_bytes = max;
        self
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// All rows of one message body, keyed by its envelope id, else by
    /// `message_id`. The same rows as [`crate::wire::decode_body`] then
    /// [`Classifier::message_rows`], in less time: logins of the plain shape
    /// are read straight from the JSON text (see [`login::plain_login_row`]),
    /// other records take the general path one by one.
    pub fn body_rows(&self, body: &[u8], message_id: &str) -> MessageRows {
        match decode_body_with(body, |raw| self.raw_rows(raw, message_id)) {
            Ok(rows) => rows,
            Err(decoded) => {
                let key = decoded
                    .envelope_id
                    .clone()
                    .unwrap_or_else(|| message_key::storable(message_id));
                self.message_rows(key, decoded)
            }
        }
    }

    /// Rows of records given as JSON texts; `None` when one of them is too
    /// deep to be sure the whole body would parse (the caller then decodes
    /// it the general way, which decides).
    fn raw_rows(&self, raw: RawRecords<'_>, message_id: &str) -> Option<MessageRows> {
        let key = raw
            .envelope_id
            .unwrap_or_else(|| message_key::storable(message_id));
        let mut rows = MessageRows::new(key);
        let origin_of;
        (rows.identities, origin_of) = idempotency::per_event(&raw.idempotency, raw.records.len());
        let origin = |i: usize| origin_of.get(i).copied().flatten();
        for (i, record) in raw.records.iter().enumerate() {
            let json = record.get();
            if json.starts_with('{')
                && let Some(row) = login::plain_login_row(json, &self.masker, self.max_record_bytes)
            {
                if rows.logins.is_empty() {
                    // An envelope of logins is mostly logins: room for the
                    // rest at once, instead of doubling (and copying) the
                    // vector a dozen times and keeping up to half of it idle.
                    rows.logins.reserve_exact(raw.records.len() - i);
                }
                rows.logins.push(row);
                rows.note_origin(origin(i));
                continue;
            }
            let value: Value = serde_json::from_str(json).ok()?;
            if nesting(&value) > RAW_SAFE_DEPTH {
                return None;
            }
            match value {
                Value::Object(record) => self.record(record, &mut rows),
                other => {
                    let reason = format!("element {i} is not a JSON object");
                    let rejected = self.rejected(reason, InvalidPayload::Json(other));
                    rows.rejected.push(rejected);
                }
            }
            rows.note_origin(origin(i));
        }
        Some(rows)
    }

    /// All rows of one message, keyed by `key`.
    pub fn message_rows(&self, key: String, body: DecodedBody) -> MessageRows {
        let mut rows = MessageRows::new(key);
        let origin_of;
        (rows.identities, origin_of) = idempotency::per_event(&body.idempotency, body.items.len());
        for (i, item) in body.items.into_iter().enumerate() {
            match item {
                Item::Record(record) => self.record(record, &mut rows),
                Item::Invalid { reason, payload } => {
                    let rejected = self.rejected(reason, payload);
                    rows.rejected.push(rejected);
                }
            }
            rows.note_origin(origin_of.get(i).copied().flatten());
        }
        rows
    }

    fn record(&self, record: Map<String, Value>, rows: &mut MessageRows) {
        let size = approx_size_of_object(&record);
        if !approx::within(size, self.max_record_bytes) {
            let reason = format!(
                "record of about {size} bytes is over the {} byte limit",
                self.max_record_bytes
            );
            rows.rejected
                .push(self.rejected(reason, InvalidPayload::Json(Value::Object(record))));
            return;
        }
        let result = match RecordKind::of(&record) {
            RecordKind::UserLogin => {
                login::login_row(&record, &self.masker).map(|row| rows.logins.push(row))
            }
            RecordKind::TuneEvent => {
                tune::event_row(&record, &self.masker).map(|row| rows.tune_events.push(row))
            }
            RecordKind::TuneAdjustment => tune::adjustment_row(&record, &self.masker)
                .map(|row| rows.tune_adjustments.push(row)),
            RecordKind::Unrecognized => Err("unrecognized record shape".to_owned()),
        };
        if let Err(reason) = result {
            rows.rejected
                .push(self.rejected(reason, InvalidPayload::Json(Value::Object(record))));
        }
    }

    /// A rejected row that carries no plaintext PII, its payload at most
    /// the configured bound.
    pub fn rejected(&self, reason: String, payload: InvalidPayload) -> RejectedRow {
        match payload {
            InvalidPayload::Json(value) => rejected::masked_json(
                reason,
                self.masker.mask_value(value).to_string(),
                self.max_rejected_bytes,
            ),
            InvalidPayload::Raw(bytes) => {
                rejected::encrypted(reason, &bytes, &self.masker, self.max_rejected_bytes)
            }
        }
    }
}

/// Bytes of strings and keys in a value: a cheap bound on its JSON size.
fn approx_size(value: &Value) -> usize {
    match value {
        Value::String(s) => approx::string(s.len()),
        Value::Array(items) => approx::array(items.iter().map(approx_size)),
        Value::Object(map) => approx_size_of_object(map),
        _ => approx::SCALAR,
    }
}

fn approx_size_of_object(map: &Map<String, Value>) -> usize {
    approx::object(map.iter().map(|(k, v)| approx::field(k, approx_size(v))))
}

#[cfg(test)]
mod tests;
