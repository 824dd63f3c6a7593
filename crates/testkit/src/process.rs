//! The services' binaries run as child processes, the way an operator runs
//! them: a cleared environment holding only what the test sets, a working
//! directory of the test's own (so neither the parent's variables nor a
//! stray `.env` leaks in), and killed when the test drops them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};
use tokio::task::JoinHandle;

/// `bin args…` in `dir` with a cleared environment holding only `env`;
/// stdout and stderr piped, killed if the test drops it.
pub fn command(
    bin: impl AsRef<Path>,
    dir: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads a child's pipe to its end in the background (so the child never
/// blocks on a full pipe); the text once it closes.
pub fn drain<R: AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Sends SIGTERM to `pid`, as an orchestrator stopping a service does.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// The JSON log lines of a child (`LOG_FORMAT=json`).
pub type LogLines = Lines<BufReader<ChildStderr>>;

/// Reads JSON log lines (each kept in `log`) until the one whose `message`
/// is `message`, within 30 s; its `addr` field — the address a service
/// started on `127.0.0.1:0` listens on.
pub async fn logged_address(lines: &mut LogLines, message: &str, log: &mut String) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a start-up log line within 30 s")
            .expect("read the log")
            .expect("the binary is still running");
        log.push_str(&line);
        log.push('\n');
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == message {
            return v["addr"].as_str().expect("an addr field").to_owned();
        }
    }
}

/// The stderr of a spawned child, as log lines.
pub fn log_lines(stderr: ChildStderr) -> LogLines {
    BufReader::new(stderr).lines()
}
