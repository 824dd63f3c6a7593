//! Builds the service from settings so that `main` and the tests run the
//! same thing: the binary [`connect`](Application::connect)s from its
//! [`Config`]; tests [`build`](Application::build) an [`Application`] on
//! `127.0.0.1:0` against their own queue, and stop it by cancelling its
//! token. [`service`] is the router
//! with its running batcher alone, so that the Lambda binary serves the very
//! same routes through `lambda_http` instead of a listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use sluice_core::config::Bound;
pub use sluice_core::config::StartError;
use sluice_core::queue::{self, Queue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batcher::Batcher;
use crate::configuration::{Config, Settings};
use crate::http::{HttpState, Limits, router};
use crate::metrics;
use crate::serve::serve;

/// The routes with their state, and the batcher task behind them.
pub struct Service {
    pub router: Router,
    /// Cancelling it makes the batcher send what is pending and stop.
    pub close: CancellationToken,
    /// The batcher task: done once everything pending is sent (after `close`).
    pub batching: JoinHandle<()>,
}

/// Starts the batcher (on the current Tokio runtime) and builds the router
/// around it. `shutdown` ends lingering and turns new requests away.
pub fn service(queue: Arc<dyn Queue>, settings: &Settings, shutdown: CancellationToken) -> Service {
    let close = CancellationToken::new();
    let (batcher, batching) = Batcher::start(
        Arc::clone(&queue),
        settings.batch.clone(),
        shutdown.clone(),
        close.clone(),
    );
    let limits = Limits {
        max_body: settings.max_body,
        max_decoded_body: settings.max_decoded_body,
        max_message_bytes: settings.batch.max_message_bytes,
        request_timeout: settings.request_timeout,
        retry_after: settings.retry_after,
        max_buffered: settings.max_buffered,
    };
    let state = HttpState::new(batcher, settings.token.clone(), limits, queue, shutdown);
    Service {
        router: router(state),
        close,
        batching,
    }
}

/// The listener bound, with the queue and settings it serves with.
pub struct Application(Bound<(Arc<dyn Queue>, Settings)>);

impl Application {
    /// What `sluice-ingest` runs: the queue `config` names, connected and
    /// answering, and the listener bound.
    pub async fn connect(config: Config) -> Result<Self, StartError> {
        sluice_core::telemetry::install_metrics_in_background();
        let queue = queue::connect_checked(&config.queue).await?;
        let service = config.service;
        Self::build(service.addr, queue, config.settings)
            .await
            .map_err(service.cannot_listen())
    }

    /// Binds the listener; the queue is already connected.
    pub async fn build(
        addr: SocketAddr,
        queue: Arc<dyn Queue>,
        settings: Settings,
    ) -> std::io::Result<Self> {
        Bound::bind(addr, (queue, settings)).await.map(Self)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Serves until `shutdown` fires; then stops accepting, answers the
    /// requests in flight (flushing their events to the queue), and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        metrics::describe();
        let addr = self.local_addr();
        let Bound {
            listener,
            parts: (queue, settings),
        } = self.0;
        let Service {
            router,
            close,
            batching,
        } = service(Arc::clone(&queue), &settings, shutdown.clone());
        tracing::info!(
            addr = %addr,
            queue = %queue.describe(),
            max_message_bytes = settings.batch.max_message_bytes,
            linger_ms = settings.batch.linger.as_millis() as u64,
            auth = settings.token.is_some(),
            "ingest listening"
        );
        let began = serve(
            listener,
            router,
            shutdown,
            settings.request_timeout,
            settings.shutdown_timeout,
            settings.max_connections,
        )
        .await;
        // Every request is answered or gone: send what is pending and stop.
        // Flushes still running at the shutdown timeout serve nobody (their
        // requests' connections are closed): they are dropped.
        close.cancel();
        let mut batching = batching;
        if tokio::time::timeout_at(began + settings.shutdown_timeout, &mut batching)
            .await
            .is_err()
        {
            tracing::warn!("batches still sending at the shutdown timeout; dropping them");
            batching.abort();
        }
        tracing::info!("ingest stopped");
    }
}
