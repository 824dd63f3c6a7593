//! Test support shared by the integration-test binaries of ingest and
//! writer, so the rules for services are written once: an address comes from
//! the environment; without it a test is skipped, or fails under
//! `SLUICE_REQUIRE_SERVICES=1`; waiting is polling with a deadline, never a
//! sleep standing in for a condition.

pub mod bodies;
pub mod pg_cluster;
pub mod postgres;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use sluice_core::queue::sqlite::SqliteQueue;
use sluice_core::queue::sqs::{SqsQueue, SqsSettings};

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

/// `promtool check metrics` over a Prometheus text exposition: `Some` of
/// its findings (empty when the text is clean), or `None` (skip) when
/// promtool is not installed — a failure under `SLUICE_REQUIRE_SERVICES=1`
/// (`.ci/run` installs it: Debian's `prometheus` package).
pub fn promtool_check(text: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if require_services() => {
            panic!("promtool cannot run ({e}) and SLUICE_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("run promtool");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && findings.trim().is_empty() {
        Some(String::new())
    } else {
        Some(format!("exit {}: {}", out.status, findings.trim()))
    }
}

/// Names of the metrics in a text exposition that lack a `# HELP` or a
/// `# TYPE` line.
pub fn undescribed_metrics(text: &str) -> Vec<String> {
    let described = |kind: &str, name: &str| {
        text.lines().any(|l| {
            l.strip_prefix(kind)
                .and_then(|r| r.split_whitespace().next())
                == Some(name)
        })
    };
    let mut missing: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|sample| {
            // Histogram series carry suffixes; HELP and TYPE name the family.
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|f| described("# TYPE ", f)))
                .unwrap_or(sample)
                .to_owned()
        })
        .filter(|name| !described("# HELP ", name) || !described("# TYPE ", name))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}
