//! `.env.example` lists every variable the binaries read, and nothing else.
//!
//! The variables are found in the sources the binaries are built from (the
//! calls that read the environment, and clap's `env = "…"`), so a new
//! setting cannot ship without its line in `.env.example`, and a removed one
//! leaves no stale line behind.

// Test helpers fail the test the way the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Read by something other than Sluice's own settings: `$USER` is only the
/// fallback name of the operator in `recover`'s audit line.
/// The Lambda function (crates/lambda) checks two of the Lambda platform's
/// own: whether it runs inside Lambda, and lambda_http's stage option.
const NOT_SETTINGS: &[&str] = &[
    "USER",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
    // glibc's own; `core::malloc` only looks whether it sets the arenas.
    "GLIBC_TUNABLES",
];
/// Read by libraries rather than by a call in our sources.
const READ_BY_LIBRARIES: &[&str] = &["RUST_LOG"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every variable read by the code of the shipped binaries: through a
/// loader's `Env` (`env.var("…")`, `env.parse("…", …)`, `Service::load(env, "…")`), a flag laid over
/// it, or the process environment itself.
fn variables_read() -> BTreeSet<String> {
    let reads = Regex::new(
        r#"(?x)
        (?: \b(?:env_var|var|var_os|secret|is_set|parse|millis|secs|bytes)\(\s*
          | \b(?:listen_addr|env_bytes|load)\(\s*\w+,\s*
          | \benv\s*=\s*
          | \bVARIABLE:\s*&str\s*=\s*
        )"([A-Z][A-Z0-9_]+)""#,
    )
    .unwrap();
    let mut files = Vec::new();
    // Test support (crates/testkit) and the load generator are not shipped.
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        if name != "testkit" && name != "bench" && krate.join("src").is_dir() {
            rust_files(&krate.join("src"), &mut files);
        }
    }
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests inside a source file are not the binary reading settings.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for cap in reads.captures_iter(text) {
            found.insert(cap[1].to_owned());
        }
    }
    for name in NOT_SETTINGS {
        found.remove(*name);
    }
    found.extend(READ_BY_LIBRARIES.iter().map(|s| (*s).to_owned()));
    found
}

/// `NAME=` lines of `.env.example`, commented out or not.
fn variables_listed() -> BTreeSet<String> {
    let line = Regex::new(r"^#?\s*([A-Z][A-Z0-9_]+)=").unwrap();
    std::fs::read_to_string(workspace().join(".env.example"))
        .expect(".env.example at the workspace root")
        .lines()
        .filter_map(|l| line.captures(l).map(|c| c[1].to_owned()))
        .collect()
}

#[test]
fn env_example_lists_every_variable_the_binaries_read() {
    let read = variables_read();
    let listed = variables_listed();
    // The scan itself must find the settings we know are read, or it proves nothing.
    for known in [
        "QUEUE_URL",
        "DATABASE_URL",
        "PII_KEY",
        "PII_KEY_FILE",
        "INGEST_ADDR",
        "WRITER_BATCH_ROWS",
    ] {
        assert!(
            read.contains(known),
            "the source scan missed {known}: {read:?}"
        );
    }
    let missing: Vec<_> = read.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "read by the binaries but not in .env.example: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&read).collect();
    assert!(
        stale.is_empty(),
        "in .env.example but read by no binary: {stale:?}"
    );
}

#[test]
fn env_example_parses_as_a_dotenv_file() {
    let vars: Vec<(String, String)> = dotenvy::from_path_iter(workspace().join(".env.example"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // The embedded defaults: nothing to install, nothing shared.
    assert_eq!(get("QUEUE_URL"), Some("sqlite://data/queue.db"));
    assert_eq!(get("DATABASE_URL"), Some("sqlite://data/sluice.db"));
    assert_eq!(
        get("PII_KEY"),
        None,
        "a PII key must never ship in .env.example"
    );
    assert!(get("PII_KEY_FILE").is_some());
}
