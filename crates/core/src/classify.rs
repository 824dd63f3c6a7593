//! From decoded items to masked rows: classification (DESIGN section 6) and
//! the per-kind conversions.
//!
//! Every item ends as exactly one row: in its kind's table, or in
//! `rejected_records` with the reason, its payload masked (parseable) or
//! encrypted (unparseable). Reasons never quote values, so they are safe to
//! store and to log.

use serde_json::{Map, Value};

use crate::masking::Masker;
use crate::records::{MessageRows, PayloadFormat, RejectedRow};
use crate::wire::{DecodedBody, InvalidPayload, Item};
use crate::{login, tune};

/// Records larger than this (strings and keys summed) are rejected: no
/// column or analyst wants them, and they would bloat every batch.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// The kinds of record, first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    TuneAdjustment,
    TuneEvent,
    UserLogin,
    Unrecognized,
}

impl RecordKind {
    pub fn of(record: &Map<String, Value>) -> Self {
        let has = |k: &str| record.get(k).is_some_and(|v| !v.is_null());
        if has("adjust_action") {
            RecordKind::TuneAdjustment
        } else if has("event_id") && has("action") {
            RecordKind::TuneEvent
        } else if has("user_id") && (has("ip") || has("device_id")) {
            RecordKind::UserLogin
        } else {
            RecordKind::Unrecognized
        }
    }
}

/// Turns decoded message bodies into rows.
#[derive(Debug, Clone)]
pub struct Classifier {
    masker: Masker,
    max_record_bytes: usize,
}

impl Classifier {
    pub fn new(masker: Masker, max_record_bytes: usize) -> Self {
        Self {
            masker,
            max_record_bytes,
        }
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// All rows of one message, keyed by `key`.
    pub fn message_rows(&self, key: String, body: DecodedBody) -> MessageRows {
        let mut rows = MessageRows::new(key);
        for item in body.items {
            match item {
                Item::Record(record) => self.record(record, &mut rows),
                Item::Invalid { reason, payload } => {
                    let rejected = self.rejected(reason, payload);
                    rows.rejected.push(rejected);
                }
            }
        }
        rows
    }

    fn record(&self, record: Map<String, Value>, rows: &mut MessageRows) {
        let size = approx_size_of_object(&record);
        if size > self.max_record_bytes {
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

    /// A rejected row that carries no plaintext PII.
    pub fn rejected(&self, reason: String, payload: InvalidPayload) -> RejectedRow {
        match payload {
            InvalidPayload::Json(value) => RejectedRow {
                reason,
                payload: self.masker.mask_value(value).to_string(),
                payload_format: PayloadFormat::MaskedJson,
            },
            InvalidPayload::Raw(bytes) => RejectedRow {
                reason,
                payload: self.masker.encrypt(&bytes),
                payload_format: PayloadFormat::Encrypted,
            },
        }
    }
}

/// Bytes of strings and keys in a value: a cheap bound on its JSON size.
fn approx_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(approx_size).sum::<usize>() + 2,
        Value::Object(map) => approx_size_of_object(map),
        _ => 8,
    }
}

fn approx_size_of_object(map: &Map<String, Value>) -> usize {
    map.iter()
        .map(|(k, v)| k.len() + 4 + approx_size(v))
        .sum::<usize>()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::{Keyring, PiiKey, Policy};
    use serde_json::json;

    fn classifier() -> Classifier {
        let masker = Masker::new(
            Keyring::new(PiiKey::from_bytes(&[3u8; 32]), vec![]),
            Policy::default(),
        );
        Classifier::new(masker, DEFAULT_MAX_RECORD_BYTES)
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn classification_first_match_wins() {
        assert_eq!(
            RecordKind::of(&obj(
                json!({"adjust_action": 1, "event_id": "e", "action": "x"})
            )),
            RecordKind::TuneAdjustment
        );
        assert_eq!(
            RecordKind::of(&obj(
                json!({"event_id": "e", "action": "click", "user_id": "u", "ip": "1"})
            )),
            RecordKind::TuneEvent
        );
        assert_eq!(
            RecordKind::of(&obj(json!({"user_id": "u", "device_id": "d"}))),
            RecordKind::UserLogin
        );
        assert_eq!(
            RecordKind::of(&obj(json!({"user_id": "u"}))),
            RecordKind::Unrecognized
        );
        assert_eq!(
            RecordKind::of(&obj(json!({"foo": "oops_wrong_msg_type", "bar": "123"}))),
            RecordKind::Unrecognized
        );
    }

    #[test]
    fn unknown_shapes_and_oversized_records_are_rejected_masked() {
        let c = classifier();
        let body = crate::wire::decode_value(json!([
            {"foo": "oops_wrong_msg_type", "ip": "10.1.2.3"},
            {"user_id": "u", "ip": "10.9.9.9", "junk": "x".repeat(1 << 20)},
            {"user_id": "u", "ip": "10.9.9.8"},
        ]));
        let rows = c.message_rows("k".into(), body);
        assert_eq!(rows.logins.len(), 1);
        assert_eq!(rows.rejected.len(), 2);
        assert_eq!(rows.rejected[0].reason, "unrecognized record shape");
        assert!(rows.rejected[1].reason.contains("byte limit"));
        for r in &rows.rejected {
            assert_eq!(r.payload_format, PayloadFormat::MaskedJson);
            assert!(!r.payload.contains("10.1.2.3") && !r.payload.contains("10.9.9.9"));
        }
    }

    #[test]
    fn tune_records_go_to_their_tables() {
        let c = classifier();
        let body = crate::wire::decode_value(json!({"events": [
            {"event_id": "e1", "action": "click", "ip": "10.1.2.3", "datetime": 1476127152},
            {"event_id": "e2", "action": "conversion", "payout": "1.5", "aff_sub": "s-1"},
            {"event_id": "e2", "adjust_action": "update", "adjustment_sequence_id": 4,
             "payout": -1.5, "ip": "10.1.2.4"},
            {"event_id": "e3", "action": "click", "offer_id": "not-a-number", "ip": "10.1.2.5"},
            {"event_id": "e2", "adjust_action": "delete", "adjustment_sequence_id": 5},
        ]}));
        let rows = c.message_rows("k".into(), body);
        assert_eq!(rows.tune_events.len(), 2);
        assert_eq!(rows.tune_adjustments.len(), 1);
        assert_eq!(rows.row_count(), 5);
        let reasons: Vec<&str> = rows.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "offer_id is not an integer",
                "adjust_action is not 1 or \"create\", 2 or \"update\""
            ]
        );
        let all = format!("{rows:?}");
        for pii in ["10.1.2.3", "10.1.2.4", "10.1.2.5", "s-1"] {
            assert!(!all.contains(pii), "plaintext {pii}");
        }
        // The rejected payload is masked JSON that still says what it was.
        assert!(rows.rejected[0].payload.contains("not-a-number"));
    }

    #[test]
    fn unparseable_payloads_are_encrypted() {
        let c = classifier();
        let rows = c.message_rows(
            "k".into(),
            crate::wire::decode_body(b"{\"ip\": \"10.1.2.3\""),
        );
        assert_eq!(rows.rejected.len(), 1);
        let r = &rows.rejected[0];
        assert_eq!(r.payload_format, PayloadFormat::Encrypted);
        assert!(!r.payload.contains("10.1.2.3"));
        assert_eq!(
            c.masker().recover(&r.payload).unwrap(),
            b"{\"ip\": \"10.1.2.3\""
        );
    }
}
