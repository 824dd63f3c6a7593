//! Generated events and request bodies.
//!
//! Event `n` of a run (0-based) is a pure function of the run id and `n`, so
//! the bodies can be built in parallel up front, and the verifier can tell
//! from `n` alone which table an event goes to and which request carried it.
//! Ids are `<run-id>-<n>`: `event_id` for TUNE events, `user_id` for logins.

use std::io::Write;
use std::ops::Range;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};

use crate::args::Kind;

/// How a run's events are cut into requests: request `r` carries events
/// `r * per_request .. min((r + 1) * per_request, total)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub total: u64,
    pub per_request: u64,
}

impl Plan {
    pub fn new(total: u64, per_request: u64) -> Self {
        Self {
            total,
            per_request: per_request.max(1),
        }
    }

    /// Number of requests (the last one may be short).
    pub fn requests(&self) -> usize {
        self.total.div_ceil(self.per_request) as usize
    }

    /// The request that carries event `n`.
    pub fn request_of(&self, n: u64) -> usize {
        (n / self.per_request) as usize
    }

    /// The events request `r` carries.
    pub fn events_of(&self, r: usize) -> Range<u64> {
        let start = (r as u64).saturating_mul(self.per_request).min(self.total);
        let end = start.saturating_add(self.per_request).min(self.total);
        start..end
    }
}

/// What event `n` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Click,
    Impression,
    Conversion,
    Login,
}

impl EventKind {
    pub fn is_tune(self) -> bool {
        !matches!(self, EventKind::Login)
    }
}

/// Body encoding of every request of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyFormat {
    pub ndjson: bool,
    pub gzip: bool,
}

impl BodyFormat {
    pub fn content_type(&self) -> &'static str {
        if self.ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        }
    }

    pub fn describe(&self) -> String {
        let base = if self.ndjson { "ndjson" } else { "json array" };
        if self.gzip {
            format!("{base}, gzip")
        } else {
            base.to_owned()
        }
    }
}

/// The id of event `n` of a run.
pub fn event_id(run_id: &str, n: u64) -> String {
    format!("{run_id}-{n}")
}

/// Makes the events of one run.
#[derive(Debug, Clone)]
pub struct Generator {
    run_id: String,
    kind: Kind,
    seed: u64,
    /// Unix seconds the generated `datetime`s count back from.
    now: i64,
}

impl Generator {
    pub fn new(run_id: &str, kind: Kind, now: i64) -> Self {
        // FNV-1a of the run id: every run gets its own values.
        let seed = run_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            run_id: run_id.to_owned(),
            kind,
            seed,
            now,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn rng(&self, n: u64, stream: u64) -> Rng {
        Rng(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.rotate_left(32))
    }

    /// What event `n` is: for TUNE 70% clicks, 20% impressions, 10%
    /// conversions; for mixed, one login in four, the rest TUNE.
    pub fn kind_of(&self, n: u64) -> EventKind {
        let mut rng = self.rng(n, 1);
        let login = match self.kind {
            Kind::Tune => false,
            Kind::Login => true,
            Kind::Mixed => rng.chance(25),
        };
        if login {
            return EventKind::Login;
        }
        match rng.below(10) {
            0..=6 => EventKind::Click,
            7 | 8 => EventKind::Impression,
            _ => EventKind::Conversion,
        }
    }

    /// Event `n` as a JSON object.
    pub fn event(&self, n: u64) -> Value {
        let mut rng = self.rng(n, 2);
        let id = event_id(&self.run_id, n);
        match self.kind_of(n) {
            EventKind::Login => self.login(&mut rng, id),
            kind => self.tune(&mut rng, id, kind, n),
        }
    }

    fn login(&self, rng: &mut Rng, user_id: String) -> Value {
        const VERSIONS: &[&str] = &["2.3.0", "2.2.8", "2.2.1", "0.96", "3.7", "0.5.5", "1.0"];
        const LOCALES: &[&str] = &["US", "FR", "DE", "BR", "ID", "PH", "PT", "RU", "JP"];
        let locale = if rng.chance(10) {
            Value::Null
        } else {
            json!(rng.pick(LOCALES))
        };
        json!({
            "user_id": user_id,
            "app_version": rng.pick(VERSIONS),
            "device_type": if rng.chance(55) { "android" } else { "ios" },
            "ip": doc_ip(rng),
            "locale": locale,
            "device_id": format!(
                "{:03}-{:02}-{:04}",
                rng.below(1000),
                rng.below(100),
                rng.below(10_000)
            ),
        })
    }

    fn tune(&self, rng: &mut Rng, event_id: String, kind: EventKind, n: u64) -> Value {
        const COUNTRIES: &[(&str, &str, &str)] = &[
            ("US", "USD", "America/Los_Angeles"),
            ("US", "USD", "America/New_York"),
            ("GB", "GBP", "Europe/London"),
            ("DE", "EUR", "Europe/Berlin"),
            ("FR", "EUR", "Europe/Paris"),
            ("BR", "BRL", "America/Sao_Paulo"),
            ("JP", "JPY", "Asia/Tokyo"),
            ("IN", "INR", "Asia/Kolkata"),
        ];
        const AGENTS: &[&str] = &[
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Go-http-client/1.1",
        ];
        const SOURCES: &[&str] = &["benchTraffic", "newsletter", "search", "social"];
        const CARRIERS: &[&str] = &["?", "T-Mobile", "Vodafone", "Verizon", "Orange"];
        const SPEEDS: &[&str] = &["broadband", "mobile", "cable", "dialup"];

        let (country, currency, timezone) = *rng.pick(COUNTRIES);
        let affiliate_id = 1000 + rng.below(200);
        let offer_id = 100 + rng.below(400);
        let advertiser_id = 500 + rng.below(40);
        let aff_sub = format!("bench{}", rng.below(50));
        let source = rng.pick(SOURCES);
        // Half the events carry Unix seconds, half the "YYYY-MM-DD HH:MM:SS"
        // string other TUNE events use.
        let when = self.now - rng.below(3600) as i64;
        let datetime = if rng.chance(50) {
            json!(when)
        } else {
            json!(
                chrono::DateTime::from_timestamp(when, 0)
                    .unwrap_or_default()
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            )
        };
        let action = match kind {
            EventKind::Click => "click",
            EventKind::Impression => "impression",
            _ => "conversion",
        };

        let mut event = Map::new();
        let mut put = |k: &str, v: Value| {
            event.insert(k.to_owned(), v);
        };
        put("action", json!(action));
        put("event_id", json!(event_id));
        put("network_id", json!("sluicebench"));
        put("affiliate_id", json!(affiliate_id));
        put("affiliate_manager_id", json!(10 + rng.below(20)));
        put("offer_id", json!(offer_id));
        put("advertiser_id", json!(advertiser_id));
        put("datetime", datetime);
        put("ip", json!(doc_ip(rng)));
        put("user_agent", json!(rng.pick(AGENTS)));
        put("country_code", json!(country));
        put("currency", json!(currency));
        put("timezone", json!(timezone));
        put("source", json!(source));
        put("aff_sub", json!(aff_sub));
        put("mobile_carrier", json!(rng.pick(CARRIERS)));
        put("req_connection_speed", json!(rng.pick(SPEEDS)));
        put("status_code", json!(0));
        put("ad_campaign_id", json!(rng.below(30)));
        if rng.chance(40) {
            put("aff_sub2", json!(format!("cmp-{}", rng.below(1000))));
        }
        match kind {
            EventKind::Impression => {
                put("session_on_impression", json!(true));
            }
            EventKind::Click => {
                put("transaction_id", json!(rng.hex(30)));
                put("is_click_unique", json!(rng.chance(80)));
                put("session_on_impression", json!(false));
                put("offer_expires", json!(2_419_200));
                put("payout_group_id", json!(0));
                put("revenue_group_id", json!(0));
                put("payout_type", json!("cpa_flat"));
                put("revenue_type", json!("cpa_flat"));
                put(
                    "click_url",
                    json!(format!(
                        "http://bench.example/aff_c?offer_id={offer_id}&aff_id={affiliate_id}&source={source}&aff_sub={aff_sub}"
                    )),
                );
            }
            _ => {
                let payout_cents = 50 + rng.below(2000);
                let revenue_cents = payout_cents + rng.below(3000);
                put("transaction_id", json!(rng.hex(30)));
                put("conversion_id", json!(1_000_000 + n));
                put("payout", json!(payout_cents as f64 / 100.0));
                put("revenue", json!(revenue_cents as f64 / 100.0));
                put("payout_type", json!("cpa_flat"));
                put("revenue_type", json!("cpa_flat"));
                put("status", json!("approved"));
                put("adv_sub", json!(format!("order-{}", rng.hex(10))));
                put("customer_id", json!(format!("cust-{}", rng.hex(8))));
                put("session_ip", json!(doc_ip(rng)));
            }
        }
        Value::Object(event)
    }

    /// The events of request `r`.
    pub fn request_events(&self, plan: &Plan, r: usize) -> Vec<Value> {
        plan.events_of(r).map(|n| self.event(n)).collect()
    }
}

/// An address from the documentation ranges (RFC 5737 and RFC 3849), so
/// generated data never names a real host.
fn doc_ip(rng: &mut Rng) -> String {
    match rng.below(20) {
        0 => format!("2001:db8:{:x}::{:x}", rng.below(0xffff), rng.below(0xffff)),
        1..=6 => format!("192.0.2.{}", 1 + rng.below(254)),
        7..=13 => format!("198.51.100.{}", 1 + rng.below(254)),
        _ => format!("203.0.113.{}", 1 + rng.below(254)),
    }
}

/// Encodes one request body: a JSON array or NDJSON, optionally gzipped.
pub fn encode_body(events: &[Value], format: BodyFormat) -> Vec<u8> {
    let mut raw = Vec::with_capacity(events.len() * 700);
    if format.ndjson {
        for event in events {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut raw, event);
            raw.push(b'\n');
        }
    } else {
        let _ = serde_json::to_writer(&mut raw, events);
    }
    if !format.gzip {
        return raw;
    }
    let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// Builds every request body of a run, spread over the machine's cores.
pub fn build_bodies(generator: &Generator, plan: &Plan, format: BodyFormat) -> Vec<Bytes> {
    let requests = plan.requests();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(requests.max(1));
    let per_thread = requests.div_ceil(threads.max(1)).max(1);
    let mut bodies: Vec<Bytes> = Vec::with_capacity(requests);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..requests)
            .step_by(per_thread)
            .map(|first| {
                let last = (first + per_thread).min(requests);
                scope.spawn(move || {
                    (first..last)
                        .map(|r| {
                            Bytes::from(encode_body(&generator.request_events(plan, r), format))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(part) => bodies.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    bodies
}

/// SplitMix64: tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
}

#[cfg(test)]
mod tests;
