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
mod tests;
