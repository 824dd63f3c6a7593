//! TUNE/HasOffers Firehose records → `tune_events` and `tune_adjustments`
//! rows.
//!
//! The fields analysts query become typed columns; PII fields with a column
//! of their own (`ip`, `session_ip`, `user_agent`, the device or advertising
//! id) are masked into it; every other field goes, masked by the policy, into
//! the JSON `extra` column, so nothing of the record is lost. A field lands in
//! exactly one place: a typed column or `extra`.
//!
//! Conversions are lenient where TUNE itself varies (numbers as strings,
//! `datetime` as Unix seconds or text, empty strings for absent values, which
//! become NULL) and strict where a column would otherwise hold a wrong value:
//! an id that is not an integer, an amount that is not a number or an unknown
//! `adjust_action` makes the record a rejected one. Reasons name the field,
//! never its value.

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::fields::{
    check_nul, decimal_field, extra, integer_field, is_blank, masked, masked_field, text,
};
use crate::masking::Masker;
use crate::records::{AdjustAction, TuneAdjustmentRow, TuneEventRow};

/// Longest `event_id` accepted, in characters. TUNE's are UUIDs; the limit
/// keeps the primary-key index entry far below PostgreSQL's ~2.7 kB B-tree
/// maximum, which would otherwise fail the whole batch.
pub const EVENT_ID_MAX: usize = 255;

/// Where `masked_device_id` comes from: the first of these present.
pub const DEVICE_ID_FIELDS: [&str; 6] = [
    "ios_ifa",
    "google_aid",
    "android_id",
    "windows_aid",
    "device_id",
    "unknown_id",
];

/// Fields of a tracking event that always go to a column of their own.
const EVENT_COLUMNS: [&str; 13] = [
    "event_id",
    "action",
    "transaction_id",
    "offer_id",
    "affiliate_id",
    "advertiser_id",
    "payout",
    "revenue",
    "currency",
    "country_code",
    "ip",
    "session_ip",
    "user_agent",
];

/// Fields of an adjustment that always go to a column of their own.
const ADJUSTMENT_COLUMNS: [&str; 8] = [
    "event_id",
    "adjustment_sequence_id",
    "adjust_action",
    "num",
    "payout",
    "revenue",
    "current_payout",
    "current_revenue",
];

/// A tracking event (impression, click, conversion) as a `tune_events` row,
/// or why it cannot be one.
pub fn event_row(record: &Map<String, Value>, masker: &Masker) -> Result<TuneEventRow, String> {
    check_nul(record)?;
    let event_id = event_id(record)?;
    let action = text(record, "action")?.ok_or_else(|| "action is empty".to_owned())?;
    // Fields whose column depends on the record: used ones leave `extra`.
    let mut used: Vec<&str> = Vec::with_capacity(3);

    let (occurred_at, time_used) = time_field(record, "datetime");
    if time_used {
        used.push("datetime");
    }
    let status = match text(record, "status")? {
        Some(status) => {
            used.push("status");
            Some(status)
        }
        None => {
            let code = text(record, "status_code")?;
            if code.is_some() {
                used.push("status_code");
            }
            code
        }
    };
    let device = DEVICE_ID_FIELDS
        .iter()
        .find_map(|&name| record.get(name).filter(|v| !is_blank(v)).map(|v| (name, v)));
    let masked_device_id = device.and_then(|(name, value)| {
        used.push(name);
        masked(masker, name, value)
    });

    let transaction_id = text(record, "transaction_id")?;
    let [offer_id, affiliate_id, advertiser_id] = typed(
        record,
        ["offer_id", "affiliate_id", "advertiser_id"],
        integer_field,
    )?;
    let [payout, revenue] = typed(record, ["payout", "revenue"], decimal_field)?;
    let row = TuneEventRow {
        event_id,
        action,
        occurred_at,
        transaction_id,
        offer_id,
        affiliate_id,
        advertiser_id,
        payout,
        revenue,
        currency: text(record, "currency")?,
        country: text(record, "country_code")?,
        status,
        masked_ip: masked_field(masker, record, "ip"),
        masked_session_ip: masked_field(masker, record, "session_ip"),
        masked_user_agent: masked_field(masker, record, "user_agent"),
        masked_device_id,
        extra: extra(record, masker, |k| {
            EVENT_COLUMNS.contains(&k) || used.contains(&k)
        }),
    };
    Ok(row)
}

/// An adjustment as a `tune_adjustments` row, or why it cannot be one.
pub fn adjustment_row(
    record: &Map<String, Value>,
    masker: &Masker,
) -> Result<TuneAdjustmentRow, String> {
    check_nul(record)?;
    let event_id = event_id(record)?;
    let adjustment_sequence_id = integer_field(record, "adjustment_sequence_id")?
        .ok_or_else(|| "adjustment_sequence_id is missing".to_owned())?;
    let adjust_action = record
        .get("adjust_action")
        .and_then(adjust_action)
        .ok_or_else(|| "adjust_action is not 1 or \"create\", 2 or \"update\"".to_owned())?;
    let (adjusted_at, time_used) = time_field(record, "adjustment_timestamp");
    let num = integer_field(record, "num")?;
    let [payout, revenue, current_payout, current_revenue] = typed(
        record,
        ["payout", "revenue", "current_payout", "current_revenue"],
        decimal_field,
    )?;
    Ok(TuneAdjustmentRow {
        event_id,
        adjustment_sequence_id,
        adjust_action,
        adjusted_at,
        num,
        payout,
        revenue,
        current_payout,
        current_revenue,
        extra: extra(record, masker, |k| {
            ADJUSTMENT_COLUMNS.contains(&k) || (time_used && k == "adjustment_timestamp")
        }),
    })
}

/// Reads one typed field of a record: `None` when absent, `Err` (the
/// reason) when it does not convert.
type Field<T> = fn(&Map<String, Value>, &str) -> Result<Option<T>, String>;

/// The typed columns `names`, each read by `field`, in order: the first
/// field that does not convert is the record's reason.
fn typed<T, const N: usize>(
    record: &Map<String, Value>,
    names: [&str; N],
    field: Field<T>,
) -> Result<[Option<T>; N], String> {
    let mut values = std::array::from_fn(|_| None);
    for (value, name) in values.iter_mut().zip(names) {
        *value = field(record, name)?;
    }
    Ok(values)
}

/// `adjust_action`: 1, 2, or "create", "update", "1", "2" in any case.
pub fn adjust_action(value: &Value) -> Option<AdjustAction> {
    let code = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 10.0)
                .map(|f| f as i64)
        })?,
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "create" => 1,
            "2" | "update" => 2,
            _ => return None,
        },
        _ => return None,
    };
    match code {
        1 => Some(AdjustAction::Create),
        2 => Some(AdjustAction::Update),
        _ => None,
    }
}

/// A time field, and whether its column took it: a blank one is NULL, and
/// one that does not parse is left to `extra`, untouched.
fn time_field(record: &Map<String, Value>, name: &str) -> (Option<DateTime<Utc>>, bool) {
    match record.get(name) {
        None => (None, false),
        Some(v) if is_blank(v) => (None, true),
        Some(v) => {
            let time = parse_time(v);
            (time, time.is_some())
        }
    }
}

/// A TUNE time: Unix seconds as a number or a numeric string (a fraction
/// is kept), `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC (also with a `T`), or
/// RFC 3339 with an offset. Anything else, or a year outside 1–9999, is
/// `None`: the row is kept with a NULL time.
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    let time = match value {
        Value::Number(n) => match n.as_i64() {
            Some(secs) => DateTime::from_timestamp(secs, 0),
            None => from_unix_f64(n.as_f64()?),
        },
        Value::String(s) => {
            let s = s.trim();
            if is_unix_seconds(s) {
                match s.parse::<i64>() {
                    Ok(secs) => DateTime::from_timestamp(secs, 0),
                    Err(_) => from_unix_f64(s.parse().ok()?),
                }
            } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                Some(t.with_timezone(&Utc))
            } else {
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                    .map(|t| t.and_utc())
            }
        }
        _ => None,
    }?;
    // Both databases, and SQLite's text timestamps that sort as strings,
    // agree on four-digit years.
    (1..=9999).contains(&time.year()).then_some(time)
}

fn is_unix_seconds(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !whole.is_empty()
        && whole.len() <= 15
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

fn from_unix_f64(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs.abs() > 1e15 {
        return None;
    }
    let whole = secs.floor();
    // Microseconds: PostgreSQL's precision, and exact enough for an f64.
    let micros = ((secs - whole) * 1e6).round() as i64;
    DateTime::from_timestamp(whole as i64, 0)?
        .checked_add_signed(chrono::TimeDelta::microseconds(micros))
}

fn event_id(record: &Map<String, Value>) -> Result<String, String> {
    let id = text(record, "event_id")?.ok_or_else(|| "event_id is missing".to_owned())?;
    if id.chars().count() > EVENT_ID_MAX {
        return Err(format!("event_id is longer than {EVENT_ID_MAX} characters"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests;
