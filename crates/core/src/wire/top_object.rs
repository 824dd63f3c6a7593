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

use super::{DecodedBody, ENVELOPE_VERSION, InvalidPayload, Item, envelope_id, records_of};

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
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TopObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
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
        d.deserialize_map(V)
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
        };
    }
    if let Some(reason) = top.problem() {
        return rejected_envelope(top, reason);
    }
    let envelope_id = envelope_id(top.ids.first());
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
    DecodedBody { envelope_id, items }
}

/// `"v": 1`, the one version this writer reads.
pub(super) fn is_known_version(v: &Value) -> bool {
    v.as_u64() == Some(u64::from(ENVELOPE_VERSION))
}
