//! Command-line flags, their defaults and their validation.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Which records a run generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// TUNE clicks, impressions and conversions (→ `tune_events`).
    Tune,
    /// User-login records (→ `user_logins`).
    Login,
    /// Three TUNE events to one login, interleaved in the same requests.
    Mixed,
}

impl Kind {
    /// How reports name the events of this kind.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tune => "TUNE",
            Kind::Login => "login",
            Kind::Mixed => "mixed TUNE/login",
        }
    }
}

/// Posts generated events to sluice-ingest at a fixed concurrency, reports
/// throughput and latency, and (with a database URL) waits until every
/// accepted event is in the database, reporting end-to-end latency, missing
/// and duplicated events.
#[derive(Debug, Parser)]
#[command(name = "sluice-bench", version, about, long_about = None)]
pub struct Args {
    /// The ingest endpoint (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080/events")]
    pub url: String,

    /// Bearer token sent in `Authorization`.
    #[arg(long, env = "INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Requests in flight at once (one shared keep-alive client).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// Events per POST.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub events_per_request: u64,

    /// Events to send in the whole run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub total: u64,

    /// What to generate.
    #[arg(long, value_enum, default_value_t = Kind::Tune)]
    pub kind: Kind,

    /// Compress each body (`Content-Encoding: gzip`).
    #[arg(long)]
    pub gzip: bool,

    /// Send NDJSON (`application/x-ndjson`) instead of a JSON array.
    #[arg(long)]
    pub ndjson: bool,

    /// Where the writer loads (postgres://… or sqlite:///path); enables the
    /// end-to-end check.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Skip the database check even when DATABASE_URL is set.
    #[arg(long)]
    pub no_verify: bool,

    /// How long to wait for accepted events to appear in the database.
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,

    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,

    /// Prefix of every generated id (`<run-id>-<n>`): letters, digits, `_`
    /// and `.`, at most 64. Default: 20 hex digits from a fresh UUID v7
    /// (its millisecond time, then random bits).
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// Retry a request that got a 503 or no HTTP answer, with the same body
    /// (as a real pusher does), honouring `Retry-After` (at most 5 s), for
    /// up to this many seconds per request; 0: no retries.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub retry: u64,

    /// Send an `Idempotency-Key` with each request (`<run-id>-r<n>`, the same
    /// on every retry of it), so retries are stored once.
    #[arg(long)]
    pub idempotency_keys: bool,

    /// Print the summary as one JSON object on stdout (the human report goes
    /// to stderr).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_secs)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The database URL to verify against, unless verification is off.
    pub fn verify_url(&self) -> Option<&str> {
        if self.no_verify {
            return None;
        }
        self.database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// The bearer token, when one is set and not blank.
    pub fn bearer(&self) -> Option<&str> {
        self.token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

/// A fresh run id from a UUID v7: its 12 hex digits of millisecond time,
/// then its last 8 hex digits, which are random (the digits in between hold
/// the generator's per-millisecond counter). Ids of successive runs sort by
/// time and do not collide.
pub fn fresh_run_id() -> String {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    format!("{}{}", &uuid[..12], &uuid[24..])
}

/// A run id may not contain `-`: ids are `<run-id>-<n>`, so with no dash in
/// the run id, `<run-id>-%` matches this run's ids and no other run's.
pub fn parse_run_id(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("expected 1 to 64 letters, digits, '_' or '.' (no '-': ids are <run-id>-<n>)".into())
    }
}

/// The ingest URL must be plain `http://`: this tool is built without TLS.
pub fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("--url: {e}"))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" => Err(
            "--url: https is not supported (sluice-bench speaks plain HTTP; \
             point it at the ingest service directly)"
                .into(),
        ),
        other => Err(format!(
            "--url: unsupported scheme '{other}'; expected http://"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["sluice-bench"]).unwrap();
        assert_eq!(args.url, "http://127.0.0.1:8080/events");
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.events_per_request, 100);
        assert_eq!(args.total, 100_000);
        assert_eq!(args.kind, Kind::Tune);
        assert_eq!(args.wait_secs, 120);
        assert!(!args.gzip && !args.ndjson && !args.json);
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "sluice-bench",
            "--kind",
            "mixed",
            "--gzip",
            "--ndjson",
            "--total",
            "10",
            "--run-id",
            "nightly_1.a",
            "--database-url",
            "sqlite:///tmp/x.db",
            "--token",
            " ",
        ])
        .unwrap();
        assert_eq!(args.kind, Kind::Mixed);
        assert_eq!(args.run_id.as_deref(), Some("nightly_1.a"));
        assert_eq!(args.verify_url(), Some("sqlite:///tmp/x.db"));
        assert_eq!(args.bearer(), None, "a blank token is no token");
    }

    #[test]
    fn no_verify_wins_over_database_url() {
        let args = Args::try_parse_from([
            "sluice-bench",
            "--database-url",
            "sqlite:///tmp/x.db",
            "--no-verify",
        ])
        .unwrap();
        assert_eq!(args.verify_url(), None);
    }

    #[test]
    fn run_id_rules() {
        let long = "x".repeat(65);
        for (raw, valid) in [
            ("abc123", true),
            ("a-b", false),
            ("", false),
            ("a%", false),
            (&long, false),
        ] {
            assert_eq!(parse_run_id(raw).is_ok(), valid, "{raw:?}");
        }
        let fresh = fresh_run_id();
        assert_eq!(fresh.len(), 20);
        assert!(parse_run_id(&fresh).is_ok());
        assert_ne!(fresh, fresh_run_id());
    }

    #[test]
    fn zero_is_rejected() {
        assert!(Args::try_parse_from(["sluice-bench", "--concurrency", "0"]).is_err());
        assert!(Args::try_parse_from(["sluice-bench", "--total", "0"]).is_err());
        assert!(Args::try_parse_from(["sluice-bench", "--events-per-request", "0"]).is_err());
    }

    #[test]
    fn url_rules() {
        for (raw, valid) in [
            ("http://127.0.0.1:8080/events", true),
            ("https://example.com/events", false),
            ("ftp://x/", false),
            ("not a url", false),
        ] {
            assert_eq!(parse_url(raw).is_ok(), valid, "{raw}");
        }
    }
}
