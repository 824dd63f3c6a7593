//! The top level of a body's JSON object, read so that a repeated key
//! cannot hide data.
//!
//! `serde_json::Value` keeps only the last value of a repeated key, so
//! `{"events": [A], "events": [B]}` would load B and drop A without a
//! trace. The keys Sluice reads as structure (`events`, `id`, `v`) are kept
//! apart here, every occurrence; an envelope that repeats one, or names a
//! version other than 1, is rejected whole — each of its events becomes a
//! rejected record with the reason, and nothing of it is loaded.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::{DecodedBody, InvalidPayload, Item, envelope_id, key_spans, records_of};
use super::envelope::ENVELOPE_VERSION;
use super::{FromMap, deserialize_map};

/// A body's top-level object, with every occurrence of the keys Sluice
/// reads as structure (`events`, `id`, `v`) kept apart. Parsed into a
/// `Value`, a repeated key keeps only its last value: `{"events": [A],
/// "events": [B]}` would load B and silently drop A.
#[derive(Debug, Default)]
pub(super) struct TopObject {
    /// Every other field (a repeated one keeps its last value, as in a record).
    rest: Map<String, Value>,
    events: Vec<Value>,
    ids: Vec<Value>,
    versions: Vec<Value>,
}

impl From<Map<String, Value>> for TopObject {
    fn from(mut rest: Map<String, Value>) -> Self {
        let mut take = |key: &str| rest.remove(key).into_iter().collect::<Vec<_>>();
        let (events, ids, versions) = (take("events"), take("id"), take("v"));
        Self {
            rest,
            events,
            ids,
            versions,
        }
    }
}

impl<'de> Deserialize<'de> for TopObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_map(d)
    }
}

impl<'de> FromMap<'de> for TopObject {
    const EXPECTING: &'static str = "a JSON object";

    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut top = TopObject::default();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Value>()?;
            match key.as_str() {
                "events" => top.events.push(value),
                "id" => top.ids.push(value),
                "v" => top.versions.push(value),
                _ => {
                    top.rest.insert(key, value);
                }
            }
        }
        Ok(top)
    }
}

impl TopObject {
    /// An envelope: an `events` array, or `events` given more than once.
    /// Sluice's carry `"v": 1`; TUNE's native deliveries carry other
    /// metadata beside the list and no `v`.
    fn is_envelope(&self) -> bool {
        match self.events.as_slice() {
            [] => false,
            [events] => events.is_array(),
            _ => true,
        }
    }

    /// Why this envelope cannot be read as one, if it cannot.
    fn problem(&self) -> Option<&'static str> {
        if self.events.len() > 1 {
            Some("envelope has a repeated \"events\" key")
        } else if self.ids.len() > 1 {
            Some("envelope has a repeated \"id\" key")
        } else if self.versions.len() > 1 {
            Some("envelope has a repeated \"v\" key")
        } else if self.versions.iter().any(|v| !is_known_version(v)) {
            Some("unknown envelope version (this writer reads \"v\": 1)")
        } else {
            None
        }
    }

    /// The object as `Value` would have parsed it (last value wins).
    fn into_object(mut self) -> Map<String, Value> {
        for (key, values) in [
            ("events", self.events),
            ("id", self.ids),
            ("v", self.versions),
        ] {
            if let Some(last) = values.into_iter().last() {
                self.rest.insert(key.to_owned(), last);
            }
        }
        self.rest
    }
}

pub(super) fn decode_object(mut top: TopObject) -> DecodedBody {
    if !top.is_envelope() {
        return DecodedBody {
            envelope_id: None,
            items: vec![Item::Record(top.into_object())],
            idempotency: Vec::new(),
        };
    }
    if let Some(reason) = top.problem() {
        return rejected_envelope(top, reason);
    }
    let envelope_id = envelope_id(top.ids.first());
    let idempotency = key_spans(top.rest.remove("idempotency"));
    let events = match top.events.pop() {
        Some(Value::Array(events)) => events,
        _ => Vec::new(), // not reached: is_envelope saw one array
    };
    let mut body = records_of(
        events,
        "envelope has no events",
        Value::Object(top.into_object()),
    );
    body.envelope_id = envelope_id;
    body.idempotency = idempotency;
    body
}

/// An envelope that cannot be read as one is rejected whole, nothing
/// loaded: every event of every `events` value becomes a rejected item with
/// the reason, so each can be looked at and replayed.
fn rejected_envelope(mut top: TopObject, reason: &str) -> DecodedBody {
    let envelope_id = match top.ids.as_slice() {
        [id] => envelope_id(Some(id)),
        _ => None,
    };
    let mut items = Vec::new();
    for events in std::mem::take(&mut top.events) {
        let values = match events {
            Value::Array(values) => values,
            other => vec![other],
        };
        items.extend(values.into_iter().map(|value| Item::Invalid {
            reason: reason.to_owned(),
            payload: InvalidPayload::Json(value),
        }));
    }
    if items.is_empty() {
        items.push(Item::Invalid {
            reason: reason.to_owned(),
            payload: InvalidPayload::Json(Value::Object(top.into_object())),
        });
    }
    DecodedBody {
        envelope_id,
        items,
        idempotency: Vec::new(),
    }
}

/// `"v": 1`, the one version this writer reads.
pub(super) fn is_known_version(v: &Value) -> bool {
    v.as_u64() == Some(u64::from(ENVELOPE_VERSION))
}

#[cfg(test)]
mod tests {
    use crate::wire::{DecodedBody, Item, decode_body, decode_body_with, encode_body};

    /// The same through the general path and through `decode_body_with`'s
    /// (whose `fast` would load everything it is offered).
    fn both_ways(body: &[u8]) -> DecodedBody {
        let general = decode_body(body);
        let offered = decode_body_with(body, |_| Some(())).err();
        assert_eq!(offered.as_ref(), Some(&general), "the fast path declined");
        general
    }

    #[test]
    fn repeated_structural_keys_reject_the_body_whole() {
        let cases = [
            (
                r#"{"events":[{"a":1}],"events":[{"b":2},{"c":3}]}"#,
                "envelope has a repeated \"events\" key",
                3,
            ),
            (
                r#"{"v":1,"id":"x","id":"y","events":[{"a":1}]}"#,
                "envelope has a repeated \"id\" key",
                1,
            ),
            (
                r#"{"v":1,"v":1,"events":[{"a":1},{"b":2}]}"#,
                "envelope has a repeated \"v\" key",
                2,
            ),
            // A repeated `events` whose values are not arrays: still rejected,
            // each value kept.
            (
                r#"{"events":{"a":1},"events":[],"events":7}"#,
                "envelope has a repeated \"events\" key",
                2,
            ),
            (
                r#"{"events":[],"events":[]}"#,
                "envelope has a repeated \"events\" key",
                1,
            ),
        ];
        for (json, reason, items) in cases {
            for body in [json.to_owned(), encode_body(json.as_bytes())] {
                let decoded = both_ways(body.as_bytes());
                assert_eq!(decoded.items.len(), items, "{json}");
                assert!(decoded.reasons().iter().all(|r| *r == reason), "{json}");
            }
        }
        // The id is kept when it alone is not what is repeated.
        let decoded = decode_body(br#"{"id":"x","events":[{"a":1}],"events":[]}"#);
        assert_eq!(decoded.envelope_id.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_envelope_versions_are_rejected() {
        for v in ["2", "0", "\"x\"", "\"1\"", "1.0", "null", "-1", "[1]"] {
            let json = format!(
                r#"{{"v":{v},"id":"e","events":[{{"user_id":"u","ip":"1.2.3.4"}},{{"a":1}}]}}"#
            );
            for body in [json.clone(), encode_body(json.as_bytes())] {
                let decoded = both_ways(body.as_bytes());
                assert_eq!(
                    decoded.reasons(),
                    vec!["unknown envelope version (this writer reads \"v\": 1)"; 2],
                    "{json}"
                );
            }
        }
        // No `v` (TUNE's own deliveries) and `"v": 1` are read.
        for json in [r#"{"events":[{"a":1}]}"#, r#"{"v":1,"events":[{"a":1}]}"#] {
            assert!(decode_body(json.as_bytes()).reasons().is_empty());
            assert!(decode_body_with(json.as_bytes(), |_| Some(())).is_ok());
        }
        // A record that is not an envelope may have any `v`, or repeat `id`.
        let record = decode_body(br#"{"v":"x","id":1,"id":2,"user_id":"u"}"#);
        assert!(record.reasons().is_empty());
        assert!(matches!(&record.items[0], Item::Record(r) if r["id"] == 2));
    }
}
