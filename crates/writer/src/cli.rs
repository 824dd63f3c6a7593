//! The command line: `serve` (default), `migrate`, `setup`, `recover`, the
//! PII operations `keys`, `rekey`, `lookup`, `forget` (in `pii_ops`), and the
//! dead-letter tools `dlq` (in `dlq`). Flags are laid over the environment
//! and the settings loaded once ([`Config::load`]); each subcommand takes the
//! parts it needs.

use clap::{Parser, Subcommand};
use sluice_core::config::{ConfigError, Env, Flags, StartError};
use sluice_core::masking::ENCRYPTED_PREFIX;
use sluice_core::queue;
use sluice_core::{shutdown, telemetry};
use thiserror::Error;

use crate::configuration::Config;
use crate::dlq;
use crate::pii_ops::{OpsError, command as pii};
use crate::startup::{Application, connect_sink};

/// Drains the Sluice queue into PostgreSQL or SQLite, PII masked.
#[derive(Debug, Parser)]
#[command(name = "sluice-writer", version)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    /// postgres://… or sqlite:///path/to/file.db [default: $DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drain the queue until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Create the queue and its dead-letter queue (with a redrive policy) when
    /// missing, then migrate.
    Setup,
    /// Print the original of a value made by the `encrypt` strategy.
    Recover {
        /// The masked value, `enc:<key id>:<data>`.
        value: String,
        /// Who is asking, for the audit log (defaults to $USER).
        #[arg(long, env = "SLUICE_OPERATOR")]
        operator: Option<String>,
    },
    /// Show which key ids the stored values use, per table and column.
    Keys(pii::KeysArgs),
    /// Re-encrypt every value under an old key (PII_OLD_KEYS) with PII_KEY.
    Rekey(pii::RekeyArgs),
    /// Print how a value is stored for a field, under every configured key.
    Lookup(pii::LookupArgs),
    /// Erase a data subject's rows and masked values.
    Forget(pii::ForgetArgs),
    /// The dead-letter queue: `status`, `peek [N]` (masked), `redrive [--max N]`.
    Dlq(dlq::DlqArgs),
}

/// Everything that stops the writer, each shown as one line.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("recover: {0}")]
    Recover(String),
    #[error("{0}")]
    Pii(#[from] OpsError),
    #[error("{0}")]
    Dlq(#[from] dlq::DlqError),
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Start(e.into())
    }
}

impl Cli {
    /// The settings: flags over the process environment.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let env = self
            .flags
            .clone()
            .over(Env::process(), "WRITER_ADDR")
            .with("DATABASE_URL", self.database_url.clone());
        Config::load(&env)
    }
}

pub async fn run(cli: Cli) -> Result<(), RunError> {
    // Every setting is validated before anything connects.
    let config = cli.config()?;
    telemetry::init_logging(config.service.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Setup => setup(&config).await,
        Command::Recover { value, operator } => recover(&config, &value, operator),
        Command::Keys(args) => Ok(pii::keys(&config, args).await?),
        Command::Rekey(args) => Ok(pii::rekey(&config, args).await?),
        Command::Lookup(args) => Ok(pii::lookup(&config, args).await?),
        Command::Forget(args) => Ok(pii::forget(&config, args).await?),
        Command::Dlq(args) => Ok(dlq::run(&config, args).await?),
    }
}

async fn serve(config: Config) -> Result<(), RunError> {
    // Listen for signals from the start: a SIGTERM while connecting is a
    // clean stop (nothing is held yet), not a kill.
    let shutdown = shutdown::on_signal();
    let app = tokio::select! {
        app = Application::connect(config) => app?,
        () = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(addr = %app.local_addr(), "health and metrics listening");
    app.run(shutdown).await;
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), RunError> {
    connect_sink(config.database_url()?, &config.tuning).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn setup(config: &Config) -> Result<(), RunError> {
    let database = config.database_url()?;
    let settings = config.queue()?;
    let count = config.tuning.receive_count();
    let (queue, dlq) = queue::setup(settings, count, config.tuning.visibility)
        .await
        .map_err(StartError::queue("reach the queue", settings))?;
    tracing::info!(queue = %queue.describe(), dead_letter_queue = %dlq, max_receive_count = count, "queue ready");
    connect_sink(database, &config.tuning).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Decrypts one value. Every use is logged — who, when, which key id —
/// never the value.
fn recover(config: &Config, value: &str, operator: Option<String>) -> Result<(), RunError> {
    let masker = config.pii.masker()?;
    let operator = operator
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    // Only a well-formed value's key id is logged: anything else may be the
    // plaintext itself, typed by mistake.
    let key_id = match value.trim().splitn(3, ':').collect::<Vec<_>>()[..] {
        [ENCRYPTED_PREFIX, id, _]
            if id.len() <= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            id.to_owned()
        }
        _ => "none".to_owned(),
    };
    let result = masker.recover(value);
    tracing::info!(
        target: "sluice::audit",
        operator = %operator,
        key_id = %key_id,
        at = %chrono::Utc::now().to_rfc3339(),
        success = result.is_ok(),
        "recover"
    );
    let plain = result.map_err(|e| RunError::Recover(e.to_string()))?;
    println!("{}", String::from_utf8_lossy(&plain));
    Ok(())
}
