//! Writer settings: one loader, [`Config::load`], over an [`Env`] (the
//! process environment after `.env`, with the flags laid over it).
//!
//! Everything set is validated here, before anything connects, so a bad
//! setting stops the writer with one line naming the variable; what a
//! subcommand needs but is unset (`QUEUE_URL`, `DATABASE_URL`, the PII key)
//! is refused by the subcommand that needs it, so `migrate` runs without a
//! queue or a key. Defaults are written once, in [`Tuning::default`]. Files
//! (the key file, the policy) are read when the masker is made: `sluice up`
//! creates the key file after loading.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sluice_core::classify::{DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_REJECTED_BYTES};
use sluice_core::config::{
    self, ConfigError, DatabaseUrl, Env, QueueUrl, Service, require_queue_url,
};
use sluice_core::idempotency::DEFAULT_RETENTION_HOURS;
use sluice_core::key_file;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::queue::QueueSettings;
pub use sluice_core::queue::sqlite::DEFAULT_MAX_RECEIVE_COUNT;
use sluice_core::queue::sqlite::Limits;

/// `WRITER_ADDR`'s default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9090";

/// Everything `sluice-writer` reads: `LOG_FORMAT` and `WRITER_ADDR` (health
/// and metrics), where to drain from and to, the PII keys, the tuning.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: Service,
    /// `QUEUE_URL` and how to reach it, when set ([`Config::queue`] requires it).
    pub queue: Option<QueueSettings>,
    /// `DATABASE_URL`, when set ([`Config::database_url`] requires it).
    pub database_url: Option<DatabaseUrl>,
    pub pii: PiiSettings,
    pub tuning: Tuning,
}

impl Config {
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let service = Service::load(env, "WRITER_ADDR", DEFAULT_ADDR)?;
        let queue_url = config::queue_url(env)?;
        let database_url = env
            .var("DATABASE_URL")
            .map(|raw| DatabaseUrl::parse(&raw))
            .transpose()?;
        refuse_one_file_for_both(queue_url.as_ref(), database_url.as_ref())?;
        let tuning = Tuning::load(env, queue_url.as_ref())?;
        let queue = match &queue_url {
            Some(url) => Some(QueueSettings::load(env, url)?),
            // Checked all the same: a bad size stops the writer with one
            // line naming it, whatever the subcommand.
            None => Limits::load(env).map(|_| None)?,
        };
        Ok(Self {
            service,
            queue,
            database_url,
            pii: PiiSettings::load(env)?,
            tuning,
        })
    }

    /// `QUEUE_URL` and how to reach it, for what needs the queue.
    pub fn queue(&self) -> Result<&QueueSettings, ConfigError> {
        require_queue_url(self.queue.as_ref())
    }

    /// `DATABASE_URL`, for what needs the database.
    pub fn database_url(&self) -> Result<&DatabaseUrl, ConfigError> {
        self.database_url.as_ref().ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "is not set; expected postgres://user:pass@host:5432/db or sqlite:///path/to/file.db",
            )
        })
    }
}

/// The embedded queue wants a file of its own, so that the writer's long
/// transactions never hold up a send.
fn refuse_one_file_for_both(
    queue: Option<&QueueUrl>,
    database: Option<&DatabaseUrl>,
) -> Result<(), ConfigError> {
    let (Some(QueueUrl::Sqlite(queue)), Some(DatabaseUrl::Sqlite(database))) = (queue, database)
    else {
        return Ok(());
    };
    let same = queue == database
        || matches!(
            (std::fs::canonicalize(queue), std::fs::canonicalize(database)),
            (Ok(a), Ok(b)) if a == b
        );
    if same {
        return Err(ConfigError::new(
            "QUEUE_URL",
            "names the same file as DATABASE_URL; the embedded queue needs a file of its own, e.g. sqlite:///var/lib/sluice/queue.db",
        ));
    }
    Ok(())
}

/// The PII key and policy. The keys are secrets: they print as
/// `[REDACTED]`, and are checked when loaded.
#[derive(Debug, Clone, Default)]
pub struct PiiSettings {
    /// `PII_KEY`: the current key, 32 bytes in base64.
    pub key: Option<SecretString>,
    /// `PII_KEY_FILE`: a file holding it, read when `PII_KEY` is unset.
    pub key_file: Option<PathBuf>,
    /// `PII_OLD_KEYS`: older keys, so values made with them still read.
    pub old_keys: Vec<SecretString>,
    /// `PII_POLICY_FILE`: per-field strategies laid over the defaults.
    pub policy_file: Option<PathBuf>,
}

impl PiiSettings {
    fn load(env: &Env) -> Result<Self, ConfigError> {
        let key = env.secret("PII_KEY");
        if let Some(key) = &key {
            PiiKey::from_base64("PII_KEY", key.expose_secret())?;
        }
        let mut old_keys = Vec::new();
        if let Some(list) = env.secret("PII_OLD_KEYS") {
            for k in list
                .expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
            {
                PiiKey::from_base64("PII_OLD_KEYS", k)?;
                old_keys.push(SecretString::from(k.trim()));
            }
        }
        Ok(Self {
            key,
            key_file: env.var(key_file::VARIABLE).map(PathBuf::from),
            old_keys,
            policy_file: env.var("PII_POLICY_FILE").map(PathBuf::from),
        })
    }

    /// The masker, with the current key from `PII_KEY` or else the key file.
    pub fn masker(&self) -> Result<Masker, ConfigError> {
        let current = match (&self.key, &self.key_file) {
            (Some(key), _) => PiiKey::from_base64("PII_KEY", key.expose_secret())?,
            (None, Some(path)) => PiiKey::from_base64(key_file::VARIABLE, &key_file::read(path)?)?,
            (None, None) => {
                return Err(ConfigError::new(
                    "PII_KEY",
                    "is not set; expected 32 random bytes in base64; make one with `openssl rand -base64 32` (or set PII_KEY_FILE to a file holding it)",
                ));
            }
        };
        self.masker_with(current)
    }

    /// The masker around a given current key, with the older keys and the
    /// policy.
    pub fn masker_with(&self, current: PiiKey) -> Result<Masker, ConfigError> {
        let older = self
            .old_keys
            .iter()
            .map(|k| PiiKey::from_base64("PII_OLD_KEYS", k.expose_secret()))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = match &self.policy_file {
            Some(path) => Policy::from_file(path)?,
            None => Policy::default(),
        };
        Ok(Masker::new(Keyring::new(current, older), policy))
    }
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
    /// Receives before the dead-letter queue (`WRITER_MAX_RECEIVE_COUNT`),
    /// set by `setup`; unset, `setup` sets [`DEFAULT_MAX_RECEIVE_COUNT`] and
    /// `sluice up` keeps what the embedded queue has.
    pub max_receive_count: Option<u32>,
    /// Decoded rows held in memory at once (`WRITER_MAX_HELD_ROWS`).
    pub max_held_rows: usize,
    /// How long `Idempotency-Key` identities are kept
    /// (`WRITER_IDEMPOTENCY_RETENTION_HOURS`).
    pub idempotency_retention: Duration,
    /// How often the queue-depth gauges are refreshed
    /// (`WRITER_QUEUE_DEPTH_INTERVAL_SECS`).
    pub queue_depth_interval: Duration,
}

const POSITIVE: &str = "expected a positive whole number";
/// The long poll on the embedded queue, where a receive costs nothing:
/// shutdown finishes a poll under way, and a short one makes Ctrl-C quick.
const EMBEDDED_WAIT: Duration = Duration::from_secs(1);
/// SQS's longest long poll.
const MAX_WAIT_SECS: u64 = 20;
/// A retention of a century is as good as forever.
const MAX_RETENTION_HOURS: u64 = 24 * 365 * 100;

impl Tuning {
    /// The tuning, with the long-poll default suited to `queue`.
    pub fn load(env: &Env, queue: Option<&QueueUrl>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let wait = match queue {
            Some(QueueUrl::Sqlite(_)) => EMBEDDED_WAIT,
            _ => d.wait,
        };
        let retention_hours = d.idempotency_retention.as_secs() / 3600;
        let max_receive_count = if env.is_set("WRITER_MAX_RECEIVE_COUNT") {
            Some(env.parse("WRITER_MAX_RECEIVE_COUNT", 0, POSITIVE)?)
        } else {
            None
        };
        let tuning = Self {
            consumers: env.parse("WRITER_CONSUMERS", d.consumers, POSITIVE)?,
            batch_rows: env.parse("WRITER_BATCH_ROWS", d.batch_rows, POSITIVE)?,
            batch_messages: env.parse("WRITER_BATCH_MESSAGES", d.batch_messages, POSITIVE)?,
            linger: env.millis("WRITER_LINGER_MS", d.linger, POSITIVE)?,
            committers: env.parse("WRITER_COMMITTERS", d.committers, POSITIVE)?,
            visibility: env.secs("WRITER_VISIBILITY_TIMEOUT_SECS", d.visibility, POSITIVE)?,
            wait: env
                .secs("WRITER_WAIT_SECS", wait, "expected 0 to 20 seconds")?
                .min(Duration::from_secs(MAX_WAIT_SECS)),
            max_record_bytes: env.parse("WRITER_MAX_RECORD_BYTES", d.max_record_bytes, POSITIVE)?,
            max_rejected_bytes: env.parse(
                "WRITER_MAX_REJECTED_BYTES",
                d.max_rejected_bytes,
                "expected a whole number of bytes, at least 1024",
            )?,
            db_connections: env.parse("WRITER_DB_CONNECTIONS", d.db_connections, POSITIVE)?,
            shutdown_timeout: env.secs(
                "WRITER_SHUTDOWN_TIMEOUT_SECS",
                d.shutdown_timeout,
                POSITIVE,
            )?,
            max_receive_count,
            max_held_rows: env.parse("WRITER_MAX_HELD_ROWS", d.max_held_rows, POSITIVE)?,
            idempotency_retention: Duration::from_secs(
                3600 * env
                    .parse(
                        "WRITER_IDEMPOTENCY_RETENTION_HOURS",
                        retention_hours,
                        POSITIVE,
                    )?
                    .min(MAX_RETENTION_HOURS),
            ),
            queue_depth_interval: env.secs(
                "WRITER_QUEUE_DEPTH_INTERVAL_SECS",
                d.queue_depth_interval,
                POSITIVE,
            )?,
        };
        tuning.validate()?;
        Ok(tuning)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("WRITER_CONSUMERS", self.consumers),
            ("WRITER_BATCH_ROWS", self.batch_rows),
            ("WRITER_BATCH_MESSAGES", self.batch_messages),
            ("WRITER_COMMITTERS", self.committers),
            ("WRITER_DB_CONNECTIONS", self.db_connections as usize),
            ("WRITER_MAX_HELD_ROWS", self.max_held_rows),
            (
                "WRITER_QUEUE_DEPTH_INTERVAL_SECS",
                self.queue_depth_interval.as_secs() as usize,
            ),
            (
                "WRITER_IDEMPOTENCY_RETENTION_HOURS",
                self.idempotency_retention.as_secs() as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, POSITIVE));
            }
        }
        if self.max_rejected_bytes < 1024 {
            return Err(ConfigError::new(
                "WRITER_MAX_REJECTED_BYTES",
                "expected a whole number of bytes, at least 1024",
            ));
        }
        if self.visibility < Duration::from_secs(2) {
            return Err(ConfigError::new(
                "WRITER_VISIBILITY_TIMEOUT_SECS",
                "expected at least 2 seconds",
            ));
        }
        Ok(())
    }

    /// The receive count `setup` gives the queue.
    pub fn receive_count(&self) -> u32 {
        self.max_receive_count.unwrap_or(DEFAULT_MAX_RECEIVE_COUNT)
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
            max_receive_count: None,
            max_held_rows: 20_000,
            idempotency_retention: Duration::from_secs(3600 * DEFAULT_RETENTION_HOURS),
            queue_depth_interval: Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Env::from_pairs(pairs.iter().copied()))
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn defaults_are_valid() {
        Tuning::default().validate().unwrap();
    }

    #[test]
    fn loads_from_a_list_without_the_process_environment() {
        let config = load(&[
            ("QUEUE_URL", "sqlite:///tmp/q.db"),
            ("DATABASE_URL", "postgres://app:s3cret@db/sluice"),
            ("PII_KEY", KEY),
            ("PII_OLD_KEYS", &format!(" {KEY} ,")),
            ("WRITER_BATCH_ROWS", "7"),
        ])
        .unwrap();
        assert_eq!(config.service.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(config.tuning.batch_rows, 7);
        // The embedded queue's long poll; Tuning::default's elsewhere.
        assert_eq!(config.tuning.wait, EMBEDDED_WAIT);
        assert_eq!(config.tuning.consumers, Tuning::default().consumers);
        assert_eq!(config.tuning.receive_count(), DEFAULT_MAX_RECEIVE_COUNT);
        assert_eq!(config.pii.old_keys.len(), 1);
        config.pii.masker().unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains(KEY), "{shown}");
        let config = load(&[("WRITER_WAIT_SECS", "99")]).unwrap();
        assert_eq!(config.tuning.wait, Duration::from_secs(20));
    }

    #[test]
    fn refuses_in_one_line_naming_the_variable() {
        for (pairs, variable) in [
            (
                vec![("DATABASE_URL", "mysql://root:s3cret@h/db")],
                "DATABASE_URL",
            ),
            (vec![("PII_KEY", "c2hvcnQ=")], "PII_KEY"),
            (vec![("PII_OLD_KEYS", "s3cret")], "PII_OLD_KEYS"),
            (vec![("WRITER_ADDR", "nowhere")], "WRITER_ADDR"),
            (vec![("WRITER_CONSUMERS", "0")], "WRITER_CONSUMERS"),
            (vec![("QUEUE_MIN_FREE_BYTES", "-1")], "QUEUE_MIN_FREE_BYTES"),
            (
                vec![("WRITER_VISIBILITY_TIMEOUT_SECS", "1")],
                "WRITER_VISIBILITY_TIMEOUT_SECS",
            ),
            (
                vec![
                    ("QUEUE_URL", "sqlite:x.db"),
                    ("DATABASE_URL", "sqlite://x.db"),
                ],
                "QUEUE_URL",
            ),
        ] {
            let err = load(&pairs).unwrap_err();
            assert_eq!(err.variable, variable, "{pairs:?}");
            let line = err.to_string();
            assert!(!line.contains('\n') && !line.contains("s3cret"), "{line}");
        }
        let config = load(&[]).unwrap();
        assert_eq!(config.queue().unwrap_err().variable, "QUEUE_URL");
        assert_eq!(config.database_url().unwrap_err().variable, "DATABASE_URL");
        assert_eq!(config.pii.masker().unwrap_err().variable, "PII_KEY");
    }
}
