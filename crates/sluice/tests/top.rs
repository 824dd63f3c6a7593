//! `sluice top` in a real terminal: tmux runs it against a `sluice up`
//! (embedded queue, SQLite) while a bounded loop of POSTs sends logins; the
//! screen, read with `capture-pane`, shows non-zero event and row rates;
//! `q` ends it with exit status 0.
//!
//! tmux runs on a server of its own (`-L`), killed at the end, so no other
//! tmux session on the machine is touched.

// Test helpers fail the test the way the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Whether tmux can run here; skipped without it, unless services are required.
fn have_tmux() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("SLUICE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "tmux is missing and SLUICE_REQUIRE_SERVICES=1 (.ci/run installs it)"
        );
        eprintln!("skipped: tmux is not installed");
    }
    found
}

/// A tmux server of the test's own; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Self {
            socket: format!(
                "sluice-top-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `sluice up` in a folder of its own; killed on drop.
struct Up {
    child: Child,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts it on ports the system picks (read back from its log).
fn up(dir: &Path) -> Up {
    let child = Command::new(BIN)
        .arg("up")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INGEST_ADDR", "127.0.0.1:0")
        .env("WRITER_ADDR", "127.0.0.1:0")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("up.log")).unwrap())
        .spawn()
        .unwrap();
    Up { child }
}

/// The `host:port` after `key=http://` in the log, if there.
fn address(log: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=http://");
    let at = log.find(&prefix)? + prefix.len();
    Some(log[at..].split('/').next()?.to_owned())
}

/// The number after `label` on the screen, if any.
fn figure(screen: &str, label: &str) -> Option<f64> {
    let at = screen.find(label)? + label.len();
    screen[at..].split_whitespace().next()?.parse().ok()
}

/// Polls `check` until it gives a value, failing after `timeout` with `what`
/// and `context()`.
fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs batches of logins until `stop` or a bound (count and time).
async fn post_loop(url: String, stop: Arc<AtomicBool>, accepted: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0..100_000u64 {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            return;
        }
        let records: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    "{{\"user_id\":\"top-{round}-{i}\",\"ip\":\"10.0.{}.{}\",\"device_type\":\"ios\"}}",
                    round % 250,
                    i
                )
            })
            .collect();
        if let Ok(r) = client
            .post(&url)
            .header("content-type", "application/json")
            .body(format!("[{}]", records.join(",")))
            .send()
            .await
            && r.status().as_u16() == 202
        {
            accepted.fetch_add(50, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_live_rates_and_quits_on_q() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _up = up(dir.path());
    let log = dir.path().join("up.log");
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // Up once it says where it listens (after both listeners are bound).
    let (ingest, writer) = tokio::task::block_in_place(|| {
        poll(
            // Migrating a new SQLite database syncs often: slow on a busy disk.
            Duration::from_secs(180),
            "sluice up to listen",
            || Some((address(&up_log(), "ingest")?, address(&up_log(), "writer")?)),
            up_log,
        )
    });

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let posting = tokio::spawn(post_loop(
        format!("http://{ingest}/events"),
        Arc::clone(&stop),
        Arc::clone(&accepted),
    ));

    let tmux = Tmux::new();
    let status: PathBuf = dir.path().join("top.status");
    let command = format!(
        "{BIN} top --ingest http://{ingest} --writer http://{writer} --interval 0.5; echo $? > {}",
        status.display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let screen = tokio::task::block_in_place(|| {
        poll(
            Duration::from_secs(60),
            "non-zero events/s and rows/s on the screen",
            || {
                let screen = tmux.screen();
                let events = figure(&screen, "events/s accepted")?;
                let rows = figure(&screen, "rows/s written")?;
                (events > 0.0 && rows > 0.0).then_some(screen)
            },
            || {
                format!(
                    "accepted so far: {}\nscreen:\n{}\nsluice up:\n{}",
                    accepted.load(Ordering::Relaxed),
                    tmux.screen(),
                    up_log()
                )
            },
        )
    });
    assert!(screen.contains("ingest"), "{screen}");
    assert!(screen.contains("writer"), "{screen}");
    assert!(screen.contains("lag p50"), "{screen}");
    assert!(screen.contains("queue visible"), "{screen}");
    stop.store(true, Ordering::Relaxed);
    posting.await.unwrap();

    let out = tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(out.status.success());
    let code = tokio::task::block_in_place(|| {
        poll(
            Duration::from_secs(10),
            "sluice top to exit on q",
            || {
                std::fs::read_to_string(&status)
                    .ok()
                    .filter(|s| s.ends_with('\n'))
            },
            || tmux.screen(),
        )
    });
    assert_eq!(code.trim(), "0", "sluice top's exit status");
}

#[test]
fn without_an_address_it_says_what_to_give() {
    let out = Command::new(BIN).arg("top").env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: --ingest/--writer"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
