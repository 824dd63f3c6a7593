//! The queue wire format, and decoding of every body shape a queue may hold.
//!
//! Sluice's own messages are `base64(gzip(JSON envelope))` — the shape TUNE
//! uses for its Firehose SQS deliveries — so one decoder drains both. Plain
//! JSON bodies (one record or an array per message) are what hand-written
//! producers send, and are accepted too.
//!
//! Decoding never fails as a whole: whatever cannot be read becomes an
//! [`Item::Invalid`] with a reason, so the writer can store it in
//! `rejected_records` and nothing is silently dropped.
//!
//! [`decode_body`] builds a `serde_json::Value` per record. The writer goes
//! through [`decode_body_with`] instead, which hands out each record's JSON
//! text so common shapes can be read without that tree (it was most of the
//! writer's CPU), and falls back to [`decode_body`]'s result otherwise.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

mod body;
mod envelope;
mod top_object;
pub use body::{DecodedBody, InvalidPayload, Item, KeySpan};
use body::{envelope_id, key_spans, records_of};
pub use envelope::{
    ENVELOPE_VERSION, EVENT_SEPARATOR, Envelope, closing, encode_body, head, key_spans_of,
};
use top_object::{TopObject, decode_object, is_known_version};

/// Decompressed bodies larger than this are refused (gzip bombs).
pub const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;

/// Decodes a queue message body of any accepted shape.
pub fn decode_body(body: &[u8]) -> DecodedBody {
    match body_json(body) {
        BodyJson::Plain(json) => decode_json(json, body),
        // What cannot be read is kept as it came, compressed: its expansion
        // may be a thousand times larger.
        BodyJson::Decompressed(json) => decode_json(&json, body),
        BodyJson::Decoded(decoded) => decoded,
    }
}

/// The records of an envelope or JSON array body, each as its JSON text.
#[derive(Debug)]
pub struct RawRecords<'a> {
    /// As [`DecodedBody::envelope_id`].
    pub envelope_id: Option<String>,
    /// At least one; each is valid JSON, not necessarily an object.
    pub records: Vec<&'a RawValue>,
    /// As [`DecodedBody::idempotency`].
    pub idempotency: Vec<KeySpan>,
}

/// Decodes a body as [`decode_body`] does, but when it is an envelope or a
/// JSON array first offers its records as JSON texts to `fast`, which may
/// read them without building a `serde_json::Value` each. `Err` is
/// [`decode_body`]'s result, when `fast` declines (`None`) or the body is of
/// another shape; base64 and gzip are undone only once either way.
///
/// What `fast` gets was checked as far as [`decode_body`] would check it,
/// except each record's own content: the top level is an object whose
/// `events` is a non-empty array with no repeated `events` or `id` key (or
/// a non-empty array), every other envelope field parses as a `Value`
/// nested at most [`RAW_SAFE_DEPTH`] deep, nothing follows the JSON. A
/// record that `fast` parses as a `Value` must be nested at most
/// [`RAW_SAFE_DEPTH`] deep for the result to be what [`decode_body`] gives
/// (it parses records two levels down); otherwise `fast` should decline.
pub fn decode_body_with<R>(
    body: &[u8],
    fast: impl FnOnce(RawRecords<'_>) -> Option<R>,
) -> Result<R, DecodedBody> {
    match body_json(body) {
        BodyJson::Plain(json) => match raw_records(json).and_then(fast) {
            Some(r) => Ok(r),
            None => Err(decode_json(json, body)),
        },
        BodyJson::Decompressed(json) => match raw_records(&json).and_then(fast) {
            Some(r) => Ok(r),
            None => Err(decode_json(&json, body)),
        },
        BodyJson::Decoded(decoded) => Err(decoded),
    }
}

/// Nesting that a record or envelope field parsed on its own may have and
/// still parse inside the whole body (`serde_json` stops at 128 levels).
pub const RAW_SAFE_DEPTH: usize = 100;

/// Levels of arrays and objects in a value (a scalar is 0).
pub fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Where a body's JSON text is, once base64 and gzip are undone.
enum BodyJson<'a> {
    /// The body is JSON text starting with `{` or `[`.
    Plain(&'a [u8]),
    /// JSON text decompressed from base64(gzip).
    Decompressed(Vec<u8>),
    /// Fully decoded already: a scalar, or a body that cannot be read.
    Decoded(DecodedBody),
}

fn body_json(body: &[u8]) -> BodyJson<'_> {
    let Ok(text) = std::str::from_utf8(body) else {
        return BodyJson::Decoded(DecodedBody::invalid(
            "body is not valid UTF-8",
            InvalidPayload::Raw(body.to_vec()),
        ));
    };
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return BodyJson::Plain(body);
    }
    match decompressed(body, trimmed) {
        Ok(json) => BodyJson::Decompressed(json),
        Err(decoded) => BodyJson::Decoded(decoded),
    }
}

/// The JSON inside a base64(gzip) body; `Err` is the decoded result of a
/// body that is a JSON scalar or cannot be read.
fn decompressed(body: &[u8], trimmed: &str) -> Result<Vec<u8>, DecodedBody> {
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return Err(decode_value(value));
    }
    // Not JSON: base64(gzip(JSON)), as Sluice and TUNE Firehose send.
    // Line breaks are tolerated; most bodies have none and need no copy.
    let compact: std::borrow::Cow<'_, str> = if trimmed.bytes().any(|b| b.is_ascii_whitespace()) {
        trimmed.split_ascii_whitespace().collect::<String>().into()
    } else {
        trimmed.into()
    };
    let Ok(compressed) = STANDARD.decode(compact.as_bytes()) else {
        return Err(DecodedBody::invalid(
            "body is neither JSON nor base64",
            InvalidPayload::Raw(body.to_vec()),
        ));
    };
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err(DecodedBody::invalid(
            "base64 body is not gzip",
            InvalidPayload::Raw(body.to_vec()),
        ));
    }
    let json = match gunzip(&compressed) {
        Ok(json) => json,
        Err(reason) => {
            return Err(DecodedBody::invalid(
                reason,
                InvalidPayload::Raw(body.to_vec()),
            ));
        }
    };
    if std::str::from_utf8(&json).is_err() {
        return Err(DecodedBody::invalid(
            "decompressed body is not valid UTF-8",
            InvalidPayload::Raw(body.to_vec()),
        ));
    }
    Ok(json)
}

/// The records of an envelope or array, as [`decode_body_with`] describes;
/// `None` for any other shape, and whenever in doubt.
fn raw_records(json: &[u8]) -> Option<RawRecords<'_>> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace())?;
    let raw = if *first == b'{' {
        let envelope: RawEnvelope<'_> = serde_json::from_slice(json).ok()?;
        RawRecords {
            envelope_id: envelope.id,
            records: envelope.events,
            idempotency: envelope.idempotency,
        }
    } else {
        RawRecords {
            envelope_id: None,
            records: serde_json::from_slice(json).ok()?,
            idempotency: Vec::new(),
        }
    };
    (!raw.records.is_empty()).then_some(raw)
}

/// An envelope object with its events left as JSON texts.
struct RawEnvelope<'a> {
    id: Option<String>,
    events: Vec<&'a RawValue>,
    idempotency: Vec<KeySpan>,
}

impl<'de> Deserialize<'de> for RawEnvelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_map(d)
    }
}

impl<'de> FromMap<'de> for RawEnvelope<'de> {
    const EXPECTING: &'static str = "an envelope object";

    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        use serde::de::Error;
        // A repeated key or an unknown version: the general path
        // rejects the body; decline and let it.
        let mut id: Option<Option<String>> = None;
        let mut seen_version = false;
        let mut events = None;
        let mut idempotency: Option<Vec<KeySpan>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "events" {
                if events.is_some() {
                    return Err(A::Error::custom("repeated events"));
                }
                events = Some(map.next_value::<Vec<&'de RawValue>>()?);
                continue;
            }
            // Parsed, not skipped: skipping checks less than a
            // `Value` parse does (depth, surrogates, numbers).
            let value = map.next_value::<Value>()?;
            if nesting(&value) > RAW_SAFE_DEPTH {
                return Err(A::Error::custom("too deep"));
            }
            if key == "id" {
                if id.is_some() {
                    return Err(A::Error::custom("repeated id"));
                }
                id = Some(envelope_id(Some(&value)));
            }
            if key == "v" {
                if seen_version || !is_known_version(&value) {
                    return Err(A::Error::custom("repeated or unknown v"));
                }
                seen_version = true;
            }
            if key == "idempotency" {
                if idempotency.is_some() {
                    return Err(A::Error::custom("repeated idempotency"));
                }
                idempotency = Some(key_spans(Some(value)));
            }
        }
        Ok(RawEnvelope {
            id: id.flatten(),
            idempotency: idempotency.unwrap_or_default(),
            events: events.ok_or_else(|| A::Error::missing_field("events"))?,
        })
    }
}

/// A type read from a JSON object key by key: serde's map visitor, whose
/// boilerplate is written once here, in [`deserialize_map`].
trait FromMap<'de>: Sized {
    /// What a value that is not an object is told it should have been.
    const EXPECTING: &'static str;

    fn from_map<A: serde::de::MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Deserialises a [`FromMap`] type from a JSON object.
fn deserialize_map<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromMap<'de>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: FromMap<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_map(map)
        }
    }
    d.deserialize_map(Visitor(std::marker::PhantomData))
}

fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, String> {
    // The gzip trailer states the decompressed size (mod 2^32): reserving
    // it saves growing a megabyte buffer by copies. Only a hint, believed
    // up to a plausible ratio — a lying trailer costs a reallocation, and
    // the limit below still holds.
    let stated = compressed
        .last_chunk::<4>()
        .map_or(0, |size| u32::from_le_bytes(*size) as usize);
    let plausible = compressed.len()..=compressed.len().saturating_mul(32);
    let hint = if plausible.contains(&stated) {
        stated
    } else {
        compressed.len() * 4
    };
    let mut out = Vec::with_capacity(hint.min(MAX_DECODED_BYTES) + 1);
    let mut limited = GzDecoder::new(compressed).take(MAX_DECODED_BYTES as u64 + 1);
    limited
        .read_to_end(&mut out)
        .map_err(|_| "broken gzip stream".to_owned())?;
    if out.len() > MAX_DECODED_BYTES {
        return Err(format!(
            "decompressed body is larger than {MAX_DECODED_BYTES} bytes"
        ));
    }
    Ok(out)
}

fn decode_json(json: &[u8], original: &[u8]) -> DecodedBody {
    let object = json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if object {
        serde_json::from_slice::<TopObject>(json).map(decode_object)
    } else {
        serde_json::from_slice::<Value>(json).map(decode_value)
    };
    parsed.unwrap_or_else(|e| {
        DecodedBody::invalid(
            format!("invalid JSON at line {} column {}", e.line(), e.column()),
            InvalidPayload::Raw(original.to_vec()),
        )
    })
}

/// Splits a parsed body into records: an envelope, an array or one object.
/// A `Value` cannot show a repeated key; bodies read from text go through
/// [`TopObject`], which does.
pub fn decode_value(value: Value) -> DecodedBody {
    match value {
        Value::Object(object) => decode_object(TopObject::from(object)),
        Value::Array(items) => records_of(items, "empty JSON array", Value::Array(vec![])),
        scalar => DecodedBody::invalid(
            "JSON scalar where an object or array was expected",
            InvalidPayload::Json(scalar),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_round_trip() {
        let env = Envelope::new(vec![
            json!({"user_id": "u", "ip": "1.2.3.4"}),
            json!({"a": 1}),
        ]);
        let decoded = decode_body(env.encode().as_bytes());
        assert_eq!(decoded.envelope_id.as_deref(), Some(env.id.as_str()));
        assert_eq!(decoded.items.len(), 2);
        assert!(matches!(&decoded.items[0], Item::Record(r) if r["user_id"] == "u"));
    }

    #[test]
    fn plain_json_object_and_array() {
        let one = decode_body(br#" {"user_id": "u"} "#);
        assert_eq!(one.items.len(), 1);
        assert_eq!(one.envelope_id, None);
        let many = decode_body(br#"[{"a":1}, 2, {"b":2}]"#);
        assert_eq!(many.items.len(), 3);
        assert_eq!(many.reasons(), vec!["element 1 is not a JSON object"]);
    }

    #[test]
    fn tune_native_delivery_without_version() {
        let body =
            encode_body(br#"{"events": [{"event_id": "e", "action": "click"}], "count": 1}"#);
        let decoded = decode_body(body.as_bytes());
        assert_eq!(decoded.items.len(), 1);
        assert!(decoded.reasons().is_empty());
    }

    #[test]
    fn bad_bodies_become_invalid_items_with_reasons() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json at all!", "body is neither JSON nor base64"),
            (b"{\"a\": ", "invalid JSON at line 1 column 6"),
            (b"42", "JSON scalar where an object or array was expected"),
            (b"true", "JSON scalar where an object or array was expected"),
            (b"[]", "empty JSON array"),
            (b"\xff\xfe{}", "body is not valid UTF-8"),
        ];
        for (body, reason) in cases {
            assert_eq!(decode_body(body).reasons(), vec![reason]);
        }
        let not_gzip = STANDARD.encode(b"hello, this is not gzip");
        assert_eq!(
            decode_body(not_gzip.as_bytes()).reasons(),
            vec!["base64 body is not gzip"]
        );
        let mut truncated = STANDARD.decode(encode_body(b"{\"a\": 1}")).unwrap();
        truncated.truncate(12);
        assert_eq!(
            decode_body(STANDARD.encode(truncated).as_bytes()).reasons(),
            vec!["broken gzip stream"]
        );
        let bad_utf8 = encode_body(b"\xff\xff");
        assert_eq!(
            decode_body(bad_utf8.as_bytes()).reasons(),
            vec!["decompressed body is not valid UTF-8"]
        );
        let empty_env = encode_body(br#"{"v":1,"id":"x","events":[]}"#);
        assert_eq!(
            decode_body(empty_env.as_bytes()).reasons(),
            vec!["envelope has no events"]
        );
    }

    #[test]
    fn unreadable_compressed_bodies_keep_the_compressed_original() {
        let spaces = encode_body(&vec![b' '; 1 << 20]);
        let bad_utf8 = encode_body(b"\xff\xff");
        for body in [spaces, bad_utf8] {
            let decoded = decode_body(body.as_bytes());
            assert!(matches!(
                &decoded.items[..],
                [Item::Invalid { payload: InvalidPayload::Raw(raw), .. }] if raw == body.as_bytes()
            ));
        }
    }

    #[test]
    fn envelope_ids_are_storable() {
        let body = |id: &str| json!({"v": 1, "id": id, "events": [{"a": 1}]}).to_string();
        let nul = decode_body(body("a\u{0}b").as_bytes());
        let long = decode_body(body(&"k".repeat(300)).as_bytes());
        for decoded in [&nul, &long] {
            let id = decoded.envelope_id.as_deref().unwrap();
            assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        }
        assert_ne!(nul.envelope_id, long.envelope_id);
    }
}
