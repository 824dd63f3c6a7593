//! Writing envelopes: the one place that knows how Sluice's own messages
//! are laid out, `{"v":1,"id":…,"received_at":…,"events":[…],"idempotency":[…]}`.
//!
//! Ingest does not build an [`Envelope`]: it streams each event's JSON text,
//! as the client wrote it, into a compressor between [`head`] and
//! [`closing`], and cuts the envelope where the size limit falls. So the
//! layout is written here in pieces, and [`Envelope::encode`] is those same
//! pieces around whole events. Every piece is plain text assembly that
//! cannot fail: no error to lose on the way.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::KeySpan;

/// Version written in every envelope.
pub const ENVELOPE_VERSION: u32 = 1;

/// A batch of events as Sluice puts it on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// UUID v7: unique per message, and the receipt key in the database.
    pub id: String,
    pub received_at: String,
    pub events: Vec<Value>,
    /// Which events carry an `Idempotency-Key` identity (see
    /// [`crate::idempotency`]); absent when none does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idempotency: Vec<KeySpan>,
}

impl Envelope {
    pub fn new(events: Vec<Value>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: new_id(),
            received_at: now(),
            events,
            idempotency: Vec::new(),
        }
    }

    /// `base64(gzip(json))`: the message body.
    pub fn encode(&self) -> String {
        let mut json = head_of(self.v, &self.id, &self.received_at);
        for (i, event) in self.events.iter().enumerate() {
            if i > 0 {
                json.push(EVENT_SEPARATOR);
            }
            json.extend_from_slice(event.to_string().as_bytes());
        }
        json.extend_from_slice(&closing(&self.idempotency));
        encode_body(&json)
    }
}

/// A new envelope id: a UUID v7, so ids sort by time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The time now, as `received_at` holds it (RFC 3339, milliseconds, UTC).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The JSON text that opens a new envelope (a fresh id, received now), up
/// to and including the `[` of its `events`.
pub fn head() -> Vec<u8> {
    head_of(ENVELOPE_VERSION, &new_id(), &now())
}

/// Between two events of the `events` array.
pub const EVENT_SEPARATOR: u8 = b',';

fn head_of(v: u32, id: &str, received_at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b",\"id\":");
    push_json_string(&mut out, id);
    out.extend_from_slice(b",\"received_at\":");
    push_json_string(&mut out, received_at);
    out.extend_from_slice(b",\"events\":[");
    out
}

/// The JSON text that closes an envelope after its last event: `]`, the
/// `idempotency` spans when there are any, `}`.
pub fn closing(spans: &[KeySpan]) -> Vec<u8> {
    if spans.is_empty() {
        return b"]}".to_vec();
    }
    let mut out = b"],\"idempotency\":[".to_vec();
    for (i, KeySpan(at, key, first, count)) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        out.extend_from_slice(at.to_string().as_bytes());
        out.push(b',');
        push_json_string(&mut out, key);
        out.push(b',');
        out.extend_from_slice(first.to_string().as_bytes());
        out.push(b',');
        out.extend_from_slice(count.to_string().as_bytes());
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    out
}

/// The spans of an envelope's events, given each event's identity (its
/// request's identity key and its index there, or `None` when unkeyed):
/// runs of consecutive events of one request.
pub fn key_spans_of<'a>(
    identities: impl IntoIterator<Item = Option<(&'a str, u64)>>,
) -> Vec<KeySpan> {
    let mut spans: Vec<(usize, &str, u64, usize)> = Vec::new();
    for (at, identity) in identities.into_iter().enumerate() {
        let Some((key, index)) = identity else {
            continue;
        };
        match spans.last_mut() {
            Some((a, k, first, count))
                if *k == key && *a + *count == at && *first + *count as u64 == index =>
            {
                *count += 1;
            }
            _ => spans.push((at, key, index, 1)),
        }
    }
    spans
        .into_iter()
        .map(|(at, key, first, count)| KeySpan(at, key.to_owned(), first, count))
        .collect()
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    let mut unicode = *b"\\u00__";
    for (i, b) in text.bytes().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                unicode[4] = HEX[usize::from(b >> 4)];
                unicode[5] = HEX[usize::from(b & 15)];
                &unicode
            }
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text.as_bytes()[start..]);
    out.push(b'"');
}

/// `base64(gzip(bytes))`.
pub fn encode_body(json: &[u8]) -> String {
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4 + 64), Compression::fast());
    // Into memory: only running out of it could fail, and that aborts.
    let compressed = gz
        .write_all(json)
        .and_then(|()| gz.finish())
        .unwrap_or_else(|e| unreachable!("gzip into a Vec failed: {e}"));
    STANDARD.encode(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_as_serde_would_write_it() {
        let mut env = Envelope::new(vec![
            json!({"user_id": "u", "ip": "1.2.3.4"}),
            json!({"a": [1, 2.5, null], "b": "q\"\\\n\u{1}\u{7f}é"}),
        ]);
        let spans = key_spans_of([None, Some(("k\"\u{0}é", 3))]);
        for idempotency in [Vec::new(), spans] {
            env.idempotency = idempotency;
            env.id = "id \"with\" \\ odd\ttext\u{1f}".to_owned();
            let mut json = head_of(env.v, &env.id, &env.received_at);
            json.extend_from_slice(env.events[0].to_string().as_bytes());
            json.push(EVENT_SEPARATOR);
            json.extend_from_slice(env.events[1].to_string().as_bytes());
            json.extend_from_slice(&closing(&env.idempotency));
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(&env).unwrap()
            );
        }
    }

    #[test]
    fn spans_are_runs_of_one_request() {
        let spans = key_spans_of([
            Some(("a", 0)),
            Some(("a", 1)),
            None,
            Some(("a", 2)),
            Some(("b", 0)),
            Some(("b", 2)),
        ]);
        assert_eq!(
            spans,
            [
                KeySpan(0, "a".into(), 0, 2),
                KeySpan(3, "a".into(), 2, 1),
                KeySpan(4, "b".into(), 0, 1),
                KeySpan(5, "b".into(), 2, 1),
            ]
        );
    }
}
