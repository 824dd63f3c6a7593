//! User-login records → `user_logins` rows.

use serde_json::{Map, Value};

use crate::masking::Masker;
use crate::records::LoginRow;

const USER_ID_MAX: usize = 128;
const SHORT_TEXT_MAX: usize = 32;
const MASKED_MAX: usize = 256;

/// Builds the row, or says why the record cannot be one. The reason never
/// quotes the value.
pub fn login_row(record: &Map<String, Value>, masker: &Masker) -> Result<LoginRow, String> {
    // A NUL would fail the whole PostgreSQL batch; reject just this record.
    crate::tune::check_nul(record)?;
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

/// A scalar field as text, checked against its column width (characters,
/// as PostgreSQL's varchar counts them).
fn text_field(
    record: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, String> {
    let text = match record.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(_) => return Err(format!("{name} is not a scalar")),
    };
    if text.chars().count() > max {
        return Err(format!("{name} is longer than {max} characters"));
    }
    Ok(Some(text))
}

fn masked_field(
    record: &Map<String, Value>,
    name: &str,
    column: &str,
    masker: &Masker,
) -> Result<Option<String>, String> {
    let Some(value) = record.get(name) else {
        return Ok(None);
    };
    match masker.mask_field(name, value) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MASKED_MAX => Ok(Some(s)),
        Some(Value::String(_)) => Err(format!("{name} is too long to fit {column} once masked")),
        Some(other) => {
            let s = other.to_string();
            if s.chars().count() > MASKED_MAX {
                Err(format!("{name} is too long to fit {column} once masked"))
            } else {
                Ok(Some(s))
            }
        }
    }
}

/// `"2.3.0"` → 2003000: major·1 000 000 + minor·1 000 + patch, so versions
/// order as integers. Anything else (more parts, a part ≥ 1000, letters,
/// overflow) is `None`: the row is kept with a NULL version.
pub fn app_version(value: &Value) -> Option<i32> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut numbers = [0i32; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
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
    use crate::masking::{Keyring, PiiKey, Policy};
    use serde_json::json;

    #[test]
    fn app_versions() {
        assert_eq!(app_version(&json!("2.3.0")), Some(2_003_000));
        assert_eq!(app_version(&json!("0.96")), Some(96_000));
        assert_eq!(app_version(&json!("3.7")), Some(3_007_000));
        assert_eq!(app_version(&json!("7")), Some(7_000_000));
        assert_eq!(app_version(&json!(3.7)), Some(3_007_000));
        assert_eq!(app_version(&json!("beta")), None);
        assert_eq!(app_version(&json!("1.2.3.4")), None);
        assert_eq!(app_version(&json!("1.1000")), None);
        assert_eq!(app_version(&json!("3000.0.0")), None);
        assert_eq!(app_version(&json!("")), None);
        assert_eq!(app_version(&json!("-1.0")), None);
        assert_eq!(app_version(&json!(null)), None);
    }

    #[test]
    fn row_is_masked_and_checked() {
        let m = Masker::new(
            Keyring::new(PiiKey::from_bytes(&[9u8; 32]), vec![]),
            Policy::default(),
        );
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
