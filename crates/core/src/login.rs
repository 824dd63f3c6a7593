//! User-login records → `user_logins` rows.
//!
//! Two ways in, one result. [`login_row`] takes a parsed JSON object and
//! handles every shape. [`plain_login_row`] reads the common shape (only the
//! six login fields, each a string or null) straight from the record's JSON
//! text into borrowed strings: building a `serde_json::Map` per record and
//! freeing it again cost more than masking. Whatever it does not take — an
//! extra field, a number, a value to reject — it leaves to the general path,
//! so both give the same row or the same rejection.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::classify::rule::{RecordKind, approx};
use crate::fields;
use crate::masking::Masker;
use crate::records::LoginRow;

const USER_ID_MAX: usize = 128;
const SHORT_TEXT_MAX: usize = 32;
const MASKED_MAX: usize = 256;

/// Builds the row, or says why the record cannot be one. The reason never
/// quotes the value.
pub fn login_row(record: &Map<String, Value>, masker: &Masker) -> Result<LoginRow, String> {
    // A NUL would fail the whole PostgreSQL batch; reject just this record.
    fields::check_nul(record)?;
    let user_id = text_field(record, "user_id", USER_ID_MAX)?
        .ok_or_else(|| "user_id is missing".to_owned())?;
    Ok(LoginRow {
        user_id,
        device_type: text_field(record, "device_type", SHORT_TEXT_MAX)?,
        masked_ip: masked_field(record, "ip", "masked_ip", masker)?,
        masked_device_id: masked_field(record, "device_id", "masked_device_id", masker)?,
        locale: text_field(record, "locale", SHORT_TEXT_MAX)?,
        app_version: record.get("app_version").and_then(app_version),
    })
}

/// A login record in its plain shape: only these fields, each a string or
/// null (or absent). Any other shape fails the parse.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, bound(deserialize = "'de: 'a"))]
struct PlainLogin<'a> {
    user_id: Text<'a>,
    ip: Text<'a>,
    device_id: Text<'a>,
    device_type: Text<'a>,
    locale: Text<'a>,
    app_version: Text<'a>,
}

impl PlainLogin<'_> {
    /// The fields by name, as [`RecordKind`] and the size bound see them.
    fn fields(&self) -> [(&'static str, &Text<'_>); 6] {
        [
            ("app_version", &self.app_version),
            ("device_id", &self.device_id),
            ("device_type", &self.device_type),
            ("ip", &self.ip),
            ("locale", &self.locale),
            ("user_id", &self.user_id),
        ]
    }
}

/// A field of a plain login: absent, `null` (which the size bound counts),
/// or a string (borrowed from the JSON text unless it had escapes).
#[derive(Default)]
enum Text<'a> {
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
}

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Absent | Text::Null => None,
            Text::Str(s) => Some(s),
        }
    }

    /// What [`crate::classify`]'s size bound counts for the value, if present.
    fn approx_size(&self) -> Option<usize> {
        match self {
            Text::Absent => None,
            Text::Null => Some(approx::SCALAR),
            Text::Str(s) => Some(approx::string(s.len())),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Null)
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// More than `max` characters, as PostgreSQL's varchar counts them; the
/// byte length bounds the count, so most values are not counted at all.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// The row of a record in the plain login shape, read from its JSON text;
/// `None` when the record is of another shape or would be rejected, for
/// [`login_row`] (through classification) to handle. `max_record_bytes` is
/// the classifier's size bound; the bound and the classification are
/// classify's own ([`approx`], [`RecordKind::by_fields`]).
pub fn plain_login_row(json: &str, masker: &Masker, max_record_bytes: usize) -> Option<LoginRow> {
    let record: PlainLogin<'_> = serde_json::from_str(json).ok()?;
    let fields = record.fields();
    // The bound classify applies before anything else (keys and strings).
    let size = approx::object(
        fields
            .iter()
            .filter_map(|(name, value)| Some(approx::field(name, value.approx_size()?))),
    );
    if !approx::within(size, max_record_bytes) {
        return None;
    }
    let present = |name: &str| {
        fields
            .iter()
            .any(|(n, v)| *n == name && !matches!(v, Text::Absent | Text::Null))
    };
    if RecordKind::by_fields(present) != RecordKind::UserLogin {
        return None;
    }
    let user_id = record.user_id.as_str()?;
    if fields
        .iter()
        .any(|(_, v)| v.as_str().is_some_and(|s| s.contains('\0')))
    {
        return None;
    }
    let short = |f: &Text<'_>, max: usize| match f.as_str() {
        Some(s) if longer_than(s, max) => Err(()),
        other => Ok(other.map(str::to_owned)),
    };
    if longer_than(user_id, USER_ID_MAX) {
        return None;
    }
    let masked = |strategy, f: &Text<'_>| match f.as_str() {
        None => Ok(None),
        Some(s) => match masker.mask_text(strategy, s) {
            Some(m) if longer_than(&m, MASKED_MAX) => Err(()),
            m => Ok(m),
        },
    };
    let (ip, device_id) = masker.login_strategies();
    Some(LoginRow {
        user_id: user_id.to_owned(),
        device_type: short(&record.device_type, SHORT_TEXT_MAX).ok()?,
        masked_ip: masked(ip, &record.ip).ok()?,
        masked_device_id: masked(device_id, &record.device_id).ok()?,
        locale: short(&record.locale, SHORT_TEXT_MAX).ok()?,
        app_version: record.app_version.as_str().and_then(app_version_text),
    })
}

/// A scalar field as text, checked against its column width (characters,
/// as PostgreSQL's varchar counts them).
fn text_field(
    record: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, String> {
    let text = fields::scalar(record, name)?;
    if text.as_ref().is_some_and(|t| t.chars().count() > max) {
        return Err(format!("{name} is longer than {max} characters"));
    }
    Ok(text)
}

fn masked_field(
    record: &Map<String, Value>,
    name: &str,
    column: &str,
    masker: &Masker,
) -> Result<Option<String>, String> {
    let masked = record
        .get(name)
        .and_then(|value| fields::masked_text(masker, name, value));
    if masked
        .as_ref()
        .is_some_and(|m| m.chars().count() > MASKED_MAX)
    {
        return Err(format!("{name} is too long to fit {column} once masked"));
    }
    Ok(masked)
}

/// `"2.3.0"` → 2003000: major·1 000 000 + minor·1 000 + patch, so versions
/// order as integers. Anything else (more parts, a part ≥ 1000, letters,
/// overflow) is `None`: the row is kept with a NULL version.
pub fn app_version(value: &Value) -> Option<i32> {
    match value {
        Value::String(s) => app_version_text(s),
        Value::Number(n) => app_version_text(&n.to_string()),
        _ => None,
    }
}

/// [`app_version`] of a text value.
fn app_version_text(text: &str) -> Option<i32> {
    let text = text.trim();
    let mut numbers = [0i32; 3];
    let mut parts = text.split('.');
    for slot in &mut numbers {
        let Some(part) = parts.next() else { break };
        if part.is_empty() || part.len() > 9 {
            return None;
        }
        // Digits only (no sign); nine of them cannot overflow an i32.
        for b in part.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            *slot = *slot * 10 + i32::from(b - b'0');
        }
    }
    if parts.next().is_some() {
        return None;
    }
    let [major, minor, patch] = numbers;
    if minor >= 1000 || patch >= 1000 {
        return None;
    }
    major
        .checked_mul(1_000_000)?
        .checked_add(minor * 1000 + patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::test_masker;
    use serde_json::json;

    #[test]
    fn app_versions() {
        for (text, version) in [
            ("2.3.0", 2_003_000),
            ("0.96", 96_000),
            ("3.7", 3_007_000),
            ("7", 7_000_000),
        ] {
            assert_eq!(app_version(&json!(text)), Some(version), "{text}");
        }
        assert_eq!(app_version(&json!(3.7)), Some(3_007_000));
        for bad in ["beta", "1.2.3.4", "1.1000", "3000.0.0", "", "-1.0"] {
            assert_eq!(app_version(&json!(bad)), None, "{bad}");
        }
        assert_eq!(app_version(&json!(null)), None);
    }

    #[test]
    fn plain_logins_are_read_without_a_map_and_others_declined() {
        let m = test_masker(9);
        let plain = r#"{"user_id": "u\u00e9", "app_version": "2.3.0", "device_type": "ios",
            "ip": "199.172.111.135", "locale": null, "device_id": "593-47-5928"}"#;
        let value: Value = serde_json::from_str(plain).unwrap();
        assert_eq!(
            plain_login_row(plain, &m, 65_536),
            Some(login_row(value.as_object().unwrap(), &m).unwrap())
        );
        // Left to the general path: other shapes, and anything it rejects.
        for other in [
            r#"{"user_id": 7, "ip": "1.1.1.1"}"#,
            r#"{"user_id": "u", "ip": "1.1.1.1", "extra": 1}"#,
            r#"{"user_id": "u", "ip": null}"#,
            r#"{"user_id": "u", "ip": "1.1.1.1", "ip": "1.1.1.2"}"#,
            r#"{"user_id": "u\u0000", "ip": "1.1.1.1"}"#,
            r#"{"user_id": "u", "ip": "1.1.1.1", "locale": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
        ] {
            assert_eq!(plain_login_row(other, &m, 65_536), None, "{other}");
        }
        assert_eq!(plain_login_row(plain, &m, 100), None);
        // Nulls count toward the size bound as in classify (key + 4 + 8).
        let nulls = r#"{"user_id": "u", "ip": "1.1.1.1", "locale": null}"#;
        let without_locale = 2 + ("user_id".len() + 4 + 3) + ("ip".len() + 4 + 9);
        let size = without_locale + "locale".len() + 4 + 8;
        assert!(plain_login_row(nulls, &m, size).is_some());
        assert_eq!(plain_login_row(nulls, &m, size - 1), None);
    }

    #[test]
    fn row_is_masked_and_checked() {
        let m = test_masker(9);
        let rec = json!({"user_id": "u1", "app_version": "2.3.0", "device_type": "android",
            "ip": "199.172.111.135", "locale": null, "device_id": "593-47-5928"});
        let row = login_row(rec.as_object().unwrap(), &m).unwrap();
        assert_eq!(row.user_id, "u1");
        assert_eq!(row.locale, None);
        assert_eq!(row.app_version, Some(2_003_000));
        assert_eq!(
            m.recover(row.masked_ip.as_deref().unwrap()).unwrap(),
            b"199.172.111.135"
        );
        assert_eq!(
            m.recover(row.masked_device_id.as_deref().unwrap()).unwrap(),
            b"593-47-5928"
        );

        let long = json!({"user_id": "u", "ip": "1.1.1.1", "device_type": "x".repeat(33)});
        assert_eq!(
            login_row(long.as_object().unwrap(), &m).unwrap_err(),
            "device_type is longer than 32 characters"
        );
        let nested = json!({"user_id": {"a": 1}, "ip": "1.1.1.1"});
        assert_eq!(
            login_row(nested.as_object().unwrap(), &m).unwrap_err(),
            "user_id is not a scalar"
        );
        let nul = json!({"user_id": "u\u{0}x", "ip": "1.1.1.1"});
        assert!(
            login_row(nul.as_object().unwrap(), &m)
                .unwrap_err()
                .contains("user_id")
        );
        let huge_ip = json!({"user_id": "u", "ip": "9".repeat(300)});
        assert!(
            login_row(huge_ip.as_object().unwrap(), &m)
                .unwrap_err()
                .contains("masked_ip")
        );
    }
}
