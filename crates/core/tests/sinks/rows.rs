//! The rows the contract tests write: logins, rejected records, TUNE
//! events and adjustments, and the batches built from them.

use chrono::{DateTime, NaiveDate, Utc};
use sluice_core::records::{
    AdjustAction, Decimal, LoginRow, MessageRows, PayloadFormat, RejectedRow, TuneAdjustmentRow,
    TuneEventRow, WriteBatch,
};

pub const PLAIN_USER_LOGINS_DDL: &str = "CREATE TABLE user_logins (
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)";

pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 17).expect("valid date")
}

pub fn login(user_id: &str, app_version: Option<i32>) -> LoginRow {
    LoginRow {
        user_id: user_id.to_owned(),
        device_type: Some("android".to_owned()),
        masked_ip: Some(format!("enc:k1:ip-{user_id}")),
        masked_device_id: Some(format!("enc:k1:dev-{user_id}")),
        locale: Some("RU".to_owned()),
        app_version,
    }
}

/// A login with every optional column NULL.
pub fn bare_login(user_id: &str) -> LoginRow {
    LoginRow {
        user_id: user_id.to_owned(),
        device_type: None,
        masked_ip: None,
        masked_device_id: None,
        locale: None,
        app_version: None,
    }
}

pub fn rejected(reason: &str) -> RejectedRow {
    RejectedRow {
        reason: reason.to_owned(),
        payload: r#"{"foo":"bar"}"#.to_owned(),
        payload_format: PayloadFormat::MaskedJson,
    }
}

pub fn message(key: &str, logins: Vec<LoginRow>, rejected: Vec<RejectedRow>) -> MessageRows {
    MessageRows {
        key: key.to_owned(),
        logins,
        rejected,
        ..MessageRows::default()
    }
}

pub fn amount(text: &str) -> Option<Decimal> {
    Some(Decimal::parse(text).expect("valid amount"))
}

pub fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid time")
        .with_timezone(&Utc)
}

/// A conversion with every column set.
pub fn tune_event(event_id: &str, payout: Option<&str>, revenue: Option<&str>) -> TuneEventRow {
    TuneEventRow {
        event_id: event_id.to_owned(),
        action: "conversion".to_owned(),
        occurred_at: Some(time("2016-10-10T19:19:12.250Z")),
        transaction_id: Some(format!("tx-{event_id}")),
        offer_id: Some(180),
        affiliate_id: Some(1039),
        advertiser_id: Some(9_000_000_000),
        payout: payout.and_then(amount),
        revenue: revenue.and_then(amount),
        currency: Some("EUR".to_owned()),
        country: Some("US".to_owned()),
        status: Some("approved".to_owned()),
        masked_ip: Some(format!("enc:k1:ip-{event_id}")),
        masked_session_ip: None,
        masked_user_agent: Some("hmac:k1:ua".to_owned()),
        masked_device_id: Some("enc:k1:dev".to_owned()),
        extra: r#"{"network_id":"N","aff_sub":"enc:k1:sub","nested":{"n":1}}"#.to_owned(),
    }
}

/// An adjustment of `event_id` with signed deltas.
pub fn tune_adjustment(
    event_id: &str,
    sequence: i64,
    action: AdjustAction,
    deltas: (i64, &str, &str),
    adjusted_at: &str,
) -> TuneAdjustmentRow {
    TuneAdjustmentRow {
        event_id: event_id.to_owned(),
        adjustment_sequence_id: sequence,
        adjust_action: action,
        adjusted_at: Some(time(adjusted_at)),
        num: Some(deltas.0),
        payout: amount(deltas.1),
        revenue: amount(deltas.2),
        current_payout: None,
        current_revenue: None,
        extra: r#"{"action":"conversion"}"#.to_owned(),
    }
}

pub fn tune_message(
    key: &str,
    events: Vec<TuneEventRow>,
    adjustments: Vec<TuneAdjustmentRow>,
) -> MessageRows {
    MessageRows {
        key: key.to_owned(),
        tune_events: events,
        tune_adjustments: adjustments,
        ..MessageRows::default()
    }
}

/// e1 twice in one batch (two messages) and one adjustment twice: one row each.
pub fn duplicate_tune_batch() -> WriteBatch {
    let adjustment = || {
        tune_adjustment(
            "e1",
            7,
            AdjustAction::Update,
            (-1, "-10", "-20"),
            "2016-10-11T00:00:00Z",
        )
    };
    let mut second_copy = tune_event("e1", Some("999"), None);
    second_copy.action = "click".to_owned();
    batch(vec![
        tune_message(
            "t1",
            vec![tune_event("e1", Some("10"), Some("20"))],
            vec![adjustment()],
        ),
        tune_message(
            "t2",
            vec![second_copy, tune_event("e2", None, None)],
            vec![adjustment()],
        ),
    ])
}

/// The view test's batches, in arrival order: an update (and a create) for
/// e1 before e1 itself; then e1 and e2; then a second update of e1.
pub fn view_batches() -> Vec<WriteBatch> {
    vec![
        batch(vec![tune_message(
            "early-adjustments",
            vec![],
            vec![
                tune_adjustment(
                    "e1",
                    2,
                    AdjustAction::Update,
                    (-1, "-12.50", "-20"),
                    "2016-10-12T00:00:00Z",
                ),
                // A create is a new event in TUNE's model, not a change.
                tune_adjustment(
                    "e1",
                    1,
                    AdjustAction::Create,
                    (1, "100", "100"),
                    "2016-10-13T00:00:00Z",
                ),
            ],
        )]),
        batch(vec![tune_message(
            "events",
            vec![
                tune_event("e1", Some("12.50"), Some("20.10")),
                tune_event("e2", Some("0.1"), None),
            ],
            vec![],
        )]),
        batch(vec![tune_message(
            "late-update",
            vec![],
            vec![tune_adjustment(
                "e1",
                3,
                AdjustAction::Update,
                (0, "0.25", "0"),
                "2016-10-11T00:00:00Z",
            )],
        )]),
    ]
}

pub fn batch(messages: Vec<MessageRows>) -> WriteBatch {
    WriteBatch {
        written_on: day(),
        messages,
    }
}

/// Two messages: m1 with two logins (one all-NULL), m2 with one login and
/// one rejected record.
pub fn sample_batch() -> WriteBatch {
    batch(vec![
        message(
            "m1",
            vec![login("u1", Some(2_003_000)), bare_login("u2")],
            vec![],
        ),
        message(
            "m2",
            vec![login("u3", Some(96_000))],
            vec![rejected("unrecognized record shape")],
        ),
    ])
}

/// Every table and view the migrations make.
pub const TABLES: [&str; 6] = [
    "user_logins",
    "sluice_receipts",
    "rejected_records",
    "tune_events",
    "tune_adjustments",
    "tune_events_current",
];
