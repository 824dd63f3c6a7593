//! Shared test helpers: services from the environment, fresh queues, queue
//! wrappers that fail or hold sends on purpose, an ingest running
//! in-process, and polling with deadlines.
//!
//! The SQS emulator comes from `SLUICE_TEST_SQS_ENDPOINT` (`scripts/test`
//! starts one). When it is missing the test is skipped — or fails, under
//! `SLUICE_REQUIRE_SERVICES=1`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use sluice_core::queue::sqs::{SqsQueue, SqsSettings};
use sluice_core::queue::{EntryFailure, Queue, QueueError, Received, SendOutcome};
use sluice_core::wire::{Item, decode_body};
use sluice_ingest::batcher::BatchSettings;
use sluice_ingest::configuration::Settings;
use sluice_ingest::startup::Application;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use sluice_testkit::{Service, eventually, metric_value, require, service};

/// The emulator's endpoint, or skip.
pub fn sqs() -> Option<String> {
    service("SLUICE_TEST_SQS_ENDPOINT")
}

/// The SQS servers the delivery suites run on: fauxqs, and moto as a second
/// opinion, so a test tuned to one server's behaviour shows up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `SLUICE_TEST_SQS_ENDPOINT`.
    Fauxqs,
    /// `SLUICE_TEST_SQS_ENDPOINT_MOTO`.
    Moto,
}

impl Server {
    /// The server's endpoint, or skip.
    pub fn endpoint(self) -> Option<String> {
        match self {
            Server::Fauxqs => sqs(),
            Server::Moto => service("SLUICE_TEST_SQS_ENDPOINT_MOTO"),
        }
    }
}

// ---------------------------------------------------------------- queues

/// A fresh queue: uniquely named on the emulator, or an embedded queue file
/// in a temporary folder.
pub struct TestQueue {
    pub queue: Arc<dyn Queue>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestQueue {
    pub async fn new(endpoint: &str) -> Self {
        Self::with_attributes(endpoint, &[]).await
    }

    pub async fn with_attributes(
        endpoint: &str,
        attributes: &[(QueueAttributeName, &str)],
    ) -> Self {
        let queue = sluice_testkit::fresh_queue(endpoint, attributes).await;
        Self {
            url: queue.url().to_owned(),
            queue: Arc::new(queue),
            _dir: None,
        }
    }

    /// An embedded queue (`QUEUE_URL=sqlite:///…`): needs no service.
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let queue = sluice_testkit::fresh_embedded_queue(dir.path());
        Self {
            url: format!("sqlite://{}", queue.path().display()),
            queue: Arc::new(queue),
            _dir: Some(dir),
        }
    }

    /// The `QUEUE_URL` of this queue.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn shared(&self) -> Arc<dyn Queue> {
        Arc::clone(&self.queue)
    }

    /// Drains `expected.len()` events (within `timeout`) and checks that
    /// each of `expected` came exactly once, by `event_id`.
    pub async fn holds_once(&self, expected: &[Value], timeout: Duration) -> Drained {
        let drained = self.drain(expected.len(), timeout).await;
        drained.assert_exactly_once("event_id", expected);
        drained
    }

    /// Receives (and deletes) messages until `events` events have arrived
    /// or `timeout` passes; then makes sure nothing more is waiting.
    pub async fn drain(&self, events: usize, timeout: Duration) -> Drained {
        let mut drained = Drained::default();
        let deadline = tokio::time::Instant::now() + timeout;
        while drained.events.len() < events && tokio::time::Instant::now() < deadline {
            self.receive_into(&mut drained, Duration::from_secs(1))
                .await;
        }
        // Anything beyond the expected count (a duplicate) shows up here.
        self.receive_into(&mut drained, Duration::ZERO).await;
        drained
    }

    async fn receive_into(&self, drained: &mut Drained, wait: Duration) {
        let messages = self
            .queue
            .receive(10, wait, Duration::from_secs(60))
            .await
            .expect("receive");
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        for m in messages {
            drained.body_sizes.push(m.body.len());
            let body = decode_body(m.body.as_bytes());
            drained.envelope_ids.push(body.envelope_id.clone());
            for item in body.items {
                match item {
                    Item::Record(r) => drained.events.push(Value::Object(r)),
                    Item::Invalid { reason, .. } => {
                        panic!("undecodable item in the queue: {reason}")
                    }
                }
            }
        }
        for chunk in handles.chunks(10) {
            self.queue.delete_batch(chunk).await.expect("delete");
        }
    }

    /// Messages visible plus in flight.
    pub async fn remaining(&self) -> u64 {
        let counts = self.queue.counts().await.expect("queue counts");
        counts.visible + counts.in_flight
    }
}

/// What was in the queue.
#[derive(Debug, Default)]
pub struct Drained {
    pub events: Vec<Value>,
    pub body_sizes: Vec<usize>,
    pub envelope_ids: Vec<Option<String>>,
}

impl Drained {
    pub fn messages(&self) -> usize {
        self.body_sizes.len()
    }

    /// How many times each value of `field` occurs.
    pub fn counts_by(&self, field: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for e in &self.events {
            *counts.entry(e[field].to_string()).or_default() += 1;
        }
        counts
    }

    /// Asserts each of `expected` (values of `field`) is here exactly once.
    pub fn assert_exactly_once(&self, field: &str, expected: &[Value]) {
        let counts = self.counts_by(field);
        assert_eq!(
            self.events.len(),
            expected.len(),
            "events in the queue: {} expected {}",
            self.events.len(),
            expected.len()
        );
        for e in expected {
            assert_eq!(
                counts.get(&e[field].to_string()).copied(),
                Some(1),
                "{field} {} in the queue exactly once",
                e[field]
            );
        }
    }
}

/// A queue whose address accepts TCP connections and never answers.
pub struct BlackHole {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self {
            url: format!("http://{addr}/000000000000/black-hole"),
            task,
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An SqsQueue for `url` (nothing need be there).
pub async fn sqs_queue_at(url: &str) -> Arc<dyn Queue> {
    let settings = SqsSettings {
        queue_url: url.to_owned(),
        endpoint_url: None,
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
    };
    Arc::new(SqsQueue::connect(&settings).await)
}

/// A URL on a port where nothing listens.
pub fn closed_port_url() -> String {
    let port = sluice_testkit::free_port();
    format!("http://127.0.0.1:{port}/000000000000/nothing-here")
}

/// How a [`Wrapped`] queue misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Report every entry of the first `n` send calls as failed (not sent).
    pub fail_first_calls: usize,
    /// Report entries at these positions as failed on the first call that has them.
    pub fail_entries_once: Vec<usize>,
    /// Report every entry of every call as failed.
    pub fail_always: bool,
    /// Refuse calls whose bodies total more than this with `BatchRequestTooLong`.
    pub max_call_bytes: Option<usize>,
    /// Pass the server's refusals on as LocalStack spells them: a failed
    /// entry's code with an `Exception` suffix (`InvalidParameterValueException`),
    /// a refused call's with the `AWS.SimpleQueueService.` prefix.
    pub localstack_spelling: bool,
}

/// A code as LocalStack spells it: per entry with an `Exception` suffix,
/// per call with the `AWS.SimpleQueueService.` prefix.
fn localstack_code(code: &str, entry: bool) -> String {
    let bare = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    if entry {
        format!("{bare}Exception")
    } else {
        format!("AWS.SimpleQueueService.{bare}")
    }
}

/// A real queue behind a wrapper that counts calls, injects failures and can
/// hold sends until released.
pub struct Wrapped {
    pub inner: Arc<dyn Queue>,
    pub faults: std::sync::Mutex<Faults>,
    pub calls: AtomicUsize,
    pub entries: AtomicUsize,
    pub too_long: AtomicUsize,
    gate: watch::Receiver<bool>,
    gate_tx: watch::Sender<bool>,
    /// Calls waiting at the gate.
    pub held: AtomicUsize,
}

/// A fresh queue on `server` (`None`: skip), and the same queue wrapped with
/// its gate closed: sends are held until the test opens it.
pub async fn gated_queue(server: Server) -> Option<(TestQueue, Arc<Wrapped>)> {
    let endpoint = server.endpoint()?;
    let queue = TestQueue::new(&endpoint).await;
    let wrapped = Wrapped::new(queue.shared(), Faults::default());
    wrapped.close_gate();
    Some((queue, wrapped))
}

impl Wrapped {
    pub fn new(inner: Arc<dyn Queue>, faults: Faults) -> Arc<Self> {
        let (gate_tx, gate) = watch::channel(true);
        Arc::new(Self {
            inner,
            faults: std::sync::Mutex::new(faults),
            calls: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            too_long: AtomicUsize::new(0),
            gate,
            gate_tx,
            held: AtomicUsize::new(0),
        })
    }

    /// Sends wait until [`Wrapped::open`].
    pub fn close_gate(&self) {
        self.gate_tx.send_replace(false);
    }

    pub fn open(&self) {
        self.gate_tx.send_replace(true);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn failed(index: usize) -> EntryFailure {
    EntryFailure {
        index,
        code: "InternalError".into(),
        sender_fault: false,
    }
}

#[async_trait]
impl Queue for Wrapped {
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError> {
        self.held.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.held.fetch_sub(1, Ordering::SeqCst);
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.entries.fetch_add(bodies.len(), Ordering::SeqCst);
        let mut fail: Vec<usize> = {
            let mut faults = self.faults.lock().unwrap();
            let total: usize = bodies.iter().map(String::len).sum();
            if faults.max_call_bytes.is_some_and(|max| total > max) {
                self.too_long.fetch_add(1, Ordering::SeqCst);
                return Err(QueueError::new(
                    Some("BatchRequestTooLong".into()),
                    "BatchRequestTooLong: Batch requests cannot be longer than the limit",
                ));
            }
            if faults.fail_always || call < faults.fail_first_calls {
                (0..bodies.len()).collect()
            } else {
                let once: Vec<usize> = faults
                    .fail_entries_once
                    .iter()
                    .copied()
                    .filter(|i| *i < bodies.len())
                    .collect();
                faults.fail_entries_once.retain(|i| *i >= bodies.len());
                once
            }
        };
        fail.sort_unstable();
        let pass: Vec<usize> = (0..bodies.len()).filter(|i| !fail.contains(i)).collect();
        let mut outcome = SendOutcome::default();
        if !pass.is_empty() {
            let sent_bodies: Vec<String> = pass.iter().map(|&i| bodies[i].clone()).collect();
            let localstack = self.faults.lock().unwrap().localstack_spelling;
            let inner = match self.inner.send_batch(&sent_bodies).await {
                Ok(mut inner) if localstack => {
                    for f in &mut inner.failed {
                        f.code = localstack_code(&f.code, true);
                    }
                    inner
                }
                Ok(inner) => inner,
                Err(e) if localstack && e.code.is_some() => {
                    let code = localstack_code(e.code.as_deref().unwrap_or_default(), false);
                    return Err(QueueError::new(Some(code), e.message));
                }
                Err(e) => return Err(e),
            };
            outcome
                .sent
                .extend(inner.sent.into_iter().map(|(i, id)| (pass[i], id)));
            outcome.failed.extend(inner.failed.into_iter().map(|mut f| {
                f.index = pass[f.index];
                f
            }));
        }
        outcome.failed.extend(fail.into_iter().map(failed));
        Ok(outcome)
    }

    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Received {
        self.inner.receive(max, wait, visibility).await
    }

    async fn delete_batch(&self, handles: &[String]) -> Result<Vec<EntryFailure>, QueueError> {
        self.inner.delete_batch(handles).await
    }

    async fn change_visibility_batch(
        &self,
        handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.inner.change_visibility_batch(handles, timeout).await
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        self.inner.depth().await
    }

    async fn counts(&self) -> Result<sluice_core::queue::QueueCounts, QueueError> {
        self.inner.counts().await
    }

    fn describe(&self) -> String {
        format!("wrapped {}", self.inner.describe())
    }
}

// ---------------------------------------------------------------- the service

/// Settings that make tests quick and bounded.
pub fn test_settings() -> Settings {
    Settings {
        request_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(10),
        retry_after: 3,
        batch: BatchSettings {
            enqueue_timeout: Duration::from_secs(5),
            ..BatchSettings::default()
        },
        ..Settings::default()
    }
}

/// What most ingest tests start from: a fresh queue on `server` (`None`,
/// skip, without it) and an ingest on it, with the test settings as `tweak`
/// leaves them.
pub async fn ingest_on(
    server: Server,
    tweak: impl FnOnce(&mut Settings),
) -> Option<(TestQueue, RunningIngest)> {
    let queue = TestQueue::new(&server.endpoint()?).await;
    let mut settings = test_settings();
    tweak(&mut settings);
    let ingest = RunningIngest::start(queue.shared(), settings).await;
    Some((queue, ingest))
}

/// As [`ingest_on`], with `faults` put between ingest and the queue: the
/// queue, the wrapper (its counters) and the ingest.
pub async fn ingest_through(
    server: Server,
    faults: Faults,
    tweak: impl FnOnce(&mut Settings),
) -> Option<(TestQueue, Arc<Wrapped>, RunningIngest)> {
    let queue = TestQueue::new(&server.endpoint()?).await;
    let wrapped = Wrapped::new(queue.shared(), faults);
    let mut settings = test_settings();
    tweak(&mut settings);
    let ingest = RunningIngest::start(wrapped.clone(), settings).await;
    Some((queue, wrapped, ingest))
}

/// An ingest running in this process.
pub struct RunningIngest {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub client: reqwest::Client,
}

impl RunningIngest {
    pub async fn start(queue: Arc<dyn Queue>, settings: Settings) -> Self {
        let app = Application::build("127.0.0.1:0".parse().unwrap(), queue, settings)
            .await
            .unwrap();
        let Service {
            addr,
            shutdown,
            handle,
        } = Service::spawn(app.local_addr(), |t| app.run(t));
        Self {
            addr,
            shutdown,
            handle,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for the service to finish.
    pub async fn stop(self) {
        let Self {
            addr,
            shutdown,
            handle,
            ..
        } = self;
        Service {
            addr,
            shutdown,
            handle,
        }
        .stop("ingest")
        .await;
    }

    /// POSTs `body` to /events with the given headers.
    pub async fn post(&self, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(self.url("/events")).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Answer::from(request.send().await.expect("POST /events")).await
    }

    /// POSTs JSON.
    /// Posts `events` as one JSON array; all of them must be accepted.
    pub async fn accepts(&self, events: &[Value]) {
        self.post_json(&Value::Array(events.to_vec()))
            .await
            .accepted(events.len());
    }

    pub async fn post_json(&self, body: &Value) -> Answer {
        self.post(body.to_string(), &[("content-type", "application/json")])
            .await
    }

    /// POSTs every body at once, each on its own connection; answers in order.
    pub async fn post_concurrently(
        &self,
        bodies: Vec<String>,
        headers: &[(&str, &str)],
    ) -> Vec<Answer> {
        let mut tasks = Vec::new();
        for body in bodies {
            let mut request = self.client.post(self.url("/events")).body(body);
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            tasks.push(tokio::spawn(async move {
                Answer::from(request.send().await.expect("POST /events")).await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::from(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// A counter's value summed over its label sets, from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.get("/metrics").await.text, name)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn from(r: reqwest::Response) -> Self {
        Self {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            text: r.text().await.unwrap(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    /// Asserts the status and the error body shape; returns the error code.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        let body = self.json();
        let obj = body.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 2, "error body has error and detail: {body}");
        let detail = body["detail"].as_str().expect("detail is a string");
        assert!(!detail.is_empty());
        body["error"]
            .as_str()
            .expect("error is a string")
            .to_owned()
    }

    /// Asserts a 202 for `n` events.
    pub fn accepted(&self, n: usize) {
        assert_eq!(self.status, 202, "status; body: {}", self.text);
        assert_eq!(self.json(), serde_json::json!({ "accepted": n }));
    }
}

/// Writes `request` on a fresh connection and reads until the server closes
/// it (send `connection: close`).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

// ---------------------------------------------------------------- data

/// `n` TUNE-like click events with unique event ids; `tag` keeps tests apart.
pub fn tune_events(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "action": "click",
                "event_id": format!("{tag}-{i:07}"),
                "offer_id": 180 + i % 40,
                "affiliate_id": 1039 + i % 13,
                "ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                "transaction_id": format!("{:030x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                "user_agent": "Go-http-client/1.1",
                "country_code": "US",
                "currency": "EUR",
                "datetime": 1_476_127_152 + i,
                "payout": 1.25,
            })
        })
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn ndjson(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Generates, for each `name => case(args)`, `fauxqs::name` and `moto::name`,
/// calling `case(Server::Fauxqs, args)` and `case(Server::Moto, args)`: one
/// body, both servers.
macro_rules! on_sqs_servers {
    ($($name:ident => $case:ident($($arg:expr),* $(,)?);)+) => {
        mod fauxqs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$case(crate::helpers::Server::Fauxqs, $($arg),*).await;
                }
            )+
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$case(crate::helpers::Server::Moto, $($arg),*).await;
                }
            )+
        }
    };
}
