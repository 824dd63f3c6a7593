//! The real `sluice-writer` binary, run as a child process: start-up errors
//! (one line, exit 2, no panic), the whole fixture through `serve` on SQLite
//! with a SIGTERM at the end, `recover`, `migrate` and `setup`.
//!
//! Every child gets a cleared environment (only the variables a test sets)
//! and a temporary working directory, so neither the parent's `QUEUE_URL`,
//! `DATABASE_URL`, `PII_KEY`, `AWS_*` nor a stray `.env` leaks in.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub(crate) use sluice_testkit::process::{drain, sigterm};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-writer");

/// The binary with a cleared environment holding only `env`, run in `dir`.
/// The child is killed if the test drops it (a failing test leaves nothing).
pub(crate) fn writer(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    sluice_testkit::process::command(BIN, dir, env, args)
}

/// What a finished run left behind.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the binary to completion; fails when it takes longer than `limit`.
pub(crate) async fn run(
    dir: &Path,
    env: &[(&str, String)],
    args: &[&str],
    limit: Duration,
) -> Finished {
    let out = tokio::time::timeout(limit, writer(dir, env, args).output())
        .await
        .unwrap_or_else(|_| panic!("sluice-writer {args:?} did not finish within {limit:?}"))
        .expect("run sluice-writer");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Removes ANSI colour sequences (the text log format colours its fields),
/// so searches see the text an operator sees.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn non_empty_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Variables that point the binary at the emulator.
pub(crate) fn aws_env(endpoint: &str, queue_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("QUEUE_URL", queue_url.to_owned()),
    ]
}

pub(crate) fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Any other 32-byte key.
fn other_key_base64() -> String {
    STANDARD.encode([7u8; 32])
}

// ---------------------------------------------------------------- start-up errors

/// Runs `serve` with `env` and checks the contract for a bad setting: exit
/// code 2, nothing on stdout, exactly one non-empty stderr line starting with
/// `error: ` and naming `variable`, and no panic or backtrace. Returns the line.
pub(crate) async fn startup_error(env: &[(&str, String)], variable: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    // A panic would print its backtrace: make any such slip visible.
    env.push(("RUST_BACKTRACE", "1".to_owned()));
    let out = run(dir.path(), &env, &[], Duration::from_secs(60)).await;
    let context = format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status, out.stdout, out.stderr
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for a bad {variable}\n{context}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout\n{context}");
    let lines = non_empty_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "exactly one stderr line\n{context}");
    let line = lines[0];
    assert!(
        line.starts_with("error: "),
        "starts with `error: `\n{context}"
    );
    assert!(line.contains(variable), "names {variable}\n{context}");
    let lower = out.stderr.to_ascii_lowercase();
    assert!(!lower.contains("panicked"), "no panic\n{context}");
    assert!(!lower.contains("backtrace"), "no backtrace\n{context}");
    line.to_owned()
}

/// Everything valid except what a test removes or replaces; the queue is
/// unreachable, but every case below fails before connecting to it.
fn valid_serve_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PII_KEY", test_key_base64()),
        ("DATABASE_URL", sqlite_url(&dir.join("x.db"))),
        ("QUEUE_URL", "http://127.0.0.1:1/000000000000/q".to_owned()),
        ("WRITER_ADDR", "127.0.0.1:0".to_owned()),
    ]
}

fn without(env: Vec<(&'static str, String)>, name: &str) -> Vec<(&'static str, String)> {
    env.into_iter().filter(|(k, _)| *k != name).collect()
}

fn with(
    env: Vec<(&'static str, String)>,
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut env = without(env, name);
    env.push((name, value.to_owned()));
    env
}

#[tokio::test]
async fn startup_error_pii_key_missing() {
    let dir = tempfile::tempdir().unwrap();
    let line = startup_error(&without(valid_serve_env(dir.path()), "PII_KEY"), "PII_KEY").await;
    assert!(
        line.contains("openssl rand -base64 32"),
        "says how to make a key: {line}"
    );
}

#[tokio::test]
async fn startup_error_pii_key_wrong_length() {
    let dir = tempfile::tempdir().unwrap();
    let short = STANDARD.encode([1u8; 16]);
    let line = startup_error(
        &with(valid_serve_env(dir.path()), "PII_KEY", &short),
        "PII_KEY",
    )
    .await;
    assert!(!line.contains(&short), "the key is not echoed: {line}");
    let not_base64 = "this is not base64!";
    startup_error(
        &with(valid_serve_env(dir.path()), "PII_KEY", not_base64),
        "PII_KEY",
    )
    .await;
}

#[tokio::test]
async fn startup_error_malformed_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let env = with(
        valid_serve_env(dir.path()),
        "DATABASE_URL",
        "mysql://root:hunter2@h/db",
    );
    let line = startup_error(&env, "DATABASE_URL").await;
    assert!(
        !line.contains("hunter2"),
        "the password is not echoed: {line}"
    );
}

#[tokio::test]
async fn startup_error_unreachable_queue() {
    let dir = tempfile::tempdir().unwrap();
    let env = valid_serve_env(dir.path());
    assert!(env.iter().all(|(k, _)| !k.starts_with("AWS_")));
    let started = Instant::now();
    let line = startup_error(&env, "QUEUE_URL").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "gave up after {elapsed:?}, not within 30 s"
    );
    assert!(
        line.starts_with("error: QUEUE_URL"),
        "names QUEUE_URL first: {line}"
    );
    // Nothing was created before the queue check failed.
    assert!(
        !dir.path().join("x.db").exists(),
        "no database file before the queue answers"
    );
}

#[tokio::test]
async fn startup_error_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let line = startup_error(
        &with(valid_serve_env(dir.path()), "LOG_FORMAT", "xml"),
        "LOG_FORMAT",
    )
    .await;
    assert!(line.contains("json"), "says what is expected: {line}");
}

// ---------------------------------------------------------------- serve

/// Polls `check` every 50 ms until it holds or `timeout` passes.
async fn holds_within<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the child and fails with the end of its output.
async fn fail_with_logs(
    mut child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
    what: &str,
) -> ! {
    let _ = child.kill().await;
    let out = stdout.await.unwrap_or_default();
    let err = stderr.await.unwrap_or_default();
    let tail: Vec<&str> = err
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    panic!(
        "{what}\nstdout:\n{out}\nstderr (last lines):\n{}",
        tail.join("\n")
    );
}

/// The 100 fixture records, one plain JSON object per message, through the
/// binary into SQLite; then SIGTERM. Returns the database and the log output.
async fn fixture_through_binary(
    backend: Backend,
    json_logs: bool,
) -> Option<(tempfile::TempDir, TestDb, String)> {
    let queue = TestQueue::new(backend, 30).await?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let db = TestDb::Sqlite(path.clone());
    let bodies: Vec<String> = login_fixture().iter().map(Value::to_string).collect();
    assert_eq!(bodies.len(), 100);
    queue.send(&bodies).await;

    let mut env = queue.serve_env(sqlite_url(&path), &[("RUST_LOG", "debug")]);
    if json_logs {
        env.push(("LOG_FORMAT", "json".to_owned()));
    }
    let mut child = writer(dir.path(), &env, &[])
        .spawn()
        .expect("start sluice-writer");
    let pid = child.id().expect("child pid");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());

    let done = holds_within(Duration::from_secs(90), || async {
        db.count("user_logins").await == 99 && db.count("rejected_records").await == 1
    })
    .await;
    if !done {
        let what = format!(
            "timed out waiting for 99 user_logins and 1 rejected_records (have {} and {})",
            db.count("user_logins").await,
            db.count("rejected_records").await
        );
        fail_with_logs(child, stdout, stderr, &what).await;
    }
    if let Ok(Some(status)) = child.try_wait() {
        fail_with_logs(
            child,
            stdout,
            stderr,
            &format!("exited before SIGTERM: {status}"),
        )
        .await;
    }

    sigterm(pid);
    let waited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let status = match waited {
        Ok(status) => status.expect("wait for sluice-writer"),
        Err(_) => {
            fail_with_logs(child, stdout, stderr, "did not exit within 30 s of SIGTERM").await
        }
    };
    let out = stdout.await.unwrap();
    let err = stderr.await.unwrap();
    assert!(
        status.success(),
        "exit status 0 after SIGTERM, got {status}\nstderr tail:\n{}",
        err.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );

    // Nothing more or less after shutdown, and every message deleted.
    assert_eq!(db.count("user_logins").await, 99);
    assert_eq!(db.count("rejected_records").await, 1);
    assert_eq!(
        queue.remaining().await,
        0,
        "every message deleted after its commit"
    );
    let rejected = db.rejected().await;
    assert_eq!(rejected[0].reason, "unrecognized record shape");

    assert!(
        out.trim().is_empty(),
        "serve writes nothing to stdout (logs go to stderr): {out}"
    );
    if json_logs {
        let mut lines = 0;
        for line in non_empty_lines(&err) {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
            lines += 1;
        }
        assert!(lines > 0, "debug logging wrote something");
    }
    let logs = strip_ansi(&format!("{out}\n{err}"));
    assert!(
        logs.contains("shutdown signal received"),
        "logged the signal"
    );
    Some((dir, db, logs))
}

fn assert_no_fixture_pii(logs: &str) {
    let pii = fixture_pii();
    assert_eq!(pii.len(), 198, "the fixture's ips and device ids");
    let leaked: Vec<&String> = pii.iter().filter(|v| logs.contains(v.as_str())).collect();
    if let Some(first) = leaked.first() {
        let line = logs
            .lines()
            .find(|l| l.contains(first.as_str()))
            .unwrap_or_default();
        let line: String = line.chars().take(600).collect();
        panic!(
            "{} plaintext fixture values in the logs, e.g. {first} in: {line}",
            leaked.len()
        );
    }
}

async fn binary_fixture_text_logs(backend: Backend) {
    let (dir, db, logs) = require!(fixture_through_binary(backend, false).await);
    assert_no_fixture_pii(&logs);

    // A masked ip from the database recovers to one of the fixture's ips.
    let logins = db.logins().await;
    let masked = logins
        .iter()
        .find_map(|l| l.masked_ip.clone())
        .expect("a masked ip");
    assert!(masked.starts_with("enc:"), "ips are encrypted: {masked}");
    let env = operator_env();
    let out = recover(dir.path(), &env, &masked).await;
    assert!(out.status.success(), "recover exits 0: {}", out.stderr);
    let plain = out
        .stdout
        .strip_suffix('\n')
        .expect("a newline after the value");
    let ips: Vec<String> = login_fixture()
        .iter()
        .filter_map(|r| r.get("ip").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert!(
        ips.iter().any(|ip| ip == plain),
        "recovered a fixture ip, got {plain:?}"
    );
}

async fn binary_fixture_json_logs(backend: Backend) {
    let (_dir, _db, logs) = require!(fixture_through_binary(backend, true).await);
    assert_no_fixture_pii(&logs);
}

on_both_queues! {
    binary_fixture_sqlite_text_logs => binary_fixture_text_logs();
    binary_fixture_sqlite_json_logs => binary_fixture_json_logs();
}

/// `sluice-writer setup`, the `round`-th time: it exits 0 within 60 s.
pub(crate) async fn setup_succeeds(dir: &Path, env: &[(&str, String)], round: u32) -> Finished {
    let out = run(dir, env, &["setup"], Duration::from_secs(60)).await;
    assert!(
        out.status.success(),
        "setup #{round} exits 0, got {:?}: {}",
        out.status,
        out.stderr
    );
    out
}

// ---------------------------------------------------------------- recover

/// The tests' key, and `it-operator` as the user running `recover`.
fn operator_env() -> [(&'static str, String); 2] {
    [
        ("PII_KEY", test_key_base64()),
        ("USER", "it-operator".to_owned()),
    ]
}

/// `sluice-writer recover <masked>`, to completion.
async fn recover(dir: &Path, env: &[(&str, String)], masked: &str) -> Finished {
    run(dir, env, &["recover", masked], Duration::from_secs(30)).await
}

#[tokio::test]
async fn recover_prints_the_original_and_audits_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = "199.172.111.135";
    let masked = masker().encrypt(plain.as_bytes());
    let key_id = masker().keyring().current().id().to_owned();
    assert!(masked.starts_with(&format!("enc:{key_id}:")));

    let env = operator_env();
    let out = recover(dir.path(), &env, &masked).await;
    assert!(
        out.status.success(),
        "exit 0, got {:?}: {}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.stdout,
        format!("{plain}\n"),
        "stdout is the original and a newline"
    );
    let stderr = strip_ansi(&out.stderr);
    let audit = non_empty_lines(&stderr)
        .into_iter()
        .find(|l| l.contains("recover"))
        .unwrap_or_else(|| panic!("an audit line on stderr: {stderr}"))
        .to_owned();
    assert!(
        audit.contains(&key_id),
        "the audit line names key id {key_id}: {audit}"
    );
    assert!(
        audit.contains("it-operator"),
        "the audit line names the operator: {audit}"
    );
    assert!(
        !stderr.contains(plain),
        "the plaintext is not logged: {stderr}"
    );
    assert!(!stderr.contains("error"), "no error: {stderr}");

    // The operator flag wins over $USER.
    let out = run(
        dir.path(),
        &env,
        &["recover", "--operator", "flag-operator", &masked],
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success());
    assert_eq!(out.stdout, format!("{plain}\n"));
    assert!(strip_ansi(&out.stderr).contains("flag-operator"));
}

#[tokio::test]
async fn recover_with_another_key_fails_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let plain = "199.172.111.135";
    let masked = masker().encrypt(plain.as_bytes());
    let env = [
        ("PII_KEY", other_key_base64()),
        ("USER", "it-operator".to_owned()),
    ];
    let out = run(
        dir.path(),
        &env,
        &["recover", &masked],
        Duration::from_secs(30),
    )
    .await;
    let stderr = strip_ansi(&out.stderr);
    assert!(!out.status.success(), "non-zero exit: {stderr}");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    let errors: Vec<&str> = non_empty_lines(&stderr)
        .into_iter()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert_eq!(
        non_empty_lines(&stderr).last(),
        errors.first(),
        "the error line comes last: {stderr}"
    );
    assert!(!stderr.contains(plain));
    assert!(!stderr.to_ascii_lowercase().contains("panicked"));
    // The failed attempt is audited too.
    assert!(
        stderr.contains("success=false"),
        "the failure is audited: {stderr}"
    );
}

// ---------------------------------------------------------------- migrate

async fn postgres_tables(url: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

pub(crate) fn sqlite_tables(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn assert_has_tables(tables: &[String]) {
    for t in ["user_logins", "rejected_records", "sluice_receipts"] {
        assert!(
            tables.iter().any(|x| x == t),
            "table {t} exists; have {tables:?}"
        );
    }
}

async fn migrate_twice(dir: &Path, database_url: &str) {
    for round in 1..=2 {
        let env = [("DATABASE_URL", database_url.to_owned())];
        let out = run(dir, &env, &["migrate"], Duration::from_secs(60)).await;
        assert!(
            out.status.success(),
            "migrate #{round} exits 0, got {:?}: {}",
            out.status,
            out.stderr
        );
        assert!(
            !out.stderr.lines().any(|l| l.starts_with("error")),
            "migrate #{round}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn migrate_twice_postgres() {
    let admin = require!(service("SLUICE_TEST_DATABASE_URL"));
    let url = fresh_postgres(&admin).await;
    assert!(postgres_tables(&url).await.is_empty(), "a fresh database");
    let dir = tempfile::tempdir().unwrap();
    migrate_twice(dir.path(), &url).await;
    assert_has_tables(&postgres_tables(&url).await);
}

#[tokio::test]
async fn migrate_twice_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    migrate_twice(dir.path(), &sqlite_url(&path)).await;
    assert_has_tables(&sqlite_tables(&path));
}

// ---------------------------------------------------------------- setup

/// `setup` on an embedded queue: creates the file and stores the redrive
/// rule in it; a second run changes nothing but the rule it is given.
#[tokio::test]
async fn setup_twice_embedded_queue() {
    let dir = tempfile::tempdir().unwrap();
    let queue_path = dir.path().join("queue.db");
    let db_path = dir.path().join("x.db");
    for (round, max) in [(1, "3"), (2, "4")] {
        let env = [
            ("QUEUE_URL", format!("sqlite://{}", queue_path.display())),
            ("DATABASE_URL", sqlite_url(&db_path)),
            ("WRITER_MAX_RECEIVE_COUNT", max.to_owned()),
        ];
        setup_succeeds(dir.path(), &env, round).await;
        let queue = sluice_core::queue::sqlite::SqliteQueue::open(&queue_path).unwrap();
        assert_eq!(
            queue.max_receive_count().unwrap().to_string(),
            max,
            "round {round}"
        );
    }
    assert_has_tables(&sqlite_tables(&db_path));
}

// ---------------------------------------------------------------- secrets stay out of errors

#[tokio::test]
async fn malformed_env_file_is_reported_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "PII_KEY=abc def hunter2\n").unwrap();
    let out = run(dir.path(), &[], &[], Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    let lines = non_empty_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "one line: {:?}", lines);
    assert!(lines[0].starts_with("error: .env"), "{}", lines[0]);
    assert!(
        !out.stderr.contains("hunter2"),
        "the .env line leaked into the error"
    );
}

#[tokio::test]
async fn recover_of_a_non_encrypted_value_does_not_log_it() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["user:s3cretpass", "2001:db8:85a3::7334"] {
        let env = [("PII_KEY", test_key_base64())];
        let out = run(
            dir.path(),
            &env,
            &["recover", value],
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        let logs = strip_ansi(&out.stderr);
        for part in value.split(':').filter(|p| p.len() > 2) {
            assert!(
                !logs.contains(part),
                "part of the value in the logs: {logs}"
            );
        }
    }
}

/// SIGTERM while the writer is still connecting is a clean stop: exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_startup_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers: the start-up queue check hangs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut env = valid_serve_env(dir.path());
    env = with(
        env,
        "QUEUE_URL",
        &format!("http://127.0.0.1:{port}/000000000000/q"),
    );
    let mut child = writer(dir.path(), &env, &[]).spawn().unwrap();
    let (_connection, _) = tokio::time::timeout(Duration::from_secs(30), silent.accept())
        .await
        .expect("the writer connects to the queue")
        .unwrap();
    sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
