//! Writer settings: environment (after `.env`), overridden by flags.
//!
//! Everything is validated here, before anything connects, so a bad setting
//! stops the writer with one line naming the variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use sluice_core::classify::{DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_REJECTED_BYTES};
use sluice_core::config::{
    ConfigError, DatabaseUrl, LogFormat, QueueUrl, env_parse, env_var, require_queue_url,
};
use sluice_core::idempotency::DEFAULT_RETENTION_HOURS;
use sluice_core::key_file;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};

/// Flags shared by every subcommand; each falls back to its variable.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// SQS queue URL, or sqlite:///path/queue.db for the embedded queue.
    #[arg(long, global = true, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// postgres://… or sqlite:///path/to/file.db
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Health and metrics listener.
    #[arg(long, global = true, env = "WRITER_ADDR")]
    pub addr: Option<String>,
    /// text or json.
    #[arg(long, global = true, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Tuning of the drain loop. Defaults suit one writer on two cores.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Concurrent long-polling receivers (`WRITER_CONSUMERS`).
    pub consumers: usize,
    /// Commit once a batch holds this many rows (`WRITER_BATCH_ROWS`).
    pub batch_rows: usize,
    /// ... or this many messages (`WRITER_BATCH_MESSAGES`).
    pub batch_messages: usize,
    /// ... or the oldest message has waited this long (`WRITER_LINGER_MS`).
    pub linger: Duration,
    /// Transactions in flight at once (`WRITER_COMMITTERS`).
    pub committers: usize,
    /// Visibility timeout asked for on receive and on each extension
    /// (`WRITER_VISIBILITY_TIMEOUT_SECS`).
    pub visibility: Duration,
    /// Long-poll wait (`WRITER_WAIT_SECS`, at most 20).
    pub wait: Duration,
    /// Records larger than this are rejected (`WRITER_MAX_RECORD_BYTES`).
    pub max_record_bytes: usize,
    /// Bound on one rejected row's payload (`WRITER_MAX_REJECTED_BYTES`).
    pub max_rejected_bytes: usize,
    /// Database connections (`WRITER_DB_CONNECTIONS`).
    pub db_connections: u32,
    /// How long shutdown may keep retrying a held batch (`WRITER_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// Receives before the dead-letter queue, set by `setup` (`WRITER_MAX_RECEIVE_COUNT`).
    pub max_receive_count: u32,
    /// Decoded rows held in memory at once (`WRITER_MAX_HELD_ROWS`).
    pub max_held_rows: usize,
    /// How long `Idempotency-Key` identities are kept
    /// (`WRITER_IDEMPOTENCY_RETENTION_HOURS`).
    pub idempotency_retention: Duration,
    /// How often the queue-depth gauges are refreshed
    /// (`WRITER_QUEUE_DEPTH_INTERVAL_SECS`).
    pub queue_depth_interval: Duration,
}

impl Tuning {
    /// [`Tuning::from_env`], with the long-poll default suited to the queue:
    /// a receive from the embedded queue costs nothing, so there it is 1 s
    /// rather than 10 — shutdown finishes a poll under way, and a short one
    /// makes Ctrl-C quick.
    pub fn from_env_for(queue: &QueueUrl) -> Result<Self, ConfigError> {
        let mut tuning = Self::from_env()?;
        if matches!(queue, QueueUrl::Sqlite(_)) && env_var("WRITER_WAIT_SECS").is_none() {
            tuning.wait = Duration::from_secs(1);
        }
        Ok(tuning)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let positive = "expected a positive whole number";
        let tuning = Self {
            consumers: env_parse("WRITER_CONSUMERS", 4, positive)?,
            batch_rows: env_parse("WRITER_BATCH_ROWS", 10_000, positive)?,
            batch_messages: env_parse("WRITER_BATCH_MESSAGES", 200, positive)?,
            linger: Duration::from_millis(env_parse("WRITER_LINGER_MS", 200, positive)?),
            committers: env_parse("WRITER_COMMITTERS", 2, positive)?,
            visibility: Duration::from_secs(env_parse(
                "WRITER_VISIBILITY_TIMEOUT_SECS",
                60,
                positive,
            )?),
            wait: Duration::from_secs(
                env_parse("WRITER_WAIT_SECS", 10u64, "expected 0 to 20 seconds")?.min(20),
            ),
            max_record_bytes: env_parse(
                "WRITER_MAX_RECORD_BYTES",
                DEFAULT_MAX_RECORD_BYTES,
                positive,
            )?,
            max_rejected_bytes: env_parse(
                "WRITER_MAX_REJECTED_BYTES",
                DEFAULT_MAX_REJECTED_BYTES,
                "expected a whole number of bytes, at least 1024",
            )?,
            db_connections: env_parse("WRITER_DB_CONNECTIONS", 4, positive)?,
            shutdown_timeout: Duration::from_secs(env_parse(
                "WRITER_SHUTDOWN_TIMEOUT_SECS",
                30,
                positive,
            )?),
            max_receive_count: env_parse("WRITER_MAX_RECEIVE_COUNT", 5, positive)?,
            max_held_rows: env_parse("WRITER_MAX_HELD_ROWS", 40_000, positive)?,
            idempotency_retention: Duration::from_secs(
                3600 * env_parse(
                    "WRITER_IDEMPOTENCY_RETENTION_HOURS",
                    DEFAULT_RETENTION_HOURS,
                    positive,
                )?
                .min(24 * 365 * 100),
            ),
            queue_depth_interval: Duration::from_secs(env_parse(
                "WRITER_QUEUE_DEPTH_INTERVAL_SECS",
                15,
                positive,
            )?),
        };
        for (name, value) in [
            ("WRITER_CONSUMERS", tuning.consumers),
            ("WRITER_BATCH_ROWS", tuning.batch_rows),
            ("WRITER_BATCH_MESSAGES", tuning.batch_messages),
            ("WRITER_COMMITTERS", tuning.committers),
            ("WRITER_DB_CONNECTIONS", tuning.db_connections as usize),
            ("WRITER_MAX_HELD_ROWS", tuning.max_held_rows),
            (
                "WRITER_QUEUE_DEPTH_INTERVAL_SECS",
                tuning.queue_depth_interval.as_secs() as usize,
            ),
            (
                "WRITER_IDEMPOTENCY_RETENTION_HOURS",
                tuning.idempotency_retention.as_secs() as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, positive));
            }
        }
        if tuning.max_rejected_bytes < 1024 {
            return Err(ConfigError::new(
                "WRITER_MAX_REJECTED_BYTES",
                "expected a whole number of bytes, at least 1024",
            ));
        }
        if tuning.visibility < Duration::from_secs(2) {
            return Err(ConfigError::new(
                "WRITER_VISIBILITY_TIMEOUT_SECS",
                "expected at least 2 seconds",
            ));
        }
        Ok(tuning)
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            consumers: 4,
            batch_rows: 10_000,
            batch_messages: 200,
            linger: Duration::from_millis(200),
            committers: 2,
            visibility: Duration::from_secs(60),
            wait: Duration::from_secs(10),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_rejected_bytes: DEFAULT_MAX_REJECTED_BYTES,
            db_connections: 4,
            shutdown_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            max_held_rows: 40_000,
            idempotency_retention: Duration::from_secs(3600 * DEFAULT_RETENTION_HOURS),
            queue_depth_interval: Duration::from_secs(15),
        }
    }
}

pub fn queue_url(args: &CommonArgs) -> Result<QueueUrl, ConfigError> {
    require_queue_url(args.queue_url.as_deref())
}

pub fn database_url(args: &CommonArgs) -> Result<DatabaseUrl, ConfigError> {
    let raw = args.database_url.as_deref().ok_or_else(|| {
        ConfigError::new(
            "DATABASE_URL",
            "is not set; expected postgres://user:pass@host:5432/db or sqlite:///path/to/file.db",
        )
    })?;
    DatabaseUrl::parse(raw)
}

pub fn listen_addr(args: &CommonArgs) -> Result<SocketAddr, ConfigError> {
    let raw = args.addr.as_deref().unwrap_or("127.0.0.1:9090");
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::new("WRITER_ADDR", "expected host:port such as 127.0.0.1:9090"))
}

pub fn log_format(args: &CommonArgs) -> Result<LogFormat, ConfigError> {
    args.log_format.as_deref().unwrap_or("text").parse()
}

/// The masker from `PII_KEY` (or `PII_KEY_FILE`), `PII_OLD_KEYS` and
/// `PII_POLICY_FILE`.
pub fn masker() -> Result<Masker, ConfigError> {
    let current = match (env_var("PII_KEY"), env_var(key_file::VARIABLE)) {
        (Some(key), _) => PiiKey::from_base64("PII_KEY", &key)?,
        (None, Some(path)) => {
            PiiKey::from_base64(key_file::VARIABLE, &key_file::read(Path::new(&path))?)?
        }
        (None, None) => {
            return Err(ConfigError::new(
                "PII_KEY",
                "is not set; expected 32 random bytes in base64; make one with `openssl rand -base64 32` (or set PII_KEY_FILE to a file holding it)",
            ));
        }
    };
    masker_with(current)
}

/// The masker around a given current key, with `PII_OLD_KEYS` and
/// `PII_POLICY_FILE` from the environment.
pub fn masker_with(current: PiiKey) -> Result<Masker, ConfigError> {
    let older = env_var("PII_OLD_KEYS")
        .map(|list| {
            list.split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| PiiKey::from_base64("PII_OLD_KEYS", k))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let policy = match env_var("PII_POLICY_FILE") {
        Some(path) => Policy::from_file(&PathBuf::from(path))?,
        None => Policy::default(),
    };
    Ok(Masker::new(Keyring::new(current, older), policy))
}
