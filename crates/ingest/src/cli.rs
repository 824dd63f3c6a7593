//! The command line: flags over the environment, one settings load, and
//! serving until a signal.

use clap::Parser;
use sluice_core::config::{Env, Flags};
use sluice_core::{shutdown, telemetry};

use crate::configuration::Config;
use crate::startup::{Application, StartError};

/// Accepts pushed events over HTTP and makes them durable in SQS.
#[derive(Debug, Parser)]
#[command(name = "sluice-ingest", version)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
}

pub async fn run(cli: Cli) -> Result<(), StartError> {
    // Every setting is validated before anything connects.
    let config = Config::load(&cli.flags.over(Env::process(), "INGEST_ADDR"))?;
    telemetry::init_logging(config.service.log_format);
    // A signal while connecting is a clean stop: nothing is held yet.
    let shutdown = shutdown::on_signal();
    let app = tokio::select! {
        app = Application::connect(config) => app?,
        () = shutdown.cancelled() => return Ok(()),
    };
    app.run(shutdown).await;
    Ok(())
}
