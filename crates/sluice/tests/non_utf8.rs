//! Settings fail closed: any variable a Sluice binary reads, given a value
//! that is not valid UTF-8, stops every binary with one line naming it and
//! exit code 2 — never read as unset (which would start ingest without its
//! token, or take a default limit).

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every binary. `cargo test --workspace` (what `scripts/test` runs) has
/// built them all beside ours; only when one is missing (`cargo test -p
/// sluice`) are they built here — a nested build resolves features on its
/// own and recompiles much of the tree, so it is not done when not needed.
fn binaries() -> Vec<PathBuf> {
    let packages = [
        ("sluice-ingest", "sluice-ingest"),
        ("sluice-writer", "sluice-writer"),
        ("sluice-ingest-lambda", "sluice-ingest-lambda"),
        ("sluice-bench", "sluice-bench"),
    ];
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let dir = ours.parent().unwrap().to_path_buf();
    let mut all = vec![ours.clone()];
    all.extend(packages.iter().map(|(_, bin)| dir.join(bin)));
    if all.iter().all(|binary| binary.exists()) {
        return all;
    }
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(workspace()).args(["build", "--quiet"]);
    for (package, _) in packages {
        build.args(["-p", package]);
    }
    build.arg("--bins");
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        build.env("CARGO_TARGET_DIR", target);
    }
    assert!(build.status().unwrap().success(), "building the binaries");
    all
}

/// What `.env.example` lists (the exact set the binaries read, by the
/// `env_example` test), plus the Lambda platform's two and `USER`.
fn variables() -> Vec<String> {
    let example = std::fs::read_to_string(workspace().join(".env.example")).unwrap();
    let mut names: Vec<String> = example
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim_start();
            let (name, _) = line.split_once('=')?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect();
    names.extend(
        [
            "USER",
            "AWS_LAMBDA_RUNTIME_API",
            "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
        ]
        .map(String::from),
    );
    names
}

#[test]
fn every_variable_not_utf8_stops_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    let variables = variables();
    assert!(variables.len() > 40, "{variables:?}");
    for binary in binaries() {
        for variable in &variables {
            // `\xffsecret`: what a shell's $'\xffsecret' gives.
            let value = OsString::from_vec(b"\xffsecret".to_vec());
            let out = Command::new(&binary)
                .env_clear()
                .env(variable, &value)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let name = binary.file_name().unwrap().to_string_lossy();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name} with {variable}: {stderr}"
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(
                lines,
                vec![format!(
                    "error: {variable}: is not valid UTF-8; every setting must be UTF-8 text"
                )],
                "{name} with {variable}"
            );
            assert!(out.stdout.is_empty(), "{name} with {variable}");
        }
    }
}
