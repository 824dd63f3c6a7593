//! What decoding a message body gives: records, and the parts that are not
//! records with why, plus the envelope's id and `idempotency` spans.
//!
//! The shapes every decoder in [`super`] builds, kept apart from them so
//! that each decoder depends on these and none on another.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Events `.0 .. .0 + .3` of an envelope are events `.2 .. .2 + .3` of the
/// request whose `Idempotency-Key` gave the identity key `.1`. A JSON array
/// `[at, "key", first, count]`: envelopes carry many, so they are kept short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpan(pub usize, pub String, pub u64, pub usize);

/// What one part of a message body turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A JSON object: a record to classify.
    Record(Map<String, Value>),
    /// Something that is not a record, with why.
    Invalid {
        reason: String,
        payload: InvalidPayload,
    },
}

/// The payload of an invalid item, kept so nothing is lost.
#[derive(Debug, Clone, PartialEq)]
pub enum InvalidPayload {
    /// Parsed JSON that is not a record (a scalar, say): masked before storing.
    Json(Value),
    /// Bytes that did not parse: encrypted before storing.
    Raw(Vec<u8>),
}

/// A decoded message body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedBody {
    /// The envelope's `id`, when the body was an envelope that had one.
    pub envelope_id: Option<String>,
    pub items: Vec<Item>,
    /// The envelope's `idempotency` spans, when it had readable ones.
    pub idempotency: Vec<KeySpan>,
}

impl DecodedBody {
    pub(super) fn invalid(reason: impl Into<String>, payload: InvalidPayload) -> Self {
        Self {
            envelope_id: None,
            items: vec![Item::Invalid {
                reason: reason.into(),
                payload,
            }],
            idempotency: Vec::new(),
        }
    }

    /// The reasons of the items that are not records, in order.
    pub fn reasons(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Invalid { reason, .. } => Some(reason.as_str()),
                Item::Record(_) => None,
            })
            .collect()
    }
}

/// The receipt key an envelope's `id` gives, if it has one: a non-empty
/// string, in the form every database can store ([`crate::message_key`]).
pub(super) fn envelope_id(id: Option<&Value>) -> Option<String> {
    match id {
        Some(Value::String(id)) if !id.is_empty() => Some(crate::message_key::storable(id)),
        _ => None,
    }
}

/// An envelope's `idempotency` spans; unreadable ones count as none (the
/// events are then stored as unkeyed, never dropped).
pub(super) fn key_spans(value: Option<Value>) -> Vec<KeySpan> {
    value
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The items of an array of records (a body that is one, or an envelope's
/// `events`): an empty one is invalid as a whole, with `empty_reason`.
pub(super) fn records_of(
    values: Vec<Value>,
    empty_reason: &str,
    empty_payload: Value,
) -> DecodedBody {
    if values.is_empty() {
        return DecodedBody::invalid(empty_reason, InvalidPayload::Json(empty_payload));
    }
    let items = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| match value {
            Value::Object(object) => Item::Record(object),
            other => Item::Invalid {
                reason: format!("element {i} is not a JSON object"),
                payload: InvalidPayload::Json(other),
            },
        })
        .collect();
    DecodedBody {
        envelope_id: None,
        items,
        idempotency: Vec::new(),
    }
}
