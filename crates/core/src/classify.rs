//! From decoded items to masked rows: classification (README, "Records and
//! tables") and
//! the per-kind conversions.
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

/// Records larger than this (strings and keys summed) are rejected: no
/// column or analyst wants them, and they would bloat every batch.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// Bound on one `rejected_records.payload` (`WRITER_MAX_REJECTED_BYTES`).
pub const DEFAULT_MAX_REJECTED_BYTES: usize = 256 * 1024;

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
    use crate::records::PayloadFormat;
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

    /// `body_rows` must give exactly what the general path gives.
    fn same_as_general_path(c: &Classifier, body: &[u8]) {
        let general = |body: &[u8]| {
            let decoded = crate::wire::decode_body(body);
            let key = decoded
                .envelope_id
                .clone()
                .unwrap_or_else(|| "message-id".to_owned());
            c.message_rows(key, decoded)
        };
        let fast = c.body_rows(body, "message-id");
        assert_eq!(
            fast,
            general(body),
            "body {}",
            String::from_utf8_lossy(body)
        );
        let encoded = crate::wire::encode_body(body);
        let fast = c.body_rows(encoded.as_bytes(), "message-id");
        assert_eq!(fast, general(encoded.as_bytes()));
    }

    fn classifier_with(policy: &str, max_record_bytes: usize) -> Classifier {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, policy).unwrap();
        let masker = Masker::new(
            Keyring::new(PiiKey::from_bytes(&[3u8; 32]), vec![]),
            Policy::from_file(&path).unwrap(),
        );
        Classifier::new(masker, max_record_bytes)
    }

    /// Odd values for login fields, as JSON text.
    const ODD_VALUES: &[&str] = &[
        r#""10.1.2.3""#,
        r#""a\"b\u00e9\n""#,
        r#""""#,
        "null",
        "17",
        "2.5",
        "true",
        r#"{"a": 1}"#,
        r#"["x"]"#,
        r#""nul\u0000here""#,
        r#""ééééééééééééééééééééééééééééééééé""#,
        r#""2.3.0""#,
        r#"" 1.2 ""#,
        r#""1.2.3.4""#,
        r#""2001:db8::1""#,
        r#""\ud83d\ude00""#,
    ];

    #[test]
    fn body_rows_match_the_general_path_for_odd_records() {
        let names = [
            "user_id",
            "ip",
            "device_id",
            "device_type",
            "locale",
            "app_version",
            "extra",
            "USER_ID",
            "event_id",
            "action",
            "adjust_action",
        ];
        let classifiers = [
            classifier(),
            classifier_with("{}", 160),
            classifier_with(r#"{"ip": "keep", "device_id": "drop"}"#, 65_536),
            classifier_with(r#"{"ip": "truncate_ip", "device_id": "hash"}"#, 65_536),
        ];
        // A small deterministic generator: records of random fields and
        // values, some keys repeated, some values long.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut records = Vec::new();
        for _ in 0..1500 {
            // Mostly logins of the plain shape, so the fast path is tested.
            let mut fields = vec![
                format!(r#""user_id": "u{}""#, next(1000)),
                format!(r#""ip": "10.0.0.{}""#, next(256)),
            ];
            for _ in 0..next(5) {
                let name = names[next(names.len())];
                let value = match next(4) {
                    0 => format!(r#""{}""#, "x".repeat(next(300))),
                    _ => ODD_VALUES[next(ODD_VALUES.len())].to_owned(),
                };
                fields.push(format!(r#""{name}": {value}"#));
            }
            // Shuffled, so that repeated keys come in either order.
            for i in (1..fields.len()).rev() {
                fields.swap(i, next(i + 1));
            }
            records.push(format!("{{{}}}", fields.join(", ")));
        }
        for c in &classifiers {
            for chunk in records.chunks(50) {
                let events = chunk.join(",");
                let envelope = format!(r#"{{"v":1,"id":"e1","events":[{events}]}}"#);
                same_as_general_path(c, envelope.as_bytes());
                same_as_general_path(c, format!("[{events}]").as_bytes());
            }
            for r in &records[..200] {
                same_as_general_path(c, format!(r#"{{"events":[{r}]}}"#).as_bytes());
                same_as_general_path(c, r.as_bytes());
            }
        }
    }

    #[test]
    fn body_rows_match_the_general_path_at_the_size_bound() {
        let record = r#"{"user_id": "u1", "ip": "10.0.0.1", "locale": null, "device_type": null,
            "app_version": "1.\u00e9", "device_id": null}"#;
        for limit in 40..160 {
            let c = classifier_with("{}", limit);
            same_as_general_path(&c, format!(r#"{{"events": [{record}]}}"#).as_bytes());
        }
    }

    #[test]
    fn body_rows_match_the_general_path_for_odd_bodies() {
        let c = classifier();
        let login = r#"{"user_id": "u", "ip": "10.0.0.1"}"#;
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let bodies = [
            format!(r#"{{"v": 1, "id": "abc", "events": [{login}, 1, "s", null, [], {login}]}}"#),
            format!(r#"{{"id": 7, "events": [{login}]}}"#),
            format!(r#"{{"id": "", "events": [{login}]}}"#),
            format!(r#"{{"id": "{}", "events": [{login}]}}"#, "i".repeat(201)),
            format!(r#"{{"id": "a", "id": "b", "events": [{login}]}}"#),
            format!(r#"{{"events": [{login}], "events": [{login}, {login}]}}"#),
            r#"{"events": [], "id": "x"}"#.to_owned(),
            format!(r#"{{"events": {login}}}"#),
            format!(r#"{{"events": [{login}], "count": 1, "meta": {{"a": [1, 2]}}}}"#),
            format!(r#"{{"events": [{login}], "meta": {}}}"#, deep(110)),
            format!(r#"{{"events": [{login}], "meta": {}}}"#, deep(130)),
            format!(r#"{{"events": [{login}, {}]}}"#, deep(110)),
            format!(r#"{{"events": [{login}, {}]}}"#, deep(126)),
            format!(r#"{{"events": [{login}, {}]}}"#, deep(130)),
            format!(r#"{{"events": [{login}], "bad": "\ud800"}}"#),
            format!(r#"{{"events": [{login}, {{"user_id": "\ud800", "ip": "1"}}]}}"#),
            format!(r#"{{"events": [{login}], "big": 1e999}}"#),
            format!(r#"{{"events": [{login}]}} trailing"#),
            format!(r#"{{"events": [{login}]"#),
            format!(r#"[null, [{login}]]"#),
            format!(r#"[{login}, {login}]"#),
            "[]".to_owned(),
            "{}".to_owned(),
            login.to_owned(),
            "42".to_owned(),
            format!(r#"  {{"events": [ {login} ] }}  "#),
        ];
        for body in &bodies {
            same_as_general_path(&c, body.as_bytes());
        }
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
