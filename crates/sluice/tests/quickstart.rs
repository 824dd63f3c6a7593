//! The README's quickstart, followed literally on a clean checkout.
//!
//! The commands are read from the README's `## Quickstart` section — the
//! first `sh` block is the first terminal (its last command keeps running),
//! the second block the second terminal — and run with `sh` in a copy of the
//! tracked files, in an environment without any Sluice variable, so the
//! README cannot drift from what works. The only liberty taken: when the
//! README's ports are busy on this machine, the test moves them (through
//! INGEST_ADDR/WRITER_ADDR, which win over `.env`) and says so.

// Test helpers fail the test the way the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `sh` blocks of the README's Quickstart section, as lists of commands.
fn quickstart_blocks(readme: &str) -> Vec<Vec<String>> {
    let start = readme
        .find("\n## Quickstart")
        .expect("README has a Quickstart section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), command) => {
                let command = command.trim();
                if !command.is_empty() && !command.starts_with('#') {
                    block.push(command.to_owned());
                }
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A clean checkout: the files git would commit (tracked, and new ones not
/// ignored), as they are in the working tree — no `.env`, `data/` or `target/`.
fn clean_checkout(into: &Path) {
    let root = workspace();
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .expect("git");
    assert!(out.status.success(), "git ls-files failed");
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let from = root.join(name);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = into.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `sh -c command` in `dir`, with the environment a new terminal would have.
fn shell(dir: &Path, command: &str, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(dir);
    // No Sluice variable from the test's own environment leaks in.
    let example = std::fs::read_to_string(dir.join(".env.example")).unwrap();
    for line in example.lines() {
        let name = line.trim_start_matches('#').trim_start();
        if let Some((name, _)) = name.split_once('=')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            cmd.env_remove(name);
        }
    }
    // The build reuses the workspace's compiled dependencies.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    cmd.env("CARGO_TARGET_DIR", target);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

fn run(dir: &Path, command: &str, env: &[(String, String)]) -> String {
    let out = shell(dir, command, env).output().unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the background terminal's process group even when an assertion fails.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Background {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn interrupt(&self) {
        // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.child.id())])
            .status();
    }

    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` until `done` accepts its output, for at most `timeout`.
fn poll(
    dir: &Path,
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = run(dir, command, env);
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` never gave the expected rows; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_readme_quickstart_works_on_a_clean_checkout() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let blocks = quickstart_blocks(&readme);
    assert_eq!(
        blocks.len(),
        2,
        "expected two sh blocks (two terminals): {blocks:?}"
    );
    let (first, second) = (&blocks[0], &blocks[1]);
    assert!(!first.is_empty() && second.len() >= 2, "{blocks:?}");

    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("sluice");
    clean_checkout(&checkout);

    // The README's ports, unless something else on this machine holds them.
    let mut env = Vec::new();
    let mut second: Vec<String> = second.clone();
    if !port_is_free(8080) {
        let port = sluice_testkit::free_port();
        eprintln!("port 8080 is busy here; the quickstart runs on {port} instead");
        env.push(("INGEST_ADDR".to_owned(), format!("127.0.0.1:{port}")));
        for command in &mut second {
            *command = command.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
        }
    }
    if !port_is_free(9090) {
        env.push((
            "WRITER_ADDR".to_owned(),
            format!("127.0.0.1:{}", sluice_testkit::free_port()),
        ));
    }

    // Terminal 1: everything but the last command, then the last one left running.
    for command in &first[..first.len() - 1] {
        run(&checkout, command, &env);
    }
    let log = dir.path().join("terminal-1.log");
    let file = std::fs::File::create(&log).unwrap();
    // `exec`, so Ctrl-C reaches the command as it would in a terminal rather
    // than also killing the `sh` wrapper that stands in for the terminal.
    let mut terminal = shell(&checkout, &format!("exec {}", first.last().unwrap()), &env);
    std::os::unix::process::CommandExt::process_group(&mut terminal, 0);
    let mut up = Background {
        child: terminal
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
        log,
    };
    // The first build of the checkout can take minutes on two cores.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !up.log().contains("sluice is up") {
        if let Some(status) = up.child.try_wait().unwrap() {
            panic!(
                "`{}` exited ({status}) before it was up:\n{}",
                first.last().unwrap(),
                up.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not up after 15 minutes:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Terminal 2: post the sample, then the queries until the rows are there.
    let posted = run(&checkout, &second[0], &env);
    assert!(posted.contains(r#""accepted":8"#), "POST answered {posted}");
    let sample = std::fs::read_to_string(checkout.join("sample-data.json")).unwrap();
    let sample: serde_json::Value = serde_json::from_str(&sample).unwrap();
    let ips: Vec<String> = sample
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("ip").and_then(|v| v.as_str()).map(str::to_owned))
        .collect();
    assert!(ips.len() >= 6, "the sample has ips to look for");
    let mut outputs = Vec::new();
    for query in &second[1..] {
        let out = poll(&checkout, query, &env, Duration::from_secs(60), |out| {
            out.lines().count() >= 3
        });
        outputs.push(out);
    }
    let logins = outputs
        .iter()
        .find(|o| o.contains("sample-user-0001"))
        .expect("the logins query");
    assert_eq!(logins.lines().count(), 3, "{logins}");
    assert!(logins.contains("enc:"), "ips are encrypted: {logins}");
    let events = outputs
        .iter()
        .find(|o| o.contains("00000000-0000-4000-8000-000000000002"))
        .expect("the TUNE events query");
    assert_eq!(events.lines().count(), 3, "{events}");
    for ip in &ips {
        for out in &outputs {
            assert!(
                !out.contains(ip.as_str()),
                "a plaintext ip in the query output"
            );
        }
        assert!(!up.log().contains(ip.as_str()), "a plaintext ip in the log");
    }

    // The key was made on the first run, for its owner only.
    let key = checkout.join("data/pii.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("data/pii.key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Ctrl-C stops both, cleanly.
    up.interrupt();
    let status = up
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("still running 60 s after Ctrl-C:\n{}", up.log()));
    assert!(
        status.success(),
        "exit {status} after Ctrl-C:\n{}",
        up.log()
    );
}
