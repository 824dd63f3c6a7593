//! The load: pre-built bodies posted at a fixed concurrency.
//!
//! `concurrency` tasks share one keep-alive client and take the next request
//! index from a shared counter, so exactly `concurrency` requests are in flight
//! until the bodies run out. Nothing is retried: a 503 is an error that is
//! reported, like a transport failure (by kind).

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::generate::{BodyFormat, Plan};

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// What the load is sent with.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: reqwest::Url,
    pub token: Option<String>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub format: BodyFormat,
    /// Print progress to stderr every this often.
    pub progress_every: Option<Duration>,
    /// Retry 503s and transport errors for up to this long per request.
    pub retry_for: Duration,
    /// With `Some(prefix)`, request *n* carries `Idempotency-Key: prefix-r<n>`.
    pub idempotency_prefix: Option<String>,
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx: every event of the request is durable. `reported` is the
    /// `accepted` count of the body, when it parsed.
    Accepted { reported: Option<u64> },
    /// Any other HTTP status, with the `error` code of a JSON error body.
    Status { status: u16, code: Option<String> },
    /// No HTTP answer: connect, timeout, reset…
    Transport(String),
}

/// The whole load's results.
#[derive(Debug)]
pub struct LoadResult {
    /// Wall clock (µs since the Unix epoch) when the first request went out.
    pub started_at_us: i64,
    /// Wall clock (µs) when the last answer came in.
    pub finished_at_us: i64,
    pub wall: Duration,
    /// Per-request latency of every request that got an HTTP answer.
    pub latency: Histogram<u64>,
    /// Per request: when its 2xx arrived (µs since the epoch), else `None`.
    pub accepted_at_us: Vec<Option<i64>>,
    pub requests: u64,
    pub requests_accepted: u64,
    pub events_sent: u64,
    pub events_accepted: u64,
    pub bytes_sent: u64,
    /// Failed requests by status/kind, e.g. `HTTP 503 queue_unavailable`.
    pub errors: BTreeMap<String, u64>,
    /// 2xx answers that do not follow the contract (count mismatch, body).
    pub warnings: BTreeMap<String, u64>,
}

/// One worker's share of the results, merged at the end.
struct Partial {
    latency: Histogram<u64>,
    outcomes: Vec<(usize, Outcome, i64)>,
}

pub fn headers(config: &LoadConfig) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(config.format.content_type()),
    );
    if config.format.gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(token) = &config.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("--token: contains characters not allowed in a header"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

pub async fn run(
    config: &LoadConfig,
    plan: Plan,
    bodies: Arc<Vec<Bytes>>,
) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .default_headers(headers(config)?)
        .pool_max_idle_per_host(config.concurrency)
        .tcp_nodelay(true)
        .timeout(config.timeout)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let accepted_events = Arc::new(AtomicU64::new(0));

    let progress = config.progress_every.map(|every| {
        let done = done.clone();
        let accepted_events = accepted_events.clone();
        let total = bodies.len();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "  … {:>6.1} s  {}/{} requests answered, {} events accepted",
                    start.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    total,
                    accepted_events.load(Ordering::Relaxed)
                );
            }
        })
    });

    let started_at_us = now_us();
    let start = Instant::now();
    let workers = config.concurrency.min(bodies.len()).max(1);
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let client = client.clone();
        let url = config.url.clone();
        let bodies = bodies.clone();
        let next = next.clone();
        let done = done.clone();
        let accepted_events = accepted_events.clone();
        let (retry_for, prefix) = (config.retry_for, config.idempotency_prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut partial = Partial {
                latency: latency_histogram(),
                outcomes: Vec::new(),
            };
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                let events = plan.events_of(index).count() as u64;
                let sent = Instant::now();
                let key = prefix.as_ref().map(|p| format!("{p}-r{index}"));
                let outcome = post_retrying(&client, &url, body, key.as_deref(), retry_for).await;
                let elapsed = sent.elapsed();
                let at = now_us();
                if !matches!(outcome, Outcome::Transport(_)) {
                    partial
                        .latency
                        .saturating_record(elapsed.as_micros().max(1) as u64);
                }
                if matches!(outcome, Outcome::Accepted { .. }) {
                    accepted_events.fetch_add(events, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                partial.outcomes.push((index, outcome, at));
            }
            partial
        }));
    }

    let mut result = LoadResult::empty(started_at_us, bodies.len());
    for task in tasks {
        let partial = task.await?;
        result.latency.add(&partial.latency)?;
        for (index, outcome, at) in partial.outcomes {
            result.record(&plan, &bodies, index, outcome, at);
        }
    }
    result.wall = start.elapsed();
    result.finished_at_us = now_us();
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(result)
}

impl LoadResult {
    /// Nothing sent yet, for `requests` requests, the clock started at
    /// `started_at_us`.
    fn empty(started_at_us: i64, requests: usize) -> Self {
        Self {
            started_at_us,
            finished_at_us: started_at_us,
            wall: Duration::ZERO,
            latency: latency_histogram(),
            accepted_at_us: vec![None; requests],
            requests: 0,
            requests_accepted: 0,
            events_sent: 0,
            events_accepted: 0,
            bytes_sent: 0,
            errors: BTreeMap::new(),
            warnings: BTreeMap::new(),
        }
    }

    fn record(&mut self, plan: &Plan, bodies: &[Bytes], index: usize, outcome: Outcome, at: i64) {
        let events = plan.events_of(index).count() as u64;
        self.requests += 1;
        self.events_sent += events;
        self.bytes_sent += bodies.get(index).map_or(0, |b| b.len() as u64);
        match outcome {
            Outcome::Accepted { reported } => {
                self.requests_accepted += 1;
                self.events_accepted += events;
                if let Some(slot) = self.accepted_at_us.get_mut(index) {
                    *slot = Some(at);
                }
                match reported {
                    Some(n) if n == events => {}
                    Some(_) => {
                        *self
                            .warnings
                            .entry("accepted count differs from events sent".into())
                            .or_default() += 1
                    }
                    None => {
                        *self
                            .warnings
                            .entry("2xx without {\"accepted\": N}".into())
                            .or_default() += 1
                    }
                }
            }
            Outcome::Status { status, code } => {
                let key = match code {
                    Some(code) => format!("HTTP {status} {code}"),
                    None => format!("HTTP {status}"),
                };
                *self.errors.entry(key).or_default() += 1;
            }
            Outcome::Transport(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    pub fn requests_failed(&self) -> u64 {
        self.requests - self.requests_accepted
    }
}

/// Posts `body`, again on a 503 or a transport error until `retry_for` has
/// passed, waiting as `Retry-After` says (at most 5 s; 100 ms without it).
async fn post_retrying(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: &Bytes,
    key: Option<&str>,
    retry_for: Duration,
) -> Outcome {
    let deadline = Instant::now() + retry_for;
    loop {
        let (outcome, retry_after) = post(client, url, body.clone(), key).await;
        let again = matches!(
            outcome,
            Outcome::Transport(_) | Outcome::Status { status: 503, .. }
        );
        let wait = retry_after
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_secs(5));
        if !again || Instant::now() + wait > deadline {
            return outcome;
        }
        tokio::time::sleep(wait).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: Bytes,
    key: Option<&str>,
) -> (Outcome, Option<Duration>) {
    let mut request = client.post(url.clone()).body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (Outcome::Transport(transport_kind(&e)), None),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .map(Duration::from_secs);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return (Outcome::Transport(transport_kind(&e)), None),
    };
    (classify(status.as_u16(), &body), retry_after)
}

/// Turns an HTTP answer into an outcome.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let reported = json.as_ref().and_then(|j| j.get("accepted")?.as_u64());
        return Outcome::Accepted { reported };
    }
    // Only a short token-like code goes into a report key.
    let code = json
        .as_ref()
        .and_then(|j| j.get("error")?.as_str().map(str::to_owned))
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 40
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        });
    Outcome::Status { status, code }
}

/// A transport error by kind, with the OS error when there is one, e.g.
/// `connect: connection refused` or `timeout`.
fn transport_kind(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_decode() {
        "decode"
    } else if e.is_request() {
        "request"
    } else {
        "transport"
    };
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return format!("{kind}: {}", io_kind(io.kind()));
        }
        source = inner.source();
    }
    kind.to_owned()
}

fn io_kind(kind: std::io::ErrorKind) -> String {
    // ErrorKind's Debug is CamelCase ("ConnectionRefused"): make it words.
    let debug = format!("{kind:?}");
    let mut words = String::with_capacity(debug.len() + 4);
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(ch.to_ascii_lowercase());
    }
    words
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests;
