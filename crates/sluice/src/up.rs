//! `sluice up`: creates what a first run needs (queue, tables, PII key),
//! then serves ingest and a writer on one shutdown signal.
//!
//! Both halves are the very same `Application`s the two services run; only
//! the wiring is shared. Ctrl-C stops ingest and the writer together: ingest
//! answers the requests in flight (their events are in the queue before the
//! 202), the writer commits what it holds, and whatever is still queued is
//! picked up by the next `sluice up`.

use std::sync::Arc;

use clap::Args;
use sluice_core::config::{ConfigError, DatabaseUrl, Env, StartError};
use sluice_core::key_file;
use sluice_core::masking::Masker;
use sluice_core::queue::QueueSettings;
use sluice_core::{queue, shutdown, telemetry};
use sluice_ingest::configuration::Config as IngestConfig;
use sluice_writer::configuration::{Config as WriterConfig, PiiSettings};
use sluice_writer::startup::connect_sink;

/// Where a first run keeps everything when `.env` says nothing.
const DEFAULT_QUEUE_URL: &str = "sqlite://data/queue.db";
const DEFAULT_DATABASE_URL: &str = "sqlite://data/sluice.db";
const DEFAULT_KEY_FILE: &str = "data/pii.key";

/// Each flag wins over its variable, which wins over the first-run default.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Queue: sqlite://path (embedded) or an SQS URL [default: $QUEUE_URL,
    /// else sqlite://data/queue.db].
    #[arg(long)]
    queue_url: Option<String>,
    /// Database: sqlite://path or postgres://… [default: $DATABASE_URL,
    /// else sqlite://data/sluice.db].
    #[arg(long)]
    database_url: Option<String>,
    /// Ingest listen address [default: $INGEST_ADDR, else 127.0.0.1:8080].
    #[arg(long)]
    ingest_addr: Option<String>,
    /// Writer health and metrics listen address [default: $WRITER_ADDR,
    /// else 127.0.0.1:9090].
    #[arg(long)]
    writer_addr: Option<String>,
    /// text or json [default: $LOG_FORMAT, else text].
    #[arg(long)]
    log_format: Option<String>,
}

impl UpArgs {
    /// What both halves load their settings from: the flags, over `env`,
    /// over the first-run defaults.
    fn over(self, env: Env) -> Env {
        env.with("QUEUE_URL", self.queue_url)
            .with("DATABASE_URL", self.database_url)
            .with("INGEST_ADDR", self.ingest_addr)
            .with("WRITER_ADDR", self.writer_addr)
            .with("LOG_FORMAT", self.log_format)
            .or("QUEUE_URL", DEFAULT_QUEUE_URL)
            .or("DATABASE_URL", DEFAULT_DATABASE_URL)
            .or(key_file::VARIABLE, DEFAULT_KEY_FILE)
    }
}

pub async fn run(args: UpArgs) -> Result<(), StartError> {
    // Every setting is checked before anything is created or connected:
    // each half loads its own, from the same environment.
    let env = args.over(Env::process());
    let ingest_config = IngestConfig::load(&env)?;
    let writer_config = WriterConfig::load(&env)?;
    telemetry::init_logging(writer_config.service.log_format);
    let queue_settings = ingest_config.queue.clone();
    let database_url = writer_config.database_url()?.clone();
    let tuning = writer_config.tuning.clone();
    let masker = masker(&writer_config.pii)?;

    // Signals count from here: Ctrl-C while waiting for a database that is
    // still starting is a clean stop, as in `sluice-writer serve`.
    let shutdown = shutdown::on_signal();
    let prepared = async {
        // The embedded queue keeps the redrive rule stored in it (by
        // `sluice-writer setup`) unless WRITER_MAX_RECEIVE_COUNT is given; an
        // SQS queue is created when missing, as `setup` does.
        let embedded = matches!(queue_settings, QueueSettings::Embedded { .. });
        let queue = if embedded && tuning.max_receive_count.is_none() {
            queue::connect(&queue_settings).await
        } else {
            queue::setup(&queue_settings, tuning.receive_count(), tuning.visibility)
                .await
                .map(|(queue, _)| queue)
        }
        .map_err(StartError::queue("open the queue", &queue_settings))?;
        let sink = connect_sink(&database_url, &tuning).await?;
        Ok::<_, StartError>((queue, sink))
    };
    let (queue, sink) = tokio::select! {
        prepared = prepared => prepared?,
        () = shutdown.cancelled() => return Ok(()),
    };

    let service = writer_config.service;
    let writer = sluice_writer::startup::Application::build(
        service.addr,
        Arc::clone(&queue),
        sink,
        masker,
        tuning,
    )
    .await
    .map_err(service.cannot_listen())?;
    let service = ingest_config.service;
    let ingest =
        sluice_ingest::startup::Application::build(service.addr, queue, ingest_config.settings)
            .await
            .map_err(service.cannot_listen())?;
    tracing::info!(
        ingest = %format!("http://{}/events", ingest.local_addr()),
        writer = %format!("http://{}/readyz", writer.local_addr()),
        queue = %queue_settings,
        database = %describe(&database_url),
        "sluice is up; Ctrl-C stops it"
    );
    tokio::join!(ingest.run(shutdown.clone()), writer.run(shutdown));
    Ok(())
}

/// `PII_KEY` when set; otherwise the key file, made on the first run.
fn masker(pii: &PiiSettings) -> Result<Masker, ConfigError> {
    if let (None, Some(path)) = (&pii.key, &pii.key_file)
        && key_file::create_if_missing(path)?
    {
        tracing::warn!(
            path = %path.display(),
            "created a new PII key (readable by you only); keep it: without it, encrypted values cannot be recovered"
        );
    }
    pii.masker()
}

/// The database for the log: a SQLite path, never a PostgreSQL password.
fn describe(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => path.display().to_string(),
        other => other.kind().to_owned(),
    }
}
