//! The real `sluice-ingest` binary, run as a child process: start-up errors
//! (one line, exit 2, no panic), and a run that accepts events, refuses bad
//! ones, logs no event content, and exits 0 on SIGTERM.
//!
//! Every child gets a cleared environment (only the variables a test sets)
//! and a temporary working directory, so neither the parent's variables nor
//! a stray `.env` leaks in.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_testkit::process::{LogLines, log_lines, logged_address, sigterm};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-ingest");

/// Event content that must appear in no log line.
const SECRET_IP: &str = "203.0.113.199";
const SECRET_ID: &str = "device-7f3a9c-secret";

/// The binary with a cleared environment holding only `env`, run in `dir`.
pub(crate) fn ingest(dir: &Path, env: &[(&str, String)]) -> Command {
    sluice_testkit::process::command(BIN, dir, env, &[])
}

/// A binary started on `127.0.0.1:0` with JSON logs, up and listening.
pub(crate) struct Started {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub stderr: LogLines,
    /// The log lines read so far.
    pub logs: String,
    /// The address from the start-up log line.
    pub addr: String,
}

/// Starts the binary with `env` (plus a random port and JSON logs) in `dir`
/// and waits for its start-up log line.
pub(crate) async fn start_ingest(dir: &Path, env: &[(&str, String)]) -> Started {
    let mut env = env.to_vec();
    env.extend([
        ("INGEST_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ]);
    let mut child = ingest(dir, &env).spawn().unwrap();
    let pid = child.id().unwrap();
    let mut stderr = log_lines(child.stderr.take().unwrap());
    let mut logs = String::new();
    let addr = logged_address(&mut stderr, "ingest listening", &mut logs).await;
    Started {
        child,
        pid,
        stderr,
        logs,
        addr,
    }
}

/// Runs with `env` and checks the contract for a bad setting: exit 2,
/// nothing on stdout, one stderr line `error: …` naming `variable`, no panic.
async fn startup_error(env: &[(&str, String)], variable: &str) -> String {
    let dir = tempfile_dir();
    let mut env = env.to_vec();
    env.push(("RUST_BACKTRACE", "1".to_owned()));
    let out = tokio::time::timeout(Duration::from_secs(60), ingest(&dir, &env).output())
        .await
        .expect("exits within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for {variable}\n{context}"
    );
    assert!(stdout.is_empty(), "nothing on stdout\n{context}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one stderr line\n{context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    assert!(lines[0].contains(variable), "names {variable}\n{context}");
    assert!(!stderr.to_lowercase().contains("panicked"), "{context}");
    let _ = std::fs::remove_dir_all(&dir);
    lines[0].to_owned()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-ingest-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        ("QUEUE_URL", closed_port_url()),
        ("INGEST_ADDR", "127.0.0.1:0".to_owned()),
    ]
}

fn with(var: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> =
        valid_env().into_iter().filter(|(k, _)| *k != var).collect();
    env.push((var, value.to_owned()));
    env
}

#[tokio::test]
async fn bad_settings_stop_with_one_line() {
    // QUEUE_URL missing.
    let without_queue: Vec<_> = valid_env()
        .into_iter()
        .filter(|(k, _)| *k != "QUEUE_URL")
        .collect();
    startup_error(&without_queue, "QUEUE_URL").await;
    // Each variable with a value it refuses.
    for (variable, value) in [
        ("QUEUE_URL", "not-a-url"),
        ("INGEST_ADDR", "localhost"),
        ("INGEST_MAX_BODY", "ten megabytes"),
        ("INGEST_MAX_BODY", "0"),
        ("INGEST_MAX_MESSAGE_BYTES", "100"),
        ("INGEST_MAX_MESSAGE_BYTES", "2MiB"),
        ("INGEST_LINGER_MS", "-1"),
        ("QUEUE_MAX_BYTES", "lots"),
        ("QUEUE_MIN_FREE_BYTES", "1.5MiB"),
        ("INGEST_ENQUEUE_TIMEOUT_MS", "soon"),
        ("INGEST_REQUEST_TIMEOUT_SECS", "0"),
        ("INGEST_SEND_CONCURRENCY", "0"),
        ("LOG_FORMAT", "xml"),
        ("MALLOC_ARENA_MAX", "two"),
        ("MALLOC_ARENA_MAX", "0"),
        // glibc reads neither, and would silently run on its default.
        ("MALLOC_ARENA_MAX", "2 "),
        ("MALLOC_ARENA_MAX", "02"),
    ] {
        startup_error(&with(variable, value), variable).await;
    }
    // The queue is checked at start.
    let line = startup_error(&valid_env(), "QUEUE_URL").await;
    assert!(line.contains("cannot reach the queue"), "{line}");
}

/// glibc has read its arenas before `.env` is: there the setting would do
/// nothing, silently.
#[tokio::test]
async fn malloc_arena_max_in_the_env_file_is_refused() {
    let dir = tempfile_dir();
    std::fs::write(dir.join(".env"), "MALLOC_ARENA_MAX=4\n").unwrap();
    let out = ingest(&dir, &valid_env()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: MALLOC_ARENA_MAX: "),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_malformed_env_file_is_reported_without_its_content() {
    let dir = tempfile_dir();
    std::fs::write(
        dir.join(".env"),
        "INGEST_TOKEN=abc\nthis line is broken secret-value\n",
    )
    .unwrap();
    let out = ingest(&dir, &valid_env()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: .env:"), "{stderr}");
    assert!(!stderr.contains("secret-value"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Accepts events, refuses bad bodies, never logs event content, and exits 0
// on SIGTERM with its events in the queue — on SQS (fauxqs and moto) and on
// the embedded queue.
sluice_testkit::cases! {
    #[tokio::test]
    serves_logs_no_content_and_stops_on_sigterm => serves_sqs_and_stops(Server::Fauxqs);
    serves_moto_and_stops_on_sigterm => serves_sqs_and_stops(Server::Moto);
}

async fn serves_sqs_and_stops(server: Server) {
    let endpoint = require!(server.endpoint());
    let queue = TestQueue::new(&endpoint).await;
    let env = vec![
        ("QUEUE_URL", queue.url().to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ];
    serves_logs_no_content_and_stops(queue, env).await;
}

#[tokio::test]
async fn serves_an_embedded_queue_and_stops_on_sigterm() {
    let queue = TestQueue::embedded();
    let env = vec![("QUEUE_URL", queue.url().to_owned())];
    serves_logs_no_content_and_stops(queue, env).await;
}

async fn serves_logs_no_content_and_stops(queue: TestQueue, mut env: Vec<(&'static str, String)>) {
    let dir = tempfile_dir();
    env.extend([
        ("INGEST_TOKEN", "tok-123".to_owned()),
        ("RUST_LOG", "info,sluice_ingest=trace".to_owned()),
    ]);
    let Started {
        mut child,
        pid,
        mut stderr,
        mut logs,
        addr,
    } = start_ingest(&dir, &env).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/events");
    let post = |body: String, ct: &'static str| {
        client
            .post(&url)
            .header("authorization", "Bearer tok-123")
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"event_id": format!("bin-{i}"), "action": "click", "ip": SECRET_IP, "device_id": SECRET_ID}))
        .collect();
    let r = post(Value::Array(events.clone()).to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Bad bodies that carry the same content.
    for (body, ct) in [
        (
            format!("[{{\"ip\": \"{SECRET_IP}\"}}, \"{SECRET_ID}\"]"),
            "application/json",
        ),
        (
            format!("{{\"ip\": \"{SECRET_IP}\", \"device_id\": {SECRET_ID}}}"),
            "application/json",
        ),
        (
            format!("{{\"ip\": \"{SECRET_IP}\"}}\n\"{SECRET_ID}\""),
            "application/x-ndjson",
        ),
    ] {
        let r = post(body, ct).await.unwrap();
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(SECRET_IP) && !text.contains(SECRET_ID),
            "{text}"
        );
    }
    let r = client
        .post(&url)
        .body(format!("{{\"ip\": \"{SECRET_IP}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    sigterm(pid);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    while let Ok(Some(line)) = stderr.next_line().await {
        logs.push_str(&line);
        logs.push('\n');
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status}\n{logs}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    assert!(logs.contains("shutdown signal received"), "{logs}");
    assert!(
        logs.contains("request refused"),
        "debug lines were written: {logs}"
    );
    assert!(
        !logs.contains(SECRET_IP),
        "event content in the logs:\n{logs}"
    );
    assert!(
        !logs.contains(SECRET_ID),
        "event content in the logs:\n{logs}"
    );
    assert!(!logs.contains("tok-123"), "the token in the logs:\n{logs}");
    queue
        .drain(40, Duration::from_secs(10))
        .await
        .assert_exactly_once("event_id", &events);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `core::malloc`: the binary executes itself once with two glibc arenas,
/// keeps an operator's own value, and never executes itself twice (a
/// binary whose `MALLOC_ARENA_MAX` glibc removes would otherwise loop).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn runs_on_two_malloc_arenas_unless_told_otherwise() {
    for (given, expected) in [
        (vec![], Some("2")),
        (vec![("MALLOC_ARENA_MAX", "3".to_owned())], Some("3")),
        (vec![("SLUICE_MALLOC_REEXECUTED", "1".to_owned())], None),
    ] {
        let queue = TestQueue::embedded();
        let dir = tempfile_dir();
        let mut env = given.clone();
        env.push(("QUEUE_URL", queue.url().to_owned()));
        let Started {
            mut child,
            pid,
            stderr: _stderr,
            logs,
            ..
        } = start_ingest(&dir, &env).await;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let arenas = environ
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"MALLOC_ARENA_MAX="))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(arenas.as_deref(), expected, "given {given:?}");
        sigterm(pid);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("stops within 30 s")
            .unwrap();
        assert!(status.success(), "{status:?}\n{logs}");
    }
}
