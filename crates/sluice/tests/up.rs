//! `sluice up`'s refusals: a bad setting or an unsafe key file stops it at
//! start with one line naming the variable, exit 2, and creates nothing
//! beyond what it was told to; a key others can read is never used.

// Test helpers fail the test the way the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// `sluice up` in `dir` with only `env` (no inherited Sluice variables, no .env).
fn up(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("up")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        // Ports nobody else uses, should a case get as far as listening.
        .env("INGEST_ADDR", "127.0.0.1:0")
        .env("WRITER_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .current_dir(dir);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice up did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Exit 2, one `error:` line naming `variable`, no panic; the line.
fn refused(out: &Output, variable: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("status {:?}\nstderr: {stderr}", out.status);
    assert_eq!(out.status.code(), Some(2), "{context}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line\n{context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    assert!(lines[0].contains(variable), "names {variable}\n{context}");
    assert!(!stderr.contains("panicked"), "{context}");
    lines[0].to_owned()
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused_and_not_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let key = dir.path().join("data/pii.key");
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=";
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = refused(&up(dir.path(), &[]), "PII_KEY_FILE");
    assert!(line.contains("chmod 600"), "{line}");
    assert!(!line.contains(secret), "the key in the message: {line}");
    // The key is neither used nor replaced, and nothing was set up with it.
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim(), secret);
    assert!(!dir.path().join("data/queue.db").exists());
    assert!(!dir.path().join("data/sluice.db").exists());
}

#[test]
fn bad_settings_stop_with_one_line_before_anything_is_created() {
    for (var, value) in [
        ("QUEUE_URL", "amqp://broker/queue"),
        ("QUEUE_URL", "sqlite::memory:"),
        ("DATABASE_URL", "mysql://root:hunter2@db/sluice"),
        ("INGEST_ADDR", "not-an-address"),
        ("WRITER_BATCH_ROWS", "0"),
        ("LOG_FORMAT", "xml"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let line = refused(&up(dir.path(), &[(var, value)]), var);
        assert!(
            !line.contains("hunter2"),
            "a password in the message: {line}"
        );
        // Settings are checked before the key file or any database is made.
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{var}={value} left files behind"
        );
    }
}
