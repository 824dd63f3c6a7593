//! Arbitrary queue bodies, each with the number of records it holds, for
//! the property that every record either lands or is rejected.
//!
//! Built from a description rather than parsed back, so the count is known
//! by construction: garbage text (one rejected row), a JSON array, a single
//! object, or an envelope — with its `events` key given up to three times,
//! a repeated, odd or missing `id`, a missing, good or unknown `v` — plain
//! or base64+gzip. Records are logins, TUNE events and adjustments, objects
//! of unknown shape, scalars and nested envelopes. No value looks like an
//! address outside a PII field, so nothing here may be stored in plaintext.

use proptest::prelude::*;
use serde_json::{Value, json};

/// A queue body and how many records it holds.
#[derive(Debug, Clone)]
pub struct Body {
    pub text: String,
    pub records: usize,
}

/// Makes every `event_id` in the body's records unique (TUNE events and
/// adjustments are deduplicated on it across messages), and every envelope
/// `id` too, with `n` as the body's number.
fn unique(mut record: Value, n: usize, i: usize) -> Value {
    if let Some(id) = record.get_mut("event_id") {
        *id = json!(format!("p{n}-{i}"));
    }
    record
}

fn ip() -> impl Strategy<Value = String> {
    (0u8..=255).prop_map(|d| format!("198.51.100.{d}"))
}

fn word() -> impl Strategy<Value = String> {
    "[a-z]{0,12}"
}

/// One record (or what stands where a record should).
fn record() -> impl Strategy<Value = Value> {
    let login = (word(), ip(), proptest::option::of(word()), any::<bool>()).prop_map(
        |(user, ip, device, nul)| {
            let user = if nul {
                format!("{user}\u{0}")
            } else {
                format!("u-{user}")
            };
            json!({"user_id": user, "ip": ip, "device_id": device})
        },
    );
    let event = (word(), any::<u32>(), ip()).prop_map(|(action, offer, ip)| {
        json!({"event_id": "", "action": format!("a{action}"), "offer_id": offer, "ip": ip})
    });
    let adjustment = (1u8..4, any::<u16>()).prop_map(|(action, seq)| {
        json!({"event_id": "", "adjust_action": action, "adjustment_sequence_id": seq})
    });
    let unknown = (word(), word(), ip())
        .prop_map(|(k, v, ip)| json!({format!("k{k}"): v, "ip": ip, "events": {"x": 1}}));
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    let nested =
        (ip(), word()).prop_map(|(ip, u)| json!({"v": 1, "events": [{"user_id": u, "ip": ip}]}));
    prop_oneof![4 => login, 2 => event, 1 => adjustment, 1 => unknown, 1 => scalar, 1 => nested]
}

/// A record that is an object and no envelope: what a single-object body holds.
fn single_record() -> impl Strategy<Value = Value> {
    record().prop_filter("an object without an events array", |r| {
        r.is_object() && !r["events"].is_array()
    })
}

#[derive(Debug, Clone)]
enum Id {
    None,
    Good,
    Repeated,
    Nul,
    Long,
    NotText,
}

#[derive(Debug, Clone)]
enum Version {
    None,
    One,
    Unknown(Value),
    Repeated,
}

fn envelope(records: &[Value], keys: usize, id: &Id, v: &Version, n: usize) -> String {
    let mut fields: Vec<String> = Vec::new();
    match v {
        Version::None => {}
        Version::One => fields.push("\"v\":1".into()),
        Version::Unknown(v) => fields.push(format!("\"v\":{v}")),
        Version::Repeated => fields.extend(["\"v\":1".to_owned(), "\"v\":1".to_owned()]),
    }
    match id {
        Id::None => {}
        Id::Good => fields.push(format!("\"id\":\"body-{n}\"")),
        Id::Repeated => fields.extend([
            format!("\"id\":\"body-{n}\""),
            format!("\"id\":\"again-{n}\""),
        ]),
        Id::Nul => fields.push(format!("\"id\":\"body\\u0000{n}\"")),
        Id::Long => fields.push(format!("\"id\":\"{n}-{}\"", "k".repeat(300))),
        Id::NotText => fields.push(format!("\"id\":{n}")),
    }
    fields.push("\"received_at\":\"2026-11-26T00:00:00Z\"".into());
    // The records shared out over `keys` events keys, in order.
    let per = records.len().div_ceil(keys).max(1);
    let mut chunks: Vec<&[Value]> = records.chunks(per).collect();
    chunks.resize(keys, &[]);
    for chunk in chunks {
        fields.push(format!("\"events\":{}", Value::Array(chunk.to_vec())));
    }
    format!("{{{}}}", fields.join(","))
}

/// Any body, with its record count; `n` makes ids unique across bodies.
pub fn body(n: usize) -> impl Strategy<Value = Body> {
    let garbage = "[ -~\n\t]{1,120}"
        .prop_filter("not JSON", |t: &String| {
            serde_json::from_str::<Value>(t.trim()).is_err()
        })
        .prop_map(|text| Body { text, records: 1 });
    let id = prop_oneof![
        3 => Just(Id::None),
        3 => Just(Id::Good),
        1 => Just(Id::Repeated),
        1 => Just(Id::Nul),
        1 => Just(Id::Long),
        1 => Just(Id::NotText),
    ];
    let version = prop_oneof![
        2 => Just(Version::None),
        4 => Just(Version::One),
        1 => prop_oneof![Just(json!(2)), Just(json!("x")), Just(json!(1.5)), Just(Value::Null)]
            .prop_map(Version::Unknown),
        1 => Just(Version::Repeated),
    ];
    let records = move || {
        proptest::collection::vec(record(), 0..8).prop_map(move |rs| {
            rs.into_iter()
                .enumerate()
                .map(|(i, r)| unique(r, n, i))
                .collect::<Vec<_>>()
        })
    };
    let structured = prop_oneof![
        records().prop_map(|rs| {
            let count = rs.len().max(1);
            (Value::Array(rs).to_string(), count)
        }),
        single_record().prop_map(move |r| (unique(r, n, 0).to_string(), 1)),
        (records(), 1usize..4, id, version).prop_map(move |(rs, keys, id, v)| {
            (envelope(&rs, keys, &id, &v, n), rs.len().max(1))
        }),
    ];
    let structured = (structured, any::<bool>()).prop_map(|((json, records), compress)| Body {
        text: if compress {
            sluice_core::wire::encode_body(json.as_bytes())
        } else {
            json
        },
        records,
    });
    prop_oneof![1 => garbage, 5 => structured]
}
