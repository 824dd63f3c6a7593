//! The command line: flags, start-up checks, and serving until a signal.

use clap::Parser;
use sluice_core::config::ConfigError;
use sluice_core::queue::{self, Queue};
use sluice_core::shutdown;
use sluice_core::telemetry;
use thiserror::Error;

use crate::configuration::{self, CommonArgs, Settings};
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-ingest",
    version,
    about = "Accepts pushed events over HTTP and makes them durable in SQS."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Everything that stops the service at start, each shown as one line.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("QUEUE_URL: cannot reach the queue at {url}: {reason}")]
    QueueUnreachable { url: String, reason: String },
    #[error("INGEST_ADDR: cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

pub async fn run(cli: Cli) -> Result<(), RunError> {
    let common = cli.common;
    telemetry::init_logging(configuration::log_format(&common)?);
    // Validate every setting before connecting to anything.
    let settings = Settings::from_env()?;
    sluice_core::queue::sqlite::Limits::from_env()?;
    let addr = configuration::listen_addr(&common)?;
    let url = configuration::queue_url(&common)?;
    // A signal while connecting is a clean stop: nothing is held yet.
    let shutdown = shutdown::on_signal();
    let connected = async {
        let queue = queue::connect(&url)
            .await
            .map_err(|e| RunError::QueueUnreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        check_queue(queue.as_ref()).await?;
        Ok::<_, RunError>(queue)
    };
    let queue = tokio::select! {
        queue = connected => queue?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let app = Application::build(addr, queue, settings)
        .await
        .map_err(|e| RunError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    app.run(shutdown).await;
    Ok(())
}

/// Checks the queue answers, so a wrong URL fails at start, not on the
/// first request.
async fn check_queue(queue: &dyn Queue) -> Result<(), RunError> {
    queue::check_answers(queue, queue::STARTUP_CHECK)
        .await
        .map_err(|reason| RunError::QueueUnreachable {
            url: queue.describe(),
            reason,
        })
}
