//! Reading one field of a record for a typed column: text, integers,
//! decimal amounts, masked values, the `extra` object of everything else,
//! and the NUL check every row needs.
//!
//! Shared by every kind of record ([`crate::login`], [`crate::tune`]) so
//! that a field means the same whichever table it lands in. Errors name the
//! field, never its value: they are stored and logged.

use serde_json::{Map, Value};

use crate::masking::Masker;
use crate::records::Decimal;

/// A scalar field as text; `None` when absent or null. An empty string
/// stays `Some("")` (see [`text`] for the reading that makes it `None`).
pub fn scalar(record: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match record.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(format!("{name} is not a scalar")),
    }
}

/// A scalar field as text; `None` when absent, null or empty.
pub fn text(record: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    Ok(scalar(record, name)?.filter(|s| !s.is_empty()))
}

/// Null or the empty string: a value that says nothing.
pub fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// An integer: a JSON integer, a float with no fraction, or a string of
/// digits. `Ok(None)` for null or an empty string.
pub fn integer(value: &Value) -> Result<Option<i64>, IntegerError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.is_u64() {
                Err(IntegerError::OutOfRange)
            } else {
                let f = n.as_f64().ok_or(IntegerError::NotAnInteger)?;
                if f.fract() != 0.0 || !f.is_finite() {
                    Err(IntegerError::NotAnInteger)
                } else if f.abs() > 9_007_199_254_740_992.0 {
                    // Past 2^53 the float no longer says which integer it was.
                    Err(IntegerError::OutOfRange)
                } else {
                    Ok(Some(f as i64))
                }
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IntegerError::NotAnInteger);
            }
            s.parse().map(Some).map_err(|_| IntegerError::OutOfRange)
        }
        _ => Err(IntegerError::NotAnInteger),
    }
}

/// Why a value is not an integer column's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegerError {
    NotAnInteger,
    OutOfRange,
}

/// A value that is not a decimal amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotANumber;

/// A decimal amount: a JSON number or a numeric string. `Ok(None)` for null
/// or an empty string.
pub fn decimal(value: &Value) -> Result<Option<Decimal>, NotANumber> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => Decimal::parse(&n.to_string()).map(Some).ok_or(NotANumber),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Decimal::parse(s).map(Some).ok_or(NotANumber),
        _ => Err(NotANumber),
    }
}

/// An integer field; `Ok(None)` when absent, null or empty.
pub fn integer_field(record: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match record.get(name) {
        None => Ok(None),
        Some(v) => integer(v).map_err(|e| match e {
            IntegerError::NotAnInteger => format!("{name} is not an integer"),
            IntegerError::OutOfRange => format!("{name} is out of range for a 64-bit integer"),
        }),
    }
}

/// A decimal field; `Ok(None)` when absent, null or empty.
pub fn decimal_field(record: &Map<String, Value>, name: &str) -> Result<Option<Decimal>, String> {
    match record.get(name) {
        None => Ok(None),
        Some(v) => decimal(v).map_err(|NotANumber| format!("{name} is not a number")),
    }
}

/// A field masked by the policy for its column; `None` when absent, empty
/// or dropped by the policy.
pub fn masked_field(masker: &Masker, record: &Map<String, Value>, name: &str) -> Option<String> {
    record.get(name).and_then(|v| masked(masker, name, v))
}

/// A value masked by the policy for field `name`; `None` when blank or
/// dropped by the policy.
pub fn masked(masker: &Masker, name: &str, value: &Value) -> Option<String> {
    if is_blank(value) {
        return None;
    }
    masked_text(masker, name, value)
}

/// A value masked by the policy for field `name`, as the text a column
/// holds (blank values are masked too); `None` when null or dropped.
pub fn masked_text(masker: &Masker, name: &str, value: &Value) -> Option<String> {
    match masker.mask_field(name, value)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Every field not in a column, masked by the policy, as a JSON object.
pub fn extra(
    record: &Map<String, Value>,
    masker: &Masker,
    in_column: impl Fn(&str) -> bool,
) -> String {
    let rest: Map<String, Value> = record
        .iter()
        .filter(|(k, _)| !in_column(k))
        .filter_map(|(k, v)| masker.mask_field(k, v).map(|v| (k.clone(), v)))
        .collect();
    Value::Object(rest).to_string()
}

/// PostgreSQL stores no NUL character in `text` or `jsonb`; a record holding
/// one would fail its whole batch, so it is rejected up front (on both
/// databases, so they agree). The field is named only when its name looks
/// like one.
pub fn check_nul(record: &Map<String, Value>) -> Result<(), String> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    for (name, value) in record {
        if name.contains('\0') || has_nul(value) {
            let looks_like_a_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let field = if looks_like_a_name {
                name.as_str()
            } else {
                "a field"
            };
            return Err(format!(
                "{field} contains a NUL character, which PostgreSQL cannot store"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_decimals() {
        assert_eq!(integer(&json!(180)), Ok(Some(180)));
        assert_eq!(integer(&json!("180")), Ok(Some(180)));
        assert_eq!(integer(&json!(" -7 ")), Ok(Some(-7)));
        assert_eq!(integer(&json!(180.0)), Ok(Some(180)));
        assert_eq!(integer(&json!("")), Ok(None));
        assert_eq!(integer(&json!(null)), Ok(None));
        assert_eq!(
            integer(&json!(16648208123366i64)),
            Ok(Some(16_648_208_123_366))
        );
        for bad in [
            json!("abc"),
            json!("1.5"),
            json!(1.5),
            json!(true),
            json!({}),
        ] {
            assert_eq!(integer(&bad), Err(IntegerError::NotAnInteger), "{bad}");
        }
        for big in [json!(u64::MAX), json!("9223372036854775808"), json!(1e19)] {
            assert_eq!(integer(&big), Err(IntegerError::OutOfRange), "{big}");
        }

        let d = |v: Value| decimal(&v).map(|o| o.map(|d| d.as_str().to_owned()));
        assert_eq!(d(json!(10)), Ok(Some("10".into())));
        assert_eq!(d(json!(-10.5)), Ok(Some("-10.5".into())));
        assert_eq!(d(json!("12.50")), Ok(Some("12.50".into())));
        assert_eq!(d(json!("+3")), Ok(Some("3".into())));
        assert_eq!(d(json!(".5")), Ok(Some(".5".into())));
        assert_eq!(d(json!("1e3")), Ok(Some("1e3".into())));
        assert_eq!(d(json!("")), Ok(None));
        assert_eq!(d(json!(null)), Ok(None));
        for bad in [
            json!("NaN"),
            json!("inf"),
            json!("1,5"),
            json!("12 EUR"),
            json!("."),
            json!("1e"),
            json!("1e9999"),
            json!("1".repeat(41)),
            json!(true),
            json!([1]),
        ] {
            assert_eq!(decimal(&bad), Err(NotANumber), "{bad}");
        }
        assert_eq!(Decimal::parse("-12.5").unwrap().to_f64(), -12.5);
    }
}
