//! Properties of the queue wire format: `decode_body` never panics, whatever
//! the bytes, and what `Envelope::encode` writes decodes to the same events;
//! plus hand-picked nasty inputs.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sluice_core::wire::{DecodedBody, Envelope, InvalidPayload, Item, decode_body, encode_body};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn records(body: &DecodedBody) -> Vec<Value> {
    body.items
        .iter()
        .map(|i| match i {
            Item::Record(r) => Value::Object(r.clone()),
            Item::Invalid { reason, .. } => panic!("invalid item: {reason}"),
        })
        .collect()
}

/// Any JSON value whose text round-trips exactly, strings of any text.
fn arb_json() -> impl Strategy<Value = Value> {
    sluice_testkit::json::arb_json("\\PC*")
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,12}", arb_json(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #[test]
    fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..600)) {
        let decoded = decode_body(&body);
        prop_assert!(!decoded.items.is_empty());
    }

    #[test]
    fn never_panics_on_base64_of_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(!decode_body(STANDARD.encode(&bytes).as_bytes()).items.is_empty());
        let gz = STANDARD.encode(gzip(&bytes));
        prop_assert!(!decode_body(gz.as_bytes()).items.is_empty());
    }

    #[test]
    fn never_panics_on_json_like_text(body in r#"[\[\]{}",:0-9a-z\\ \nevents]{0,200}"#) {
        prop_assert!(!decode_body(body.as_bytes()).items.is_empty());
        prop_assert!(!decode_body(encode_body(body.as_bytes()).as_bytes()).items.is_empty());
    }

    #[test]
    fn an_encoded_envelope_decodes_to_its_events(events in prop::collection::vec(arb_object(), 1..20)) {
        let values: Vec<Value> = events.iter().cloned().map(Value::Object).collect();
        let envelope = Envelope::new(values.clone());
        let decoded = decode_body(envelope.encode().as_bytes());
        prop_assert_eq!(decoded.envelope_id.as_deref(), Some(envelope.id.as_str()));
        prop_assert_eq!(records(&decoded), values);
    }

    #[test]
    fn plain_json_bodies_decode_to_their_records(events in prop::collection::vec(arb_object(), 1..10)) {
        let values: Vec<Value> = events.iter().cloned().map(Value::Object).collect();
        // An object with an `events` array is an envelope: not a plain record.
        prop_assume!(!values.iter().any(|v| v["events"].is_array()));
        let array = Value::Array(values.clone()).to_string();
        let decoded = decode_body(array.as_bytes());
        prop_assert_eq!(decoded.envelope_id.as_deref(), None);
        prop_assert_eq!(records(&decoded), values.clone());
        let one = values[0].to_string();
        prop_assert_eq!(records(&decode_body(one.as_bytes())), vec![values[0].clone()]);
    }

    /// Non-objects in an array are kept as invalid items, each with its index.
    #[test]
    fn non_objects_are_kept_with_their_index(items in prop::collection::vec(arb_json(), 1..10)) {
        let decoded = decode_body(Value::Array(items.clone()).to_string().as_bytes());
        prop_assert_eq!(decoded.items.len(), items.len());
        for (i, (item, value)) in decoded.items.iter().zip(&items).enumerate() {
            match item {
                Item::Record(r) => prop_assert_eq!(&Value::Object(r.clone()), value),
                Item::Invalid { reason, payload } => {
                    prop_assert_eq!(reason, &format!("element {i} is not a JSON object"));
                    prop_assert_eq!(payload, &InvalidPayload::Json(value.clone()));
                }
            }
        }
    }
}

#[test]
fn nasty_inputs() {
    // Each becomes one invalid item with a reason (and is kept), never a panic.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Empty text is valid (empty) base64.
        (b"".to_vec(), "base64 body is not gzip"),
        (b"   \n\t ".to_vec(), "base64 body is not gzip"),
        (b"{".to_vec(), "invalid JSON at line 1 column 1"),
        (b"[{}".to_vec(), "invalid JSON at line 1 column 3"),
        (
            b"null".to_vec(),
            "JSON scalar where an object or array was expected",
        ),
        (
            b"\"text\"".to_vec(),
            "JSON scalar where an object or array was expected",
        ),
        // A byte-order mark is not stripped.
        (
            b"\xEF\xBB\xBF{\"a\": 1}".to_vec(),
            "body is neither JSON nor base64",
        ),
        (
            br#"{"a": "\ud800"}"#.to_vec(),
            "invalid JSON at line 1 column 14",
        ),
        (
            br#"{"n": 1e999}"#.to_vec(),
            "invalid JSON at line 1 column 11",
        ),
        (
            encode_body(b"null").into_bytes(),
            "JSON scalar where an object or array was expected",
        ),
        (
            encode_body(b"").into_bytes(),
            "invalid JSON at line 1 column 0",
        ),
        (
            STANDARD.encode([0x1f, 0x8b]).into_bytes(),
            "broken gzip stream",
        ),
        (b"====".to_vec(), "body is neither JSON nor base64"),
    ];
    for (body, reason) in cases {
        let decoded = decode_body(&body);
        assert_eq!(
            decoded.reasons(),
            vec![reason],
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let decoded = decode_body(deep.as_bytes());
    assert!(decoded.reasons()[0].starts_with("invalid JSON"));
    let decoded = decode_body(encode_body(deep.as_bytes()).as_bytes());
    assert!(decoded.reasons()[0].starts_with("invalid JSON"));
}

#[test]
fn a_gzip_bomb_is_refused() {
    let bomb = encode_body(&vec![b' '; 65 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let decoded = decode_body(bomb.as_bytes());
    assert_eq!(
        decoded.reasons(),
        vec!["decompressed body is larger than 67108864 bytes"]
    );
}

#[test]
fn base64_with_line_breaks_and_concatenated_members() {
    let body = encode_body(br#"{"events": [{"a": 1}]}"#);
    let wrapped: String = body
        .as_bytes()
        .chunks(20)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    assert_eq!(
        records(&decode_body(wrapped.as_bytes())),
        vec![json!({"a": 1})]
    );
    // An envelope whose `events` is not an array is one record.
    let odd = decode_body(br#"{"events": {"a": 1}}"#);
    assert_eq!(records(&odd), vec![json!({"events": {"a": 1}})]);
}
