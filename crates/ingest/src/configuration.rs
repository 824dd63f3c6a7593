//! Ingest settings: one loader, [`Config::load`], over an [`Env`] (the
//! process environment after `.env`, with the flags laid over it).
//!
//! Everything is validated here, before anything connects, so a bad setting
//! stops the service with one line naming the variable. Defaults are written
//! once, in [`Settings::default`]; the loader falls back to them. Tests build
//! a [`Settings`] directly, or load one from [`Env::from_pairs`].

use std::time::Duration;

use secrecy::ExposeSecret;
use sluice_core::config::{self, ConfigError, Env, Service, require_queue_url};
use sluice_core::queue::QueueSettings;

use crate::auth::Token;
use crate::batcher::BatchSettings;
use crate::pack::MIN_MESSAGE_BYTES;
use sluice_core::queue::MAX_MESSAGE_BYTES;

/// `INGEST_ADDR`'s default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Everything `sluice-ingest` reads: `LOG_FORMAT` and `INGEST_ADDR`, the
/// queue accepted events go to (and how to reach it), and how the service
/// behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: Service,
    pub queue: QueueSettings,
    pub settings: Settings,
}

impl Config {
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: Service::load(env, "INGEST_ADDR", DEFAULT_ADDR)?,
            settings: Settings::load(env)?,
            queue: QueueSettings::load(env, require_queue_url(config::queue_url(env)?.as_ref())?)?,
        })
    }
}

/// How the service behaves: everything but where it listens and the queue.
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
const MILLIS: &str = "expected a whole number of milliseconds";

impl Settings {
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let d = Settings::default();
        let batch = BatchSettings {
            max_message_bytes: env.bytes("INGEST_MAX_MESSAGE_BYTES", d.batch.max_message_bytes)?,
            linger: env.millis("INGEST_LINGER_MS", d.batch.linger, MILLIS)?,
            max_linger: env.millis("INGEST_MAX_LINGER_MS", d.batch.max_linger, MILLIS)?,
            enqueue_timeout: env.millis(
                "INGEST_ENQUEUE_TIMEOUT_MS",
                d.batch.enqueue_timeout,
                MILLIS,
            )?,
            flush_concurrency: env.parse(
                "INGEST_FLUSH_CONCURRENCY",
                d.batch.flush_concurrency,
                POSITIVE,
            )?,
            send_concurrency: env.parse(
                "INGEST_SEND_CONCURRENCY",
                d.batch.send_concurrency,
                POSITIVE,
            )?,
            max_pending_bytes: env.bytes("INGEST_MAX_PENDING_BYTES", d.batch.max_pending_bytes)?,
        };
        let settings = Self {
            token: env
                .secret("INGEST_TOKEN")
                .map(|t| Token::new(t.expose_secret())),
            max_body: env.bytes("INGEST_MAX_BODY", d.max_body)?,
            max_decoded_body: env.bytes("INGEST_MAX_DECODED_BODY", d.max_decoded_body)?,
            request_timeout: env.secs(
                "INGEST_REQUEST_TIMEOUT_SECS",
                d.request_timeout,
                POSITIVE,
            )?,
            shutdown_timeout: env.secs(
                "INGEST_SHUTDOWN_TIMEOUT_SECS",
                d.shutdown_timeout,
                POSITIVE,
            )?,
            retry_after: env.parse("INGEST_RETRY_AFTER_SECS", d.retry_after, POSITIVE)?,
            max_buffered: env.bytes("INGEST_MAX_BUFFERED_BYTES", d.max_buffered)?,
            max_connections: env.parse("INGEST_MAX_CONNECTIONS", d.max_connections, POSITIVE)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::config::QueueUrl;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn loads_from_a_list_without_the_process_environment() {
        let config = load(&[
            ("QUEUE_URL", "sqlite:///tmp/q.db"),
            ("INGEST_TOKEN", " s3cret "),
            ("INGEST_MAX_BODY", "1MiB"),
            ("INGEST_MAX_DECODED_BODY", "2MiB"),
            ("INGEST_LINGER_MS", "7"),
        ])
        .unwrap();
        assert_eq!(config.queue.url(), QueueUrl::Sqlite("/tmp/q.db".into()));
        assert_eq!(config.service.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(config.settings.max_body, 1024 * 1024);
        assert_eq!(config.settings.batch.linger, Duration::from_millis(7));
        assert!(config.settings.token.is_some());
        assert!(!format!("{config:?}").contains("s3cret"));
        let d = Settings::default();
        assert_eq!(config.settings.retry_after, d.retry_after);
        assert_eq!(config.settings.batch.max_linger, d.batch.max_linger);
    }

    #[test]
    fn refuses_in_one_line_naming_the_variable() {
        let queue = ("QUEUE_URL", "sqlite:q.db");
        for (pairs, variable) in [
            (vec![], "QUEUE_URL"),
            (vec![queue, ("INGEST_ADDR", "nowhere")], "INGEST_ADDR"),
            (vec![queue, ("INGEST_MAX_BODY", "5 MB")], "INGEST_MAX_BODY"),
            (
                vec![queue, ("INGEST_SEND_CONCURRENCY", "0")],
                "INGEST_SEND_CONCURRENCY",
            ),
            (
                vec![
                    queue,
                    ("INGEST_MAX_LINGER_MS", "1"),
                    ("INGEST_LINGER_MS", "2"),
                ],
                "INGEST_MAX_LINGER_MS",
            ),
            (vec![queue, ("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![queue, ("QUEUE_MAX_BYTES", "lots")], "QUEUE_MAX_BYTES"),
        ] {
            let err = load(&pairs).unwrap_err();
            assert_eq!(err.variable, variable, "{pairs:?}");
            assert!(!err.to_string().contains('\n'));
        }
    }
}
