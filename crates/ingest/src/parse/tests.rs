use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn values(events: &Events) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect()
}

fn json(body: &str) -> Result<Vec<Value>, ParseError> {
    parse(body.as_bytes(), Format::Json).map(|e| values(&e))
}

fn ndjson(body: &str) -> Result<Vec<Value>, ParseError> {
    parse(body.as_bytes(), Format::Ndjson).map(|e| values(&e))
}

#[test]
fn every_body_form() {
    assert_eq!(json(r#" {"a": 1} "#).unwrap(), vec![json!({"a": 1})]);
    assert_eq!(
        json(r#"[{"a": 1}, {"b": [1, 2]}]"#).unwrap(),
        vec![json!({"a": 1}), json!({"b": [1, 2]})]
    );
    assert_eq!(
        json(r#"{"v": 1, "id": "x", "events": [{"a": 1}, {"a": 2}]}"#).unwrap(),
        vec![json!({"a": 1}), json!({"a": 2})]
    );
    // `events` after other keys, and TUNE's own envelope metadata.
    assert_eq!(
        json(r#"{"count": 1, "events": [{"event_id": "e"}], "z": {"q": 1}}"#).unwrap(),
        vec![json!({"event_id": "e"})]
    );
    assert_eq!(
        ndjson("{\"a\":1}\r\n\n  \n{\"b\":2}").unwrap(),
        vec![json!({"a": 1}), json!({"b": 2})]
    );
    // A BOM is tolerated.
    assert_eq!(json("\u{feff}{\"a\":1}").unwrap(), vec![json!({"a": 1})]);
}

#[test]
fn an_object_whose_events_is_not_an_array_is_one_event() {
    for body in [
        r#"{"events": "click", "a": 1}"#,
        r#"{"events": {"n": [1]}, "a": 1}"#,
        r#"{"events": null}"#,
        r#"{"events": 3.5}"#,
        r#"{"events": -3}"#,
        r#"{"events": true}"#,
    ] {
        let expected: Value = serde_json::from_str(body).unwrap();
        assert_eq!(json(body).unwrap(), vec![expected], "{body}");
    }
}

#[test]
fn events_travel_as_written() {
    let events = parse(
        b"[ {\n \"a\" : [ 1.50 , 2 ] }, {\"n\": 254397982890.91202} ]",
        Format::Json,
    )
    .unwrap();
    assert_eq!(events.get(0), b"{\n \"a\" : [ 1.50 , 2 ] }");
    assert_eq!(events.get(1), br#"{"n": 254397982890.91202}"#);
    let one = parse(b"  {\"b\": \"\\u00e9\"}\n", Format::Json).unwrap();
    assert_eq!(one.get(0), br#"{"b": "\u00e9"}"#);
    let lines = parse(b"{\"c\": 1}\r\n", Format::Ndjson).unwrap();
    assert_eq!(lines.get(0), br#"{"c": 1}"#);
}

#[test]
fn errors_have_positions_and_no_content() {
    let secret = "203.0.113.77";
    let cases: Vec<(String, Format, ParseError)> = vec![
        (
            format!("[{{\"ip\": \"{secret}\"}},\n  {{\"ip\": {secret}}}]"),
            Format::Json,
            ParseError::InvalidJson {
                reason: "expected `,` or `}`".into(),
                line: 2,
                column: 15,
            },
        ),
        (
            format!("{{\"ip\": \"{secret}\"}}\n[\"{secret}\"]"),
            Format::Ndjson,
            ParseError::NotAnObject {
                place: Place::Line(2),
            },
        ),
        (
            format!("{{\"ok\": 1}}\n\n{{\"ip\": \"{secret}\""),
            Format::Ndjson,
            ParseError::InvalidJson {
                reason: "EOF while parsing an object".into(),
                line: 3,
                column: 21,
            },
        ),
        (
            format!("[{{}}, \"{secret}\"]"),
            Format::Json,
            ParseError::NotAnObject {
                place: Place::Element {
                    index: 1,
                    in_envelope: false,
                },
            },
        ),
        (
            format!("{{\"events\": [{{}}, {{}}, \"{secret}\"]}}"),
            Format::Json,
            ParseError::NotAnObject {
                place: Place::Element {
                    index: 2,
                    in_envelope: true,
                },
            },
        ),
        (
            format!("\"{secret}\""),
            Format::Json,
            ParseError::NotAnObject { place: Place::Body },
        ),
        (
            format!("{{\"ip\": \"{secret}\"}}\n{{\"ip\": \"{secret}\"}}"),
            Format::Json,
            ParseError::InvalidJson {
                reason: "trailing characters (for one object per line send Content-Type: application/x-ndjson)".into(),
                line: 2,
                column: 1,
            },
        ),
        (
            format!("{{\"events\": [], \"ip\": \"{secret}\"}}"),
            Format::Json,
            ParseError::Empty,
        ),
        (
            r#"{"events": [{}], "events": [{}]}"#.into(),
            Format::Json,
            ParseError::DuplicateEvents,
        ),
    ];
    for (body, format, expected) in cases {
        let err = parse(body.as_bytes(), format).unwrap_err();
        assert_eq!(err, expected, "{body}");
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!err.to_string().contains("203.0"), "{err}");
    }
}

#[test]
fn empty_bodies() {
    for body in ["", "   \n", "[]", " [ ] ", r#"{"events": []}"#] {
        assert_eq!(json(body), Err(ParseError::Empty), "{body:?}");
    }
    assert_eq!(ndjson("\n\n  \r\n"), Err(ParseError::Empty));
    assert_eq!(ndjson(""), Err(ParseError::Empty));
}

/// Inputs the writer's parser refuses must be refused here too, or one
/// of them would spoil a whole envelope.
#[test]
fn what_the_writer_cannot_read_is_refused() {
    for body in [
        r#"{"a": "\ud800"}"#,
        r#"[{"a": "\udc00x"}]"#,
        r#"{"n": 1e999}"#,
        "{\"a\": \"tab\there\"}",
        "{\"a\": \"\\x\"}",
        "[{\"a\": 1},]",
        "\u{fffe}",
    ] {
        assert!(
            matches!(json(body), Err(ParseError::InvalidJson { .. })),
            "{body:?}: {:?}",
            json(body)
        );
    }
    assert!(matches!(
        parse(b"{\"a\": \"\xff\"}", Format::Json),
        Err(ParseError::InvalidJson { .. })
    ));
}

fn nested(depth: usize) -> String {
    format!(
        "{}1{}",
        "{\"a\":[".repeat(depth / 2),
        "]}".repeat(depth / 2)
    )
}

#[test]
fn depth_limit_keeps_envelopes_readable() {
    let ok = nested(MAX_EVENT_DEPTH);
    assert_eq!(json(&ok).unwrap().len(), 1);
    let deep = nested(MAX_EVENT_DEPTH + 2);
    assert_eq!(json(&deep), Err(ParseError::TooDeep { place: Place::Body }));
    assert_eq!(
        ndjson(&format!("{ok}\n{deep}")),
        Err(ParseError::TooDeep {
            place: Place::Line(2)
        })
    );
    // The deepest accepted event still decodes inside an envelope.
    let envelope = sluice_core::wire::Envelope::new(json(&ok).unwrap());
    let decoded = sluice_core::wire::decode_body(envelope.encode().as_bytes());
    assert!(matches!(
        decoded.items[..],
        [sluice_core::wire::Item::Record(_)]
    ));
    // Deeper than serde_json allows at all: too deep all the same.
    let very = format!("[{}]", nested(300));
    assert_eq!(json(&very), Err(ParseError::TooDeep { place: Place::Body }));
    assert_eq!(
        ndjson(&format!("{ok}\n{}", nested(300))),
        Err(ParseError::TooDeep {
            place: Place::Line(2)
        })
    );
}

/// Any JSON value whose text round-trips exactly, strings short.
fn arb_json() -> impl Strategy<Value = Value> {
    sluice_testkit::json::arb_json(".{0,12}")
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,10}", arb_json(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        // `{"events": [...]}` alone is an envelope, not an event.
        .prop_filter("not an envelope", |v| !v["events"].is_array())
}

proptest! {
    #[test]
    fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body, Format::Json);
        let _ = parse(&body, Format::Ndjson);
    }

    #[test]
    fn never_panics_on_json_like_text(body in r#"[\[\]{}",:0-9a-z\\ \n.eE+-]{0,200}"#) {
        let _ = parse(body.as_bytes(), Format::Json);
        let _ = parse(body.as_bytes(), Format::Ndjson);
    }

    #[test]
    fn every_form_round_trips(events in prop::collection::vec(arb_object(), 1..12), pretty in any::<bool>()) {
        let array = Value::Array(events.clone());
        let text = if pretty {
            serde_json::to_string_pretty(&array).unwrap()
        } else {
            array.to_string()
        };
        prop_assert_eq!(json(&text).unwrap(), events.clone());
        if !pretty {
            let parsed = parse(text.as_bytes(), Format::Json).unwrap();
            for (got, want) in parsed.iter().zip(&events) {
                let want = want.to_string();
                prop_assert_eq!(got, want.as_bytes());
            }
        }
        let envelope = json!({"v": 1, "id": "x", "events": events.clone()}).to_string();
        prop_assert_eq!(json(&envelope).unwrap(), events.clone());
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        prop_assert_eq!(ndjson(&lines.join("\n")).unwrap(), events.clone());
        let first = events[0].to_string();
        prop_assert_eq!(json(&first).unwrap(), vec![events[0].clone()]);
    }

    #[test]
    fn accepted_events_decode_like_the_writer(body in r#"\[\{"a":"(\\u[dD][89a-fA-F][0-9a-f]{2}|[a-z]|\\n){0,4}"\}\]"#) {
        if let Ok(events) = parse(body.as_bytes(), Format::Json) {
            for e in events.iter() {
                prop_assert!(serde_json::from_slice::<Value>(e).is_ok());
            }
        }
    }
}
