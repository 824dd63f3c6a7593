//! `sluice-ingest-lambda` entry point: settings, the SQS client, then the
//! Lambda runtime loop.

use std::process::ExitCode;
use std::sync::Arc;

use sluice_core::config::{Env, refuse, start};
use sluice_core::queue::Queue;
use sluice_core::queue::sqs::SqsQueue;
use sluice_core::telemetry;
use sluice_ingest_lambda::{Config, app};

/// `.env` is for `cargo lambda watch` on a developer's machine; Lambda has none.
fn main() -> ExitCode {
    // glibc malloc with two arenas, as in sluice-ingest: `sluice_core::malloc` says why.
    if let Err(line) = sluice_core::malloc::cap_arenas() {
        return refuse(line);
    }
    start(run)
}

async fn run() -> ExitCode {
    let config = match Config::load(&Env::process()) {
        Ok(config) => config,
        Err(e) => return refuse(e),
    };
    // lambda_http panics without it; one line is kinder.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return refuse(
            "AWS_LAMBDA_RUNTIME_API: is not set; this binary runs inside AWS Lambda \
             (or `cargo lambda watch`); elsewhere run sluice-ingest",
        );
    }
    telemetry::init_logging(config.log_format);
    sluice_ingest::metrics::describe();
    // On an AWS queue URL this makes no call, so sqs:SendMessage is all the
    // function's role needs.
    let queue = SqsQueue::connect(&config.queue).await;
    tracing::info!(
        queue = %queue.describe(),
        max_message_bytes = config.settings.batch.max_message_bytes,
        linger_ms = config.settings.batch.linger.as_millis() as u64,
        auth = config.settings.token.is_some(),
        "ingest on lambda ready"
    );
    let queue: Arc<dyn Queue> = Arc::new(queue);
    match lambda_http::run(app(queue, &config.settings)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: lambda runtime: {e}");
            ExitCode::from(1)
        }
    }
}
