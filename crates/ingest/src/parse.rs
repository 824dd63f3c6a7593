//! Request bodies to events: one JSON object, an array of objects, NDJSON, or
//! an envelope object with an `events` array.
//!
//! Events travel on as the client wrote them: each is kept as its own JSON
//! text (numbers, key order and escapes unchanged), back to back in
//! [`Events`]. Arrays (also an envelope's `events`) are streamed, so a large
//! body never becomes one large tree. Each event is also checked the way the
//! writer will read it — strings unescaped (a lone UTF-16 surrogate is an
//! error there), numbers in range, nesting within the limit — because one
//! event the writer cannot read would spoil the whole envelope it shares
//! with a thousand others.
//!
//! Errors name a position (line and column, element or line number) and never
//! quote the body: events carry personal data.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::events::Events;

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document: an object, an array of objects or an envelope.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Events nested deeper than this are refused: the writer reads them inside
/// an envelope (two more levels) with `serde_json`'s limit of 128.
pub const MAX_EVENT_DEPTH: usize = 100;

/// Where in the body something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The body as a whole.
    Body,
    /// Element `index` (from 0) of the top-level array, or of an envelope's
    /// `events` array.
    Element { index: usize, in_envelope: bool },
    /// Line `number` (from 1) of an NDJSON body.
    Line(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Body => f.write_str("the body"),
            Place::Element {
                index,
                in_envelope: false,
            } => write!(f, "element {index} of the array (counting from 0)"),
            Place::Element {
                index,
                in_envelope: true,
            } => write!(f, "element {index} of the events array (counting from 0)"),
            Place::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// Why a body holds no acceptable events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `reason` is `serde_json`'s fixed description of a syntax error.
    #[error("invalid JSON at line {line} column {column}: {reason}")]
    InvalidJson {
        reason: String,
        line: usize,
        column: usize,
    },
    #[error("{place} is not a JSON object")]
    NotAnObject { place: Place },
    #[error("{place} is nested more than {MAX_EVENT_DEPTH} levels deep")]
    TooDeep { place: Place },
    #[error("the object has the key \"events\" more than once")]
    DuplicateEvents,
    #[error("the body holds no events")]
    Empty,
}

/// Parses a decompressed body into events.
pub fn parse(body: &[u8], format: Format) -> Result<Events, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let events = match format {
        Format::Json => parse_json(body)?,
        Format::Ndjson => parse_ndjson(body)?,
    };
    if events.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(events)
}

fn parse_json(body: &[u8]) -> Result<Events, ParseError> {
    let mut events = Events::with_capacity(body.len());
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ParseError::Empty),
        Some(b'[') => de.deserialize_seq(Stream {
            body,
            events: &mut events,
            failure: &mut failure,
            in_envelope: false,
        }),
        Some(b'{') => de
            .deserialize_map(TopObject {
                body,
                events: &mut events,
                failure: &mut failure,
            })
            .map(|_| ()),
        Some(_) => Check.deserialize(&mut de).map(|_| {
            failure = Some(ParseError::NotAnObject { place: Place::Body });
        }),
    };
    let result = result.and_then(|()| de.end());
    match (result, failure) {
        (_, Some(failure)) => Err(failure),
        (Err(e), None) => Err(json_error(&e, 0)),
        (Ok(()), None) => Ok(events),
    }
}

fn parse_ndjson(body: &[u8]) -> Result<Events, ParseError> {
    let mut events = Events::with_capacity(body.len());
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let depth = check(line).map_err(|e| match json_error(&e, i) {
            ParseError::TooDeep { .. } => ParseError::TooDeep {
                place: Place::Line(i + 1),
            },
            other => other,
        })?;
        push(&mut events, text, depth, Place::Line(i + 1))?;
    }
    Ok(events)
}

/// Checks one JSON text as the writer reads it; returns its nesting depth.
fn check(text: &[u8]) -> Result<usize, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let depth = Check.deserialize(&mut de)?;
    de.end()?;
    Ok(depth)
}

/// A `serde_json` error as a [`ParseError`], `lines_before` lines into the body.
///
/// Syntax and end-of-input errors have fixed texts; anything else could quote
/// the input, so it gets a generic one.
fn json_error(e: &serde_json::Error, lines_before: usize) -> ParseError {
    json_error_at(e, lines_before, 0)
}

/// As [`json_error`], for text that starts `column_before` columns into its
/// first line.
fn json_error_at(e: &serde_json::Error, lines_before: usize, column_before: usize) -> ParseError {
    // serde_json stops at 128 levels: far over the limit, so it is the same
    // refusal as 101 levels, not a syntax error.
    if e.to_string().starts_with("recursion limit exceeded") {
        let place = if lines_before > 0 {
            Place::Line(lines_before + 1)
        } else {
            Place::Body
        };
        return ParseError::TooDeep { place };
    }
    let reason = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            let text = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            if reason == "trailing characters" {
                "trailing characters (for one object per line send Content-Type: application/x-ndjson)"
                    .to_owned()
            } else {
                reason
            }
        }
        _ => "not valid JSON".to_owned(),
    };
    let column = if e.line() == 1 {
        e.column() + column_before
    } else {
        e.column()
    };
    ParseError::InvalidJson {
        reason,
        line: e.line() + lines_before,
        column,
    }
}

/// The error for `raw`, a part of `body`, that did not pass [`check`]:
/// positioned in the body.
fn error_in(body: &[u8], raw: &RawValue, e: &serde_json::Error) -> ParseError {
    let offset = (raw.get().as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let Some(before) = body.get(..offset) else {
        return json_error(e, 0);
    };
    let lines = before.iter().filter(|b| **b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    json_error_at(e, lines, offset - line_start)
}

/// Appends one checked event's text.
fn push(events: &mut Events, text: &[u8], depth: usize, place: Place) -> Result<(), ParseError> {
    if !text.starts_with(b"{") {
        return Err(ParseError::NotAnObject { place });
    }
    if depth > MAX_EVENT_DEPTH {
        return Err(ParseError::TooDeep { place });
    }
    events.push(text);
    Ok(())
}

/// Marker error: the real one is in `failure`.
fn rejected<E: de::Error>(failure: &mut Option<ParseError>, error: ParseError) -> E {
    *failure = Some(error);
    E::custom("rejected")
}

/// Streams the elements of an array into `events`, each kept as its text.
struct Stream<'a, 'de> {
    body: &'de [u8],
    events: &'a mut Events,
    failure: &'a mut Option<ParseError>,
    in_envelope: bool,
}

impl<'de> Visitor<'de> for Stream<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let place = Place::Element {
                index,
                in_envelope: self.in_envelope,
            };
            let depth = check(raw.get().as_bytes())
                .map_err(|e| rejected(self.failure, error_in(self.body, raw, &e)))?;
            push(self.events, raw.get().as_bytes(), depth, place)
                .map_err(|e| rejected(self.failure, e))?;
            index += 1;
        }
        Ok(())
    }
}

/// A top-level object: an envelope when its `events` is an array (streamed),
/// otherwise one event, the body itself.
struct TopObject<'a, 'de> {
    body: &'de [u8],
    events: &'a mut Events,
    failure: &'a mut Option<ParseError>,
}

impl<'de> Visitor<'de> for TopObject<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut envelope = false;
        let mut seen_events = false;
        let mut depth = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "events" {
                depth = depth.max(map.next_value_seed(Check)?);
                continue;
            }
            if seen_events {
                return Err(rejected(self.failure, ParseError::DuplicateEvents));
            }
            seen_events = true;
            let field = EventsField {
                stream: Stream {
                    body: self.body,
                    events: self.events,
                    failure: self.failure,
                    in_envelope: true,
                },
            };
            match map.next_value_seed(field)? {
                None => envelope = true,
                Some(d) => depth = depth.max(d),
            }
        }
        if !envelope {
            let text = self.body.trim_ascii();
            push(self.events, text, depth + 1, Place::Body)
                .map_err(|e| rejected(self.failure, e))?;
        }
        Ok(())
    }
}

/// The value of a top-level `events` key: an array is streamed as the
/// envelope's events (`None`); anything else is checked as a field
/// (`Some(depth)`).
struct EventsField<'a, 'de> {
    stream: Stream<'a, 'de>,
}

impl<'de> DeserializeSeed<'de> for EventsField<'_, 'de> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventsField<'_, 'de> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.stream.visit_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Check.visit_map(map).map(Some)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(0))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(0))
    }
}

/// Reads any JSON value the way `serde_json::Value` does (strings unescaped,
/// numbers parsed) without building it; the value is its nesting depth.
#[derive(Clone, Copy)]
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut depth = 0;
        while let Some(d) = seq.next_element_seed(Check)? {
            depth = depth.max(d);
        }
        Ok(depth + 1)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut depth = 0;
        while map.next_key_seed(Check)?.is_some() {
            depth = depth.max(map.next_value_seed(Check)?);
        }
        Ok(depth + 1)
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
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

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Short decimals: serde_json's default float parsing is exact for these.
            (-1_000_000_000i64..1_000_000_000).prop_map(|n| Value::from(n as f64 / 100.0)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
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
}
