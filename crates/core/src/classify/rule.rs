//! Classification's rules, apart so that whoever reads records without a
//! `serde_json::Value` (the login fast path) asks the very same ones: which
//! kind a record is, and how large it counts against the record bound.

use serde_json::{Map, Value};

/// The kinds of record, first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    TuneAdjustment,
    TuneEvent,
    UserLogin,
    Unrecognized,
}

impl RecordKind {
    pub fn of(record: &Map<String, Value>) -> Self {
        Self::by_fields(|k| record.get(k).is_some_and(|v| !v.is_null()))
    }

    /// The rule, given which fields are present and not null.
    pub fn by_fields(has: impl Fn(&str) -> bool) -> Self {
        if has("adjust_action") {
            RecordKind::TuneAdjustment
        } else if has("event_id") && has("action") {
            RecordKind::TuneEvent
        } else if has("user_id") && (has("ip") || has("device_id")) {
            RecordKind::UserLogin
        } else {
            RecordKind::Unrecognized
        }
    }
}

/// The measure of the record size bound, piece by piece, for whoever reads
/// records without a `serde_json::Value` (the login fast path).
pub mod approx {
    /// A number, a boolean or null.
    pub const SCALAR: usize = 8;

    /// A string of `len` bytes.
    pub const fn string(len: usize) -> usize {
        len + 2
    }

    /// A field of an object: its name, and its value's size.
    pub fn field(name: &str, value: usize) -> usize {
        name.len() + 4 + value
    }

    /// An object of fields of these sizes.
    pub fn object(fields: impl Iterator<Item = usize>) -> usize {
        fields.sum::<usize>() + 2
    }

    /// An array of items of these sizes.
    pub fn array(items: impl Iterator<Item = usize>) -> usize {
        items.sum::<usize>() + 2
    }

    /// Whether a record of `size` is within the bound (else it is rejected).
    pub const fn within(size: usize, max_record_bytes: usize) -> bool {
        size <= max_record_bytes
    }
}
