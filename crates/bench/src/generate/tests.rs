//! Tests of the plan, the generated events and the bodies.

use std::collections::HashSet;
use std::io::Read;

use flate2::read::GzDecoder;

use super::*;

const NOW: i64 = 1_790_000_000;

/// The fields of every user-login record.
const LOGIN_FIELDS: [&str; 6] = [
    "user_id",
    "ip",
    "device_id",
    "app_version",
    "locale",
    "device_type",
];

fn generator(kind: Kind) -> Generator {
    Generator::new("testrun", kind, NOW)
}

#[test]
fn plan_maps_events_to_requests() {
    let plan = Plan::new(1050, 100);
    assert_eq!(plan.requests(), 11);
    assert_eq!(plan.events_of(0), 0..100);
    assert_eq!(plan.events_of(10), 1000..1050);
    assert_eq!(plan.events_of(11), 1050..1050);
    assert_eq!(plan.request_of(0), 0);
    assert_eq!(plan.request_of(99), 0);
    assert_eq!(plan.request_of(100), 1);
    assert_eq!(plan.request_of(1049), 10);
    // Every event belongs to exactly the request whose range holds it.
    for r in 0..plan.requests() {
        for n in plan.events_of(r) {
            assert_eq!(plan.request_of(n), r);
        }
    }
    let covered: u64 = (0..plan.requests())
        .map(|r| plan.events_of(r).count() as u64)
        .sum();
    assert_eq!(covered, 1050);
    assert_eq!(Plan::new(5, 100).requests(), 1);
    assert_eq!(Plan::new(100, 100).requests(), 1);
    assert_eq!(Plan::new(101, 1).requests(), 101);
}

#[test]
fn ids_are_unique_and_prefixed() {
    for kind in [Kind::Tune, Kind::Login, Kind::Mixed] {
        let g = generator(kind);
        let mut seen = HashSet::new();
        for n in 0..5000 {
            let event = g.event(n);
            let key = if g.kind_of(n).is_tune() {
                "event_id"
            } else {
                "user_id"
            };
            let id = event[key].as_str().unwrap().to_owned();
            assert_eq!(id, format!("testrun-{n}"));
            assert!(seen.insert(id), "duplicate id");
        }
    }
}

/// The first `count` events of a run of `kind`, each checked to be an
/// object holding every one of `present` and none of `absent`.
fn events_having(
    kind: Kind,
    count: u64,
    present: &[&str],
    absent: &[&str],
) -> Vec<Map<String, Value>> {
    let g = generator(kind);
    (0..count)
        .map(|n| {
            let event = g.event(n);
            for field in present {
                assert!(event.get(field).is_some(), "{field} missing in {event}");
            }
            for field in absent {
                assert!(event.get(field).is_none(), "{field} in {event}");
            }
            event.as_object().unwrap().clone()
        })
        .collect()
}

#[test]
fn events_are_deterministic_per_run() {
    let a = generator(Kind::Mixed);
    let b = generator(Kind::Mixed);
    let other = Generator::new("otherrun", Kind::Mixed, NOW);
    assert_eq!(a.event(42), b.event(42));
    assert_ne!(a.event(42)["ip"], other.event(42)["ip"]);
}

#[test]
fn tune_events_have_the_typical_fields() {
    let mut kinds = HashSet::new();
    let fields = [
        "action",
        "event_id",
        "affiliate_id",
        "offer_id",
        "advertiser_id",
        "ip",
        "user_agent",
        "aff_sub",
        "country_code",
        "currency",
        "datetime",
    ];
    for obj in events_having(Kind::Tune, 2000, &fields, &["adjust_action"]) {
        let action = obj["action"].as_str().unwrap();
        kinds.insert(action.to_owned());
        match action {
            "click" => assert!(obj.contains_key("transaction_id")),
            "conversion" => {
                for field in ["payout", "revenue", "transaction_id", "conversion_id"] {
                    assert!(obj.contains_key(field), "{field} missing in {obj:?}");
                }
                assert!(obj["revenue"].as_f64() >= obj["payout"].as_f64());
            }
            "impression" => {}
            other => panic!("unexpected action {other}"),
        }
        match &obj["datetime"] {
            Value::Number(secs) => {
                let secs = secs.as_i64().unwrap();
                assert!((NOW - 3600..=NOW).contains(&secs));
            }
            Value::String(s) => {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
            }
            other => panic!("datetime {other}"),
        }
        let ip: std::net::IpAddr = obj["ip"].as_str().unwrap().parse().unwrap();
        assert!(is_documentation(ip), "{ip}");
    }
    assert_eq!(
        kinds.len(),
        3,
        "clicks, impressions and conversions: {kinds:?}"
    );
}

#[test]
fn logins_have_the_login_fields() {
    events_having(Kind::Login, 500, &LOGIN_FIELDS, &["event_id", "action"]);
}

#[test]
fn mixed_has_both_shapes() {
    let g = generator(Kind::Mixed);
    let logins = (0..4000).filter(|&n| !g.kind_of(n).is_tune()).count();
    assert!((700..1300).contains(&logins), "{logins} logins of 4000");
}

fn is_documentation(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        std::net::IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
    }
}

/// The project's `sample-data.json`: valid JSON, every record of a known
/// shape, documentation addresses only.
#[test]
fn sample_data_is_valid() {
    let records: Vec<Value> =
        serde_json::from_str(include_str!("../../../../sample-data.json")).unwrap();
    let mut shapes = Vec::new();
    for record in &records {
        let obj = record.as_object().unwrap();
        let shape = if obj.contains_key("adjust_action") {
            for field in [
                "event_id",
                "adjustment_sequence_id",
                "adjustment_timestamp",
                "num",
            ] {
                assert!(obj.contains_key(field), "{field} missing in {record}");
            }
            "adjustment"
        } else if obj.contains_key("event_id") && obj.contains_key("action") {
            obj["action"].as_str().unwrap()
        } else {
            for field in LOGIN_FIELDS {
                assert!(obj.contains_key(field), "{field} missing in {record}");
            }
            "login"
        };
        shapes.push(shape);
        for field in ["ip", "session_ip"] {
            if let Some(ip) = obj.get(field) {
                let ip: std::net::IpAddr = ip.as_str().unwrap().parse().unwrap();
                assert!(is_documentation(ip), "{ip}");
            }
        }
    }
    for shape in ["click", "conversion", "impression", "adjustment", "login"] {
        assert!(shapes.contains(&shape), "no {shape} in sample-data.json");
    }
    // The adjustments apply to the conversion.
    let conversion = records
        .iter()
        .find(|r| r["action"] == "conversion" && r.get("adjust_action").is_none())
        .unwrap();
    let adjustments: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("adjust_action").is_some())
        .collect();
    assert_eq!(adjustments.len(), 2);
    assert!(
        adjustments
            .iter()
            .all(|a| a["event_id"] == conversion["event_id"])
    );
    assert_eq!(adjustments[0]["adjust_action"], 1);
    assert_eq!(adjustments[1]["adjust_action"], "update");
}

#[test]
fn json_array_body_is_valid_json() {
    let g = generator(Kind::Mixed);
    let plan = Plan::new(250, 100);
    let events = g.request_events(&plan, 2);
    assert_eq!(events.len(), 50);
    let body = encode_body(&events, BodyFormat::default());
    let parsed: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed, events);
}

#[test]
fn ndjson_body_has_one_object_per_line() {
    let g = generator(Kind::Tune);
    let plan = Plan::new(100, 100);
    let events = g.request_events(&plan, 0);
    let format = BodyFormat {
        ndjson: true,
        gzip: false,
    };
    let body = String::from_utf8(encode_body(&events, format)).unwrap();
    assert!(body.ends_with('\n'));
    let parsed: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, events);
    assert_eq!(format.content_type(), "application/x-ndjson");
}

#[test]
fn gzip_round_trips() {
    let g = generator(Kind::Tune);
    let events = g.request_events(&Plan::new(100, 100), 0);
    for ndjson in [false, true] {
        let plain = encode_body(
            &events,
            BodyFormat {
                ndjson,
                gzip: false,
            },
        );
        let zipped = encode_body(&events, BodyFormat { ndjson, gzip: true });
        assert!(zipped.len() < plain.len() / 2, "gzip should shrink JSON");
        let mut unzipped = Vec::new();
        GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain);
    }
}

#[test]
fn build_bodies_covers_every_request_in_order() {
    let g = generator(Kind::Mixed);
    let plan = Plan::new(1234, 10);
    let bodies = build_bodies(&g, &plan, BodyFormat::default());
    assert_eq!(bodies.len(), 124);
    let mut next = 0;
    for body in &bodies {
        let events: Vec<Value> = serde_json::from_slice(body).unwrap();
        for event in events {
            let id = event
                .get("event_id")
                .or_else(|| event.get("user_id"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned();
            assert_eq!(id, format!("testrun-{next}"));
            next += 1;
        }
    }
    assert_eq!(next, 1234);
}
