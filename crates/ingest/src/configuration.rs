//! Ingest settings: environment (after `.env`), overridden by flags.
//!
//! Everything is validated here, before anything connects, so a bad setting
//! stops the service with one line naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use sluice_core::config::{
    ConfigError, LogFormat, QueueUrl, env_parse, env_var, require_queue_url,
};

use crate::auth::Token;
use crate::batcher::BatchSettings;
use crate::pack::MIN_MESSAGE_BYTES;
use sluice_core::queue::MAX_MESSAGE_BYTES;

/// Flags; each falls back to its variable.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// SQS queue URL, or sqlite:///path/queue.db for the embedded queue.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Listen address, host:port.
    #[arg(long, env = "INGEST_ADDR")]
    pub addr: Option<String>,
    /// text or json.
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Everything but the listen address and the queue.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `INGEST_TOKEN`: when set, `POST /events` needs `Authorization: Bearer <token>`.
    pub token: Option<Token>,
    /// `INGEST_MAX_BODY`: request body bytes on the wire.
    pub max_body: usize,
    /// `INGEST_MAX_DECODED_BODY`: request body bytes after decompression.
    pub max_decoded_body: usize,
    /// `INGEST_REQUEST_TIMEOUT_SECS`: to receive a request's headers, and its body.
    pub request_timeout: Duration,
    /// `INGEST_SHUTDOWN_TIMEOUT_SECS`: how long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// `INGEST_RETRY_AFTER_SECS`: the `Retry-After` of a 503.
    pub retry_after: u64,
    /// `INGEST_MAX_BUFFERED_BYTES`: request body bytes, on the wire and
    /// decompressed, held by all requests at once.
    pub max_buffered: usize,
    /// `INGEST_MAX_CONNECTIONS`: open connections; more wait to be accepted.
    pub max_connections: usize,
    pub batch: BatchSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token: None,
            max_body: 10 * 1024 * 1024,
            max_decoded_body: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            retry_after: 5,
            max_buffered: 80 * 1024 * 1024,
            max_connections: 1024,
            batch: BatchSettings::default(),
        }
    }
}

const POSITIVE: &str = "expected a positive whole number";
const SIZE: &str = "expected a size in bytes, such as 10485760 or 10MiB";

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Settings::default();
        let batch = BatchSettings {
            max_message_bytes: env_bytes("INGEST_MAX_MESSAGE_BYTES", d.batch.max_message_bytes)?,
            linger: Duration::from_millis(env_parse(
                "INGEST_LINGER_MS",
                d.batch.linger.as_millis() as u64,
                "expected a whole number of milliseconds",
            )?),
            max_linger: Duration::from_millis(env_parse(
                "INGEST_MAX_LINGER_MS",
                d.batch.max_linger.as_millis() as u64,
                "expected a whole number of milliseconds",
            )?),
            enqueue_timeout: Duration::from_millis(env_parse(
                "INGEST_ENQUEUE_TIMEOUT_MS",
                d.batch.enqueue_timeout.as_millis() as u64,
                "expected a whole number of milliseconds",
            )?),
            flush_concurrency: env_parse(
                "INGEST_FLUSH_CONCURRENCY",
                d.batch.flush_concurrency,
                POSITIVE,
            )?,
            send_concurrency: env_parse(
                "INGEST_SEND_CONCURRENCY",
                d.batch.send_concurrency,
                POSITIVE,
            )?,
            max_pending_bytes: env_bytes("INGEST_MAX_PENDING_BYTES", d.batch.max_pending_bytes)?,
        };
        let settings = Self {
            token: env_var("INGEST_TOKEN").map(|t| Token::new(t.trim())),
            max_body: env_bytes("INGEST_MAX_BODY", d.max_body)?,
            max_decoded_body: env_bytes("INGEST_MAX_DECODED_BODY", d.max_decoded_body)?,
            request_timeout: Duration::from_secs(env_parse(
                "INGEST_REQUEST_TIMEOUT_SECS",
                d.request_timeout.as_secs(),
                POSITIVE,
            )?),
            shutdown_timeout: Duration::from_secs(env_parse(
                "INGEST_SHUTDOWN_TIMEOUT_SECS",
                d.shutdown_timeout.as_secs(),
                POSITIVE,
            )?),
            retry_after: env_parse("INGEST_RETRY_AFTER_SECS", d.retry_after, POSITIVE)?,
            max_buffered: env_bytes("INGEST_MAX_BUFFERED_BYTES", d.max_buffered)?,
            max_connections: env_parse("INGEST_MAX_CONNECTIONS", d.max_connections, POSITIVE)?,
            batch,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.batch;
        for (name, value) in [
            ("INGEST_MAX_BODY", self.max_body),
            ("INGEST_MAX_DECODED_BODY", self.max_decoded_body),
            (
                "INGEST_REQUEST_TIMEOUT_SECS",
                self.request_timeout.as_secs() as usize,
            ),
            (
                "INGEST_SHUTDOWN_TIMEOUT_SECS",
                self.shutdown_timeout.as_secs() as usize,
            ),
            ("INGEST_RETRY_AFTER_SECS", self.retry_after as usize),
            (
                "INGEST_ENQUEUE_TIMEOUT_MS",
                b.enqueue_timeout.as_millis() as usize,
            ),
            ("INGEST_FLUSH_CONCURRENCY", b.flush_concurrency),
            ("INGEST_SEND_CONCURRENCY", b.send_concurrency),
            ("INGEST_MAX_PENDING_BYTES", b.max_pending_bytes),
            ("INGEST_MAX_CONNECTIONS", self.max_connections),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, POSITIVE));
            }
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&b.max_message_bytes) {
            return Err(ConfigError::new(
                "INGEST_MAX_MESSAGE_BYTES",
                format!(
                    "expected {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES} bytes (SQS's message size range)"
                ),
            ));
        }
        if self.max_buffered < self.max_body.saturating_add(self.max_decoded_body) {
            return Err(ConfigError::new(
                "INGEST_MAX_BUFFERED_BYTES",
                "expected at least INGEST_MAX_BODY + INGEST_MAX_DECODED_BODY, so that any one request fits",
            ));
        }
        if b.max_linger < b.linger {
            return Err(ConfigError::new(
                "INGEST_MAX_LINGER_MS",
                "expected at least INGEST_LINGER_MS",
            ));
        }
        Ok(())
    }
}

/// A size in bytes: a whole number, optionally with KiB, MiB or GiB.
pub fn parse_bytes(raw: &str) -> Option<usize> {
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let number: usize = number.parse().ok()?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1024,
        "mib" | "m" => 1024 * 1024,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

fn env_bytes(name: &'static str, default: usize) -> Result<usize, ConfigError> {
    match env_var(name) {
        None => Ok(default),
        Some(v) => parse_bytes(&v).ok_or_else(|| ConfigError::new(name, SIZE)),
    }
}

pub fn queue_url(args: &CommonArgs) -> Result<QueueUrl, ConfigError> {
    require_queue_url(args.queue_url.as_deref())
}

pub fn listen_addr(args: &CommonArgs) -> Result<SocketAddr, ConfigError> {
    let raw = args.addr.as_deref().unwrap_or("127.0.0.1:8080");
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::new("INGEST_ADDR", "expected host:port such as 127.0.0.1:8080"))
}

pub fn log_format(args: &CommonArgs) -> Result<LogFormat, ConfigError> {
    args.log_format.as_deref().unwrap_or("text").parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("10485760"), Some(10 * 1024 * 1024));
        assert_eq!(parse_bytes("10MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_bytes(" 256 KiB "), Some(256 * 1024));
        assert_eq!(parse_bytes("1g"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_bytes("ten"), None);
        assert_eq!(parse_bytes("-5"), None);
        assert_eq!(parse_bytes("5 MB"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999999999999GiB"), None);
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }
}
