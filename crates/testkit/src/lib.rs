//! Test support shared by the tests of every crate, so the rules for
//! services are written once: an address comes from the environment; without
//! it a test is skipped, or fails under `SLUICE_REQUIRE_SERVICES=1`; waiting
//! is polling with a deadline, never a sleep standing in for a condition.
//! And so that helpers several crates' tests need (starting a binary,
//! reading `/metrics`, a tmpfs to fill, text that does not compress) are
//! written once too.

pub mod bodies;
pub mod json;
pub mod metrics;
pub mod pg_cluster;
pub mod postgres;
pub mod process;
pub mod text;
pub mod tmpfs;

pub use metrics::{metric_value, promtool_check, undescribed_metrics};

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use sluice_core::queue::sqlite::SqliteQueue;
use sluice_core::queue::sqs::{SqsQueue, SqsSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn require_services() -> bool {
    std::env::var("SLUICE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A service address from the environment, or `None` (skip) — a failure
/// under `SLUICE_REQUIRE_SERVICES=1`.
pub fn service(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if require_services() => panic!("{variable} is not set and SLUICE_REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: {variable} is not set (run the tests with scripts/test)");
            None
        }
    }
}

/// `let x = require!(expr);` returns from the test when a service is absent.
#[macro_export]
macro_rules! require {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// A port on 127.0.0.1 where nothing listens (the OS's pick, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `check` every 50 ms until it holds, failing after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `probe` every 100 ms until `done` holds for what it returns, and
/// returns that; fails after `timeout` naming `what` and the last value.
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {value:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh, uniquely named queue on the emulator at `endpoint`.
pub async fn fresh_queue(endpoint: &str, attributes: &[(QueueAttributeName, &str)]) -> SqsQueue {
    let settings = SqsSettings {
        queue_url: format!("{endpoint}/000000000000/placeholder"),
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
    };
    let client = sluice_core::queue::sqs::client(&settings).await;
    let name = format!("t-{}", uuid::Uuid::now_v7().simple());
    let mut create = client.create_queue().queue_name(&name);
    for (k, v) in attributes {
        create = create.attributes(k.clone(), *v);
    }
    let url = create
        .send()
        .await
        .expect("create queue on the emulator")
        .queue_url()
        .expect("the emulator returns the queue URL")
        .to_owned();
    SqsQueue::from_client(client, url)
}

/// A new embedded queue in its own file in `dir` (schema created, redrive
/// after the default maximum receive count).
pub fn fresh_embedded_queue(dir: &Path) -> SqliteQueue {
    let path = dir.join(format!("queue-{}.db", uuid::Uuid::now_v7().simple()));
    SqliteQueue::open(&path).expect("create an embedded queue file")
}

/// (visible, in flight) message counts of a queue.
pub async fn queue_counts(queue: &SqsQueue) -> (u64, u64) {
    let out = queue
        .client()
        .get_queue_attributes()
        .queue_url(queue.url())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |k: QueueAttributeName| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// A service (an `Application`) running on a task of this process until
/// its token is cancelled: what tests run instead of the binary when they
/// need to reach inside.
pub struct Service {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<()>,
}

impl Service {
    /// Spawns `run` (an `Application::run`) for the service listening on
    /// `addr`.
    pub fn spawn<F>(addr: SocketAddr, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run(shutdown.clone()));
        Self {
            addr,
            shutdown,
            handle,
        }
    }

    /// `http://addr` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cancels the token and waits up to 30 s for the service to return;
    /// `what` names it in the failure.
    pub async fn stop(self, what: &str) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .unwrap_or_else(|_| panic!("{what} stops within 30 s"))
            .unwrap_or_else(|e| panic!("{what} task: {e}"));
    }
}
