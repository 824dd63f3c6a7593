//! One dead-lettered message as the operator sees it: its id, receive
//! count and size, and the rows the writer would make of it — already
//! masked, so the view holds what the database would, never the body.

use serde_json::{Value, json};
use sluice_core::queue::QueueMessage;
use sluice_core::records::{Decimal, MessageRows};

/// The message as one JSON object (printed as one line).
pub fn message_view(message: &QueueMessage, rows: &MessageRows) -> Value {
    let decimal = |d: &Option<Decimal>| d.as_ref().map(|d| d.as_str().to_owned());
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    // `extra` is masked JSON text: shown as the object it is.
    let extra = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "message_id": message.message_id,
        "receive_count": message.receive_count,
        "body_bytes": message.body.len(),
        "key": rows.key,
        "user_logins": rows.logins.iter().map(|r| json!({
            "user_id": r.user_id,
            "device_type": r.device_type,
            "masked_ip": r.masked_ip,
            "masked_device_id": r.masked_device_id,
            "locale": r.locale,
            "app_version": r.app_version,
        })).collect::<Vec<_>>(),
        "tune_events": rows.tune_events.iter().map(|r| json!({
            "event_id": r.event_id,
            "action": r.action,
            "occurred_at": time(&r.occurred_at),
            "transaction_id": r.transaction_id,
            "offer_id": r.offer_id,
            "affiliate_id": r.affiliate_id,
            "advertiser_id": r.advertiser_id,
            "payout": decimal(&r.payout),
            "revenue": decimal(&r.revenue),
            "currency": r.currency,
            "country": r.country,
            "status": r.status,
            "masked_ip": r.masked_ip,
            "masked_session_ip": r.masked_session_ip,
            "masked_user_agent": r.masked_user_agent,
            "masked_device_id": r.masked_device_id,
            "extra": extra(&r.extra),
        })).collect::<Vec<_>>(),
        "tune_adjustments": rows.tune_adjustments.iter().map(|r| json!({
            "event_id": r.event_id,
            "adjustment_sequence_id": r.adjustment_sequence_id,
            "adjust_action": r.adjust_action.code(),
            "adjusted_at": time(&r.adjusted_at),
            "num": r.num,
            "payout": decimal(&r.payout),
            "revenue": decimal(&r.revenue),
            "current_payout": decimal(&r.current_payout),
            "current_revenue": decimal(&r.current_revenue),
            "extra": extra(&r.extra),
        })).collect::<Vec<_>>(),
        "rejected_records": rows.rejected.iter().map(|r| json!({
            "reason": r.reason,
            "payload_format": r.payload_format.as_str(),
            "payload": r.payload,
        })).collect::<Vec<_>>(),
    })
}
