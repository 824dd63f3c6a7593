//! Reading a service's `/metrics` (Prometheus text) in tests, and the
//! checks every service's exposition must pass.

use std::io::Write;
use std::process::{Command, Stdio};

/// The sum of the samples of `name` (all label sets), 0 when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What every service's `/metrics` must be: `families` described with
/// `# HELP`, every metric with `# HELP` and `# TYPE`, no trace of
/// `input_value` (a value from a record or an event), and nothing for
/// `promtool check metrics` to say (skipped when promtool is absent, a
/// failure under `SLUICE_REQUIRE_SERVICES=1`).
pub fn assert_exposition_is_clean(text: &str, families: &[&str], input_value: &str) {
    for family in families {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no help for {family}:\n{text}"
        );
    }
    let missing = undescribed_metrics(text);
    assert!(missing.is_empty(), "without HELP or TYPE: {missing:?}");
    assert!(
        !text.contains(input_value),
        "a value from the input in /metrics"
    );
    let Some(findings) = promtool_check(text) else {
        return;
    };
    assert!(
        findings.is_empty(),
        "promtool check metrics: {findings}\n{text}"
    );
}

/// `promtool check metrics` over a Prometheus text exposition: `Some` of
/// its findings (empty when the text is clean), or `None` (skip) when
/// promtool is not installed — a failure under `SLUICE_REQUIRE_SERVICES=1`
/// (`.ci/run` installs it: Debian's `prometheus` package).
pub fn promtool_check(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if crate::require_services() => {
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
