//! The command line: `serve` (default), `migrate`, `setup`, `recover`, the
//! PII operations `keys`, `rekey`, `lookup`, `forget` (in `pii_ops`), and the
//! dead-letter tools `dlq` (in `dlq`).

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice_core::backoff::Backoff;
use sluice_core::config::{ConfigError, DatabaseUrl, QueueUrl};
use sluice_core::masking::ENCRYPTED_PREFIX;
use sluice_core::queue::{self, Queue};
use sluice_core::shutdown;
use sluice_core::sink;
use sluice_core::telemetry;
use thiserror::Error;

use crate::configuration::{self, CommonArgs, Tuning};
use crate::dlq;
use crate::pii_ops::{OpsError, command as pii};
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-writer",
    version,
    about = "Drains the Sluice queue into PostgreSQL or SQLite, PII masked."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
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
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("QUEUE_URL: cannot reach the queue at {url}: {reason}")]
    QueueUnreachable { url: String, reason: String },
    #[error("DATABASE_URL: {0}")]
    Database(String),
    #[error("WRITER_ADDR: cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("recover: {0}")]
    Recover(String),
    #[error("{0}")]
    Pii(#[from] OpsError),
    #[error("{0}")]
    Dlq(#[from] dlq::DlqError),
}

pub async fn run(cli: Cli) -> Result<(), RunError> {
    let common = cli.common;
    let format = configuration::log_format(&common)?;
    telemetry::init_logging(format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&common).await,
        Command::Migrate => migrate(&common).await,
        Command::Setup => setup(&common).await,
        Command::Recover { value, operator } => recover(&value, operator),
        Command::Keys(args) => Ok(pii::keys(&common, args).await?),
        Command::Rekey(args) => Ok(pii::rekey(&common, args).await?),
        Command::Lookup(args) => Ok(pii::lookup(&common, args).await?),
        Command::Forget(args) => Ok(pii::forget(&common, args).await?),
        Command::Dlq(args) => Ok(dlq::run(&common, args).await?),
    }
}

/// The queue's URL, refused when it names the database's own SQLite file:
/// the embedded queue wants a file of its own, so that the writer's long
/// transactions never hold up a send.
fn queue_url(common: &CommonArgs) -> Result<QueueUrl, RunError> {
    let url = configuration::queue_url(common)?;
    if let (QueueUrl::Sqlite(queue), Ok(DatabaseUrl::Sqlite(database))) =
        (&url, configuration::database_url(common))
    {
        let same = queue == &database
            || matches!(
                (std::fs::canonicalize(queue), std::fs::canonicalize(&database)),
                (Ok(a), Ok(b)) if a == b
            );
        if same {
            return Err(ConfigError::new(
                "QUEUE_URL",
                "names the same file as DATABASE_URL; the embedded queue needs a file of its own, e.g. sqlite:///var/lib/sluice/queue.db",
            )
            .into());
        }
    }
    Ok(url)
}

async fn connect_queue(common: &CommonArgs) -> Result<Arc<dyn Queue>, RunError> {
    let url = queue_url(common)?;
    queue::connect(&url)
        .await
        .map_err(|e| RunError::QueueUnreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// Checks the queue answers, so a wrong URL fails at start, not in a loop.
async fn check_queue(queue: &dyn Queue) -> Result<(), RunError> {
    queue::check_answers(queue, queue::STARTUP_CHECK)
        .await
        .map_err(|reason| RunError::QueueUnreachable {
            url: queue.describe(),
            reason,
        })
}

/// Connects to the database and migrates it, waiting for one that is still
/// starting.
pub async fn connect_sink(
    common: &CommonArgs,
    tuning: &Tuning,
) -> Result<Arc<dyn sink::Sink>, RunError> {
    let url = configuration::database_url(common)?;
    // Which connection failed, never its password.
    let failed = |e: sink::SinkError| RunError::Database(format!("{}: {e}", url.redacted()));
    let sink = sink::connect(&url, tuning.db_connections)
        .await
        .map_err(failed)?;
    // A database that is still starting (Compose, a failover) is waited for;
    // one that refuses, or a certificate that is not trusted, is reported at
    // once.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match sink.migrate().await {
            Ok(()) => return Ok(sink),
            Err(e) if e.is_transient() && tokio::time::Instant::now() < give_up => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(failed(e)),
        }
    }
}

async fn serve(common: &CommonArgs) -> Result<(), RunError> {
    // Validate every setting before connecting to anything.
    let masker = configuration::masker()?;
    let tuning = Tuning::from_env_for(&queue_url(common)?)?;
    // Read again when the embedded queue opens; checked here so a bad size
    // stops the writer with one line naming it.
    sluice_core::queue::sqlite::Limits::from_env()?;
    let addr = configuration::listen_addr(common)?;
    configuration::database_url(common)?;
    // Listen for signals from the start: a SIGTERM while connecting is a
    // clean stop (nothing is held yet), not a kill.
    let shutdown = shutdown::on_signal();
    let connected = async {
        let queue = connect_queue(common).await?;
        check_queue(queue.as_ref()).await?;
        let sink = connect_sink(common, &tuning).await?;
        Ok::<_, RunError>((queue, sink))
    };
    let (queue, sink) = tokio::select! {
        connected = connected => connected?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let app = Application::build(addr, queue, sink, masker, tuning)
        .await
        .map_err(|e| RunError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(addr = %app.local_addr(), "health and metrics listening");
    app.run(shutdown).await;
    Ok(())
}

async fn migrate(common: &CommonArgs) -> Result<(), RunError> {
    let tuning = Tuning::from_env()?;
    connect_sink(common, &tuning).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn setup(common: &CommonArgs) -> Result<(), RunError> {
    let tuning = Tuning::from_env()?;
    configuration::database_url(common)?;
    let url = queue_url(common)?;
    let (queue, dlq) = queue::setup(&url, tuning.max_receive_count, tuning.visibility)
        .await
        .map_err(|e| RunError::QueueUnreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(queue = %queue.describe(), dead_letter_queue = %dlq, max_receive_count = tuning.max_receive_count, "queue ready");
    connect_sink(common, &tuning).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Decrypts one value. Every use is logged — who, when, which key id —
/// never the value.
fn recover(value: &str, operator: Option<String>) -> Result<(), RunError> {
    let masker = configuration::masker()?;
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
