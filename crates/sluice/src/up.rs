//! `sluice up`: creates what a first run needs (queue, tables, PII key),
//! then serves ingest and a writer on one shutdown signal.
//!
//! Both halves are the very same `Application`s the two services run; only
//! the wiring is shared. Ctrl-C stops ingest and the writer together: ingest
//! answers the requests in flight (their events are in the queue before the
//! 202), the writer commits what it holds, and whatever is still queued is
//! picked up by the next `sluice up`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use sluice_core::config::{ConfigError, DatabaseUrl, QueueUrl, env_var, parse_queue_url};
use sluice_core::key_file;
use sluice_core::masking::{Masker, PiiKey};
use sluice_core::{queue, shutdown, telemetry};
use thiserror::Error;

/// Where a first run keeps everything when `.env` says nothing.
const DEFAULT_QUEUE_URL: &str = "sqlite://data/queue.db";
const DEFAULT_DATABASE_URL: &str = "sqlite://data/sluice.db";
const DEFAULT_KEY_FILE: &str = "data/pii.key";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Queue: sqlite://path (embedded) or an SQS URL.
    #[arg(long, env = "QUEUE_URL", default_value = DEFAULT_QUEUE_URL)]
    queue_url: String,
    /// Database: sqlite://path or postgres://…
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Ingest listen address.
    #[arg(long, env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    ingest_addr: String,
    /// Writer health and metrics listen address.
    #[arg(long, env = "WRITER_ADDR", default_value = "127.0.0.1:9090")]
    writer_addr: String,
    /// text or json.
    #[arg(long, env = "LOG_FORMAT")]
    log_format: Option<String>,
}

#[derive(Debug, Error)]
pub enum UpError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("QUEUE_URL: cannot open the queue at {url}: {reason}")]
    Queue { url: String, reason: String },
    #[error("{0}")]
    Writer(#[from] sluice_writer::cli::RunError),
    #[error("{variable}: cannot listen on {addr}: {reason}")]
    Listen {
        variable: &'static str,
        addr: String,
        reason: String,
    },
}

pub async fn run(args: UpArgs) -> Result<(), UpError> {
    let format = args.log_format.as_deref().unwrap_or("text").parse()?;
    telemetry::init_logging(format);

    // Every setting is checked before anything is created or connected.
    let queue_url = parse_queue_url(&args.queue_url)?;
    let database_url = DatabaseUrl::parse(&args.database_url)?;
    let ingest_addr = args.ingest_addr.trim().parse().map_err(|_| {
        ConfigError::new("INGEST_ADDR", "expected host:port such as 127.0.0.1:8080")
    })?;
    let writer_common = sluice_writer::configuration::CommonArgs {
        queue_url: Some(args.queue_url.clone()),
        database_url: Some(args.database_url.clone()),
        addr: Some(args.writer_addr.clone()),
        log_format: args.log_format.clone(),
    };
    let writer_addr = sluice_writer::configuration::listen_addr(&writer_common)?;
    let tuning = sluice_writer::configuration::Tuning::from_env_for(&queue_url)?;
    sluice_core::queue::sqlite::Limits::from_env()?;
    let ingest_settings = sluice_ingest::configuration::Settings::from_env()?;
    let masker = masker()?;

    // Signals count from here: Ctrl-C while waiting for a database that is
    // still starting is a clean stop, as in `sluice-writer serve`.
    let shutdown = shutdown::on_signal();
    let prepared = async {
        // The embedded queue keeps the redrive rule stored in it (by
        // `sluice-writer setup`) unless WRITER_MAX_RECEIVE_COUNT is given; an
        // SQS queue is created when missing, as `setup` does.
        let queue = if matches!(queue_url, QueueUrl::Sqlite(_))
            && env_var("WRITER_MAX_RECEIVE_COUNT").is_none()
        {
            queue::connect(&queue_url).await
        } else {
            queue::setup(&queue_url, tuning.max_receive_count, tuning.visibility)
                .await
                .map(|(queue, _)| queue)
        }
        .map_err(|e| UpError::Queue {
            url: queue_url.to_string(),
            reason: e.to_string(),
        })?;
        let sink = sluice_writer::cli::connect_sink(&writer_common, &tuning).await?;
        Ok::<_, UpError>((queue, sink))
    };
    let (queue, sink) = tokio::select! {
        prepared = prepared => prepared?,
        () = shutdown.cancelled() => return Ok(()),
    };

    let writer = sluice_writer::startup::Application::build(
        writer_addr,
        Arc::clone(&queue),
        sink,
        masker,
        tuning,
    )
    .await
    .map_err(|e| listen_error("WRITER_ADDR", &args.writer_addr, e))?;
    let ingest = sluice_ingest::startup::Application::build(ingest_addr, queue, ingest_settings)
        .await
        .map_err(|e| listen_error("INGEST_ADDR", &args.ingest_addr, e))?;
    tracing::info!(
        ingest = %format!("http://{}/events", ingest.local_addr()),
        writer = %format!("http://{}/readyz", writer.local_addr()),
        queue = %queue_url,
        database = %describe(&database_url),
        "sluice is up; Ctrl-C stops it"
    );
    tokio::join!(ingest.run(shutdown.clone()), writer.run(shutdown));
    Ok(())
}

fn listen_error(variable: &'static str, addr: &str, e: std::io::Error) -> UpError {
    UpError::Listen {
        variable,
        addr: addr.to_owned(),
        reason: e.to_string(),
    }
}

/// `PII_KEY` when set; otherwise the key file, made on the first run.
fn masker() -> Result<Masker, ConfigError> {
    if env_var("PII_KEY").is_some() {
        return sluice_writer::configuration::masker();
    }
    let path =
        PathBuf::from(env_var(key_file::VARIABLE).unwrap_or_else(|| DEFAULT_KEY_FILE.to_owned()));
    if key_file::create_if_missing(&path)? {
        tracing::warn!(
            path = %path.display(),
            "created a new PII key (readable by you only); keep it: without it, encrypted values cannot be recovered"
        );
    }
    let key = PiiKey::from_base64(key_file::VARIABLE, &key_file::read(&path)?)?;
    sluice_writer::configuration::masker_with(key)
}

/// The database for the log: a SQLite path, never a PostgreSQL password.
fn describe(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => path.display().to_string(),
        other => other.kind().to_owned(),
    }
}
