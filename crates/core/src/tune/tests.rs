use super::*;
use crate::masking::test_masker;
use crate::records::Decimal;
use serde_json::json;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn at(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

/// The reference click (shared fixtures, tune-click.json).
fn click() -> Value {
    json!({"action":"click",
        "aff_sub":"trafgen",
        "affiliate_id":1039,
        "affiliate_manager_id":18,
        "click_url":"http://NETWORKID.go2cloud.org/aff_c?offer_id=180&aff_id=1039&source=gwmTrafficGen&aff_sub=trafgen&format=json",
        "country_code":"US",
        "currency":"EUR",
        "datetime":1476127152,
        "event_id":"6d631f8e-8f1e-11e6-9a2e-067e12251fb6",
        "ip":"207.66.184.66",
        "is_click_unique":true,
        "mobile_carrier":"?",
        "network_id":"NETWORKID",
        "offer_expires":2419200,
        "offer_id":180,
        "payout_group_id":0,
        "payout_type":"cpa_flat",
        "req_connection_speed":"broadband",
        "revenue_group_id":0,
        "revenue_type":"cpa_flat",
        "session_on_impression":false,
        "source":"gwmTrafficGen",
        "status_code":0,
        "timezone":"America/Los_Angeles",
        "transaction_id":"10260c5c985c562d0da427bd82b31b",
        "user_agent":"Go-http-client/1.1"})
}

#[test]
fn times_in_every_form() {
    let t = "2016-10-10T19:19:12Z";
    for (value, expected) in [
        (json!(1476127152), t),
        (json!("1476127152"), t),
        (json!(" 1476127152 "), t),
        (json!("2016-10-10 19:19:12"), t),
        (json!("2016-10-10T19:19:12"), t),
        (json!("2016-10-10T19:19:12Z"), t),
        (json!("2016-10-10T12:19:12-07:00"), t),
        (json!("2016-10-10 12:19:12-07:00"), t),
        (json!(1476127152.25), "2016-10-10T19:19:12.25Z"),
        (json!("1476127152.5"), "2016-10-10T19:19:12.5Z"),
        (json!("2016-10-10 19:19:12.123"), "2016-10-10T19:19:12.123Z"),
        (json!(0), "1970-01-01T00:00:00Z"),
    ] {
        assert_eq!(parse_time(&value), at(expected), "{value}");
    }
    for bad in [
        json!("yesterday"),
        json!("2016-13-10 19:19:12"),
        json!("2016-10-10"),
        json!(""),
        json!(null),
        json!(true),
        json!({"t": 1}),
        json!(1e300),
        json!("99999999999999999999"),
        json!(-99_999_999_999i64),
        json!(999_999_999_999i64),
    ] {
        assert_eq!(parse_time(&bad), None, "{bad}");
    }
}

#[test]
fn adjust_actions_in_every_form() {
    for v in [
        json!(1),
        json!(1.0),
        json!("1"),
        json!("create"),
        json!(" CREATE "),
    ] {
        assert_eq!(adjust_action(&v), Some(AdjustAction::Create), "{v}");
    }
    for v in [json!(2), json!("2"), json!("update"), json!("Update")] {
        assert_eq!(adjust_action(&v), Some(AdjustAction::Update), "{v}");
    }
    for v in [
        json!(0),
        json!(3),
        json!(1.5),
        json!("delete"),
        json!(""),
        json!(true),
        json!([1]),
    ] {
        assert_eq!(adjust_action(&v), None, "{v}");
    }
    assert_eq!(AdjustAction::Create.code(), 1);
    assert_eq!(AdjustAction::Update.code(), 2);
}

#[test]
fn click_fixture_becomes_a_row() {
    let m = test_masker(5);
    let row = event_row(&obj(click()), &m).unwrap();
    assert_eq!(row.event_id, "6d631f8e-8f1e-11e6-9a2e-067e12251fb6");
    assert_eq!(row.action, "click");
    assert_eq!(row.occurred_at, at("2016-10-10T19:19:12Z"));
    assert_eq!(
        row.transaction_id.as_deref(),
        Some("10260c5c985c562d0da427bd82b31b")
    );
    assert_eq!(row.offer_id, Some(180));
    assert_eq!(row.affiliate_id, Some(1039));
    assert_eq!(row.advertiser_id, None);
    assert_eq!((row.payout.clone(), row.revenue.clone()), (None, None));
    assert_eq!(row.currency.as_deref(), Some("EUR"));
    assert_eq!(row.country.as_deref(), Some("US"));
    assert_eq!(row.status.as_deref(), Some("0"));
    assert_eq!(
        m.recover(row.masked_ip.as_deref().unwrap()).unwrap(),
        b"207.66.184.66"
    );
    assert_eq!(row.masked_session_ip, None);
    assert_eq!(
        row.masked_user_agent.as_deref(),
        Some(m.hash(b"Go-http-client/1.1").as_str())
    );
    assert_eq!(row.masked_device_id, None);

    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    // Every field lands once: in a column or in extra.
    for consumed in [
        "event_id",
        "action",
        "datetime",
        "transaction_id",
        "offer_id",
        "affiliate_id",
        "currency",
        "country_code",
        "status_code",
        "ip",
        "user_agent",
    ] {
        assert!(!extra.contains_key(consumed), "{consumed} in extra");
    }
    assert_eq!(extra.len(), obj(click()).len() - 11);
    assert_eq!(extra["network_id"], "NETWORKID");
    assert_eq!(extra["is_click_unique"], true);
    assert_eq!(extra["offer_expires"], 2419200);
    assert_eq!(
        m.recover(extra["aff_sub"].as_str().unwrap()).unwrap(),
        b"trafgen"
    );
    assert!(extra["click_url"].as_str().unwrap().starts_with("enc:"));
    assert!(!row.extra.contains("trafgen") && !row.extra.contains("207.66"));
}

#[test]
fn every_pii_field_is_masked_in_columns_and_extra() {
    let m = test_masker(5);
    // Each plaintext is unique so a search for it is exact.
    let pii = [
        ("ip", "198.51.100.7"),
        ("session_ip", "198.51.100.8"),
        ("user_agent", "Mozilla/5.0 (PII-UA)"),
        ("ios_ifa", "PII-IOS-IFA"),
        ("ios_ifv", "PII-IOS-IFV"),
        ("google_aid", "PII-GOOGLE-AID"),
        ("android_id", "PII-ANDROID-ID"),
        ("windows_aid", "PII-WINDOWS-AID"),
        ("device_id", "PII-DEVICE-ID"),
        ("unknown_id", "PII-UNKNOWN-ID"),
        ("mac_address", "PII-MAC"),
        ("customer_id", "PII-CUSTOMER"),
        ("browser_id", "PII-BROWSER"),
        ("email", "pii@example.com"),
        ("aff_sub", "PII-AFF-SUB1"),
        ("aff_sub2", "PII-AFF-SUB2"),
        ("aff_sub3", "PII-AFF-SUB3"),
        ("aff_sub4", "PII-AFF-SUB4"),
        ("aff_sub5", "PII-AFF-SUB5"),
        ("adv_sub", "PII-ADV-SUB1"),
        ("adv_sub2", "PII-ADV-SUB2"),
        ("adv_sub3", "PII-ADV-SUB3"),
        ("adv_sub4", "PII-ADV-SUB4"),
        ("adv_sub5", "PII-ADV-SUB5"),
        ("adv_unique1", "PII-ADV-U1"),
        ("adv_unique2", "PII-ADV-U2"),
        ("adv_unique3", "PII-ADV-U3"),
        ("adv_unique4", "PII-ADV-U4"),
        ("adv_unique5", "PII-ADV-U5"),
        ("affiliate_unique1", "PII-AFF-U1"),
        ("affiliate_unique2", "PII-AFF-U2"),
        ("affiliate_unique3", "PII-AFF-U3"),
        ("affiliate_unique4", "PII-AFF-U4"),
        ("affiliate_unique5", "PII-AFF-U5"),
        ("affiliate_click_id", "PII-AFF-CLICK"),
        ("click_url", "http://x.example/?aff_sub=PII-URL-SUB"),
        ("referral_url", "http://ref.example/?u=PII-REF"),
        ("source", "PII-SOURCE"),
    ];
    let mut record = obj(json!({"event_id": "e-pii", "action": "conversion",
        "payout": "1.5", "nested": {"ip": "198.51.100.9", "list": [{"email": "deep@example.com"}]}}));
    for (k, v) in pii {
        record.insert(k.into(), json!(v));
    }
    let row = event_row(&record, &m).unwrap();
    let all = format!("{row:?}");
    for (k, v) in pii.iter().copied().chain([
        ("nested.ip", "198.51.100.9"),
        ("nested.email", "deep@example.com"),
    ]) {
        assert!(!all.contains(v), "plaintext {k} in the row");
    }
    // The first device id present wins the column; the others stay
    // in extra, masked.
    assert_eq!(
        m.recover(row.masked_device_id.as_deref().unwrap()).unwrap(),
        b"PII-IOS-IFA"
    );
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    assert!(!extra.contains_key("ios_ifa"));
    assert_eq!(
        m.recover(extra["google_aid"].as_str().unwrap()).unwrap(),
        b"PII-GOOGLE-AID"
    );
    assert_eq!(
        m.recover(row.masked_session_ip.as_deref().unwrap())
            .unwrap(),
        b"198.51.100.8"
    );

    // The same fields in an adjustment's extra.
    let mut adjustment = record.clone();
    adjustment.insert("adjust_action".into(), json!("update"));
    adjustment.insert("adjustment_sequence_id".into(), json!(7));
    let row = adjustment_row(&adjustment, &m).unwrap();
    for (k, v) in pii {
        assert!(!row.extra.contains(v), "plaintext {k} in adjustment extra");
    }
    assert!(!row.extra.contains("198.51.100.9"));
}

#[test]
fn device_id_is_the_first_present() {
    let m = test_masker(5);
    let rec = obj(json!({"event_id": "e", "action": "click", "ios_ifa": "",
        "google_aid": null, "android_id": "A-1", "device_id": "D-1"}));
    let row = event_row(&rec, &m).unwrap();
    assert_eq!(
        m.recover(row.masked_device_id.as_deref().unwrap()).unwrap(),
        b"A-1"
    );
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    assert!(!extra.contains_key("android_id"));
    assert!(extra["device_id"].as_str().unwrap().starts_with("enc:"));
    // Blank ids stay in extra as they came (nothing to hide).
    assert!(extra.contains_key("ios_ifa"));
}

#[test]
fn conversion_with_string_forms() {
    let m = test_masker(5);
    let rec = obj(json!({"event_id": "c1", "action": "conversion",
        "datetime": "2016-10-10 19:19:12", "offer_id": "180", "affiliate_id": "",
        "advertiser_id": 7, "payout": "12.50", "revenue": 20, "status": "approved",
        "status_code": 0, "currency": ""}));
    let row = event_row(&rec, &m).unwrap();
    assert_eq!(row.occurred_at, at("2016-10-10T19:19:12Z"));
    assert_eq!(row.offer_id, Some(180));
    assert_eq!(row.affiliate_id, None);
    assert_eq!(row.advertiser_id, Some(7));
    assert_eq!(row.payout.as_ref().map(Decimal::as_str), Some("12.50"));
    assert_eq!(row.revenue.as_ref().map(Decimal::as_str), Some("20"));
    assert_eq!(row.status.as_deref(), Some("approved"));
    assert_eq!(row.currency, None);
    // status won, so status_code stays in extra.
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    assert_eq!(extra["status_code"], 0);
    assert!(!extra.contains_key("currency"));
}

#[test]
fn unparseable_time_is_null_and_kept_in_extra() {
    let m = test_masker(5);
    let rec = obj(json!({"event_id": "e", "action": "impression", "datetime": "soon"}));
    let row = event_row(&rec, &m).unwrap();
    assert_eq!(row.occurred_at, None);
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    assert_eq!(extra["datetime"], "soon");
}

#[test]
fn bad_events_are_rejected_naming_the_field_not_the_value() {
    let m = test_masker(5);
    let cases = [
        (
            json!({"event_id": "e", "action": "click", "offer_id": "SECRET"}),
            "offer_id is not an integer",
        ),
        (
            json!({"event_id": "e", "action": "click", "affiliate_id": 1.5}),
            "affiliate_id is not an integer",
        ),
        (
            json!({"event_id": "e", "action": "click", "advertiser_id": "99999999999999999999"}),
            "advertiser_id is out of range for a 64-bit integer",
        ),
        (
            json!({"event_id": "e", "action": "click", "payout": "SECRET"}),
            "payout is not a number",
        ),
        (
            json!({"event_id": "e", "action": "click", "revenue": {"a": 1}}),
            "revenue is not a number",
        ),
        (
            json!({"event_id": "e", "action": "click", "currency": ["SECRET"]}),
            "currency is not a scalar",
        ),
        (
            json!({"event_id": "e", "action": {"SECRET": 1}}),
            "action is not a scalar",
        ),
        (json!({"event_id": "e", "action": ""}), "action is empty"),
        (
            json!({"event_id": "", "action": "click"}),
            "event_id is missing",
        ),
        (
            json!({"event_id": "x".repeat(256), "action": "click"}),
            "event_id is longer than 255 characters",
        ),
        (
            json!({"event_id": "e", "action": "click", "aff_sub": "SECRET\u{0}"}),
            "aff_sub contains a NUL character, which PostgreSQL cannot store",
        ),
        (
            json!({"event_id": "e", "action": "click", "n": {"k": "SECRET\u{0}"}}),
            "n contains a NUL character, which PostgreSQL cannot store",
        ),
        (
            json!({"event_id": "e", "action": "click", "SECRET@x.y": "\u{0}"}),
            "a field contains a NUL character, which PostgreSQL cannot store",
        ),
    ];
    for (rec, reason) in cases {
        let err = event_row(&obj(rec.clone()), &m).unwrap_err();
        assert_eq!(err, reason, "{rec}");
        assert!(!err.contains("SECRET"));
    }
    assert!(
        event_row(
            &obj(json!({"event_id": "x".repeat(255), "action": "click"})),
            &m
        )
        .is_ok()
    );
}

#[test]
fn adjustments() {
    let m = test_masker(5);
    let rec = obj(json!({"event_id": "c1", "adjust_action": "update",
        "adjustment_sequence_id": "16648208123366", "adjustment_timestamp": 1664820812,
        "action": "conversion", "num": -1, "payout": -10, "revenue": "-20.5",
        "current_payout": 0, "aff_sub": "PII-SUB", "session_ip": "203.0.113.5"}));
    let row = adjustment_row(&rec, &m).unwrap();
    assert_eq!(row.event_id, "c1");
    assert_eq!(row.adjustment_sequence_id, 16_648_208_123_366);
    assert_eq!(row.adjust_action, AdjustAction::Update);
    assert_eq!(row.adjusted_at, at("2022-10-03T18:13:32Z"));
    assert_eq!(row.num, Some(-1));
    assert_eq!(row.payout.as_ref().map(Decimal::as_str), Some("-10"));
    assert_eq!(row.revenue.as_ref().map(Decimal::as_str), Some("-20.5"));
    assert_eq!(row.current_payout.as_ref().map(Decimal::as_str), Some("0"));
    assert_eq!(row.current_revenue, None);
    let extra: Map<String, Value> = serde_json::from_str(&row.extra).unwrap();
    let mut keys: Vec<&str> = extra.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["action", "aff_sub", "session_ip"]);
    assert!(!row.extra.contains("PII-SUB") && !row.extra.contains("203.0.113.5"));

    let base = json!({"event_id": "c1", "adjust_action": 1, "adjustment_sequence_id": 1});
    let with = |k: &str, v: Value| {
        let mut r = obj(base.clone());
        r.insert(k.into(), v);
        r
    };
    assert_eq!(
        adjustment_row(&obj(base.clone()), &m)
            .unwrap()
            .adjust_action,
        AdjustAction::Create
    );
    let cases = [
        (
            with("adjust_action", json!("delete")),
            "adjust_action is not 1 or \"create\", 2 or \"update\"",
        ),
        (
            with("adjust_action", json!(3)),
            "adjust_action is not 1 or \"create\", 2 or \"update\"",
        ),
        (
            with("adjustment_sequence_id", json!(null)),
            "adjustment_sequence_id is missing",
        ),
        (
            with("adjustment_sequence_id", json!("SECRET")),
            "adjustment_sequence_id is not an integer",
        ),
        (with("event_id", json!(null)), "event_id is missing"),
        (with("num", json!("SECRET")), "num is not an integer"),
        (
            with("current_revenue", json!("SECRET")),
            "current_revenue is not a number",
        ),
    ];
    for (rec, reason) in cases {
        assert_eq!(adjustment_row(&rec, &m).unwrap_err(), reason);
    }
    // An unparseable timestamp: NULL, kept in extra.
    let row = adjustment_row(&with("adjustment_timestamp", json!("later")), &m).unwrap();
    assert_eq!(row.adjusted_at, None);
    assert!(row.extra.contains("later"));
}
