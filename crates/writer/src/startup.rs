//! Builds the writer from settings so that `main` and the tests run the same
//! thing: the binary [`connect`](Application::connect)s from its [`Config`];
//! tests [`build`](Application::build) an [`Application`] on `127.0.0.1:0`
//! against their own queue and database, and stop it by cancelling its token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::classify::Classifier;
pub use sluice_core::config::StartError;
use sluice_core::config::{Bound, DatabaseUrl};
use sluice_core::masking::Masker;
use sluice_core::queue::{self, Queue};
use sluice_core::sink::{self, Sink, SinkError};
use sluice_core::telemetry;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::committer::Committer;
use crate::configuration::{Config, Tuning};
use crate::consumer::Consumer;
use crate::health::Health;
use crate::http::{HttpState, router};
use crate::lease::Leases;

/// Connects to the database and migrates it, waiting for one that is still
/// starting.
pub async fn connect_sink(url: &DatabaseUrl, tuning: &Tuning) -> Result<Arc<dyn Sink>, StartError> {
    // Which connection failed, never its password.
    let failed = |e: SinkError| StartError::Database(format!("{}: {e}", url.redacted()));
    let sink = sink::connect(url, tuning.db_connections)
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

/// The health listener bound, with the queue, database, masker and tuning
/// it drains with.
pub struct Application(Bound<Parts>);

/// What the writer drains with: the queue, the database, the masker, the tuning.
type Parts = (Arc<dyn Queue>, Arc<dyn Sink>, Masker, Tuning);

impl Application {
    /// What `sluice-writer serve` runs: the masker, the queue (answering)
    /// and the database (migrated) that `config` names, and the health
    /// listener bound.
    pub async fn connect(config: Config) -> Result<Self, StartError> {
        telemetry::install_metrics_in_background();
        let masker = config.pii.masker()?;
        let database = config.database_url()?;
        let queue = queue::connect_checked(config.queue()?).await?;
        let sink = connect_sink(database, &config.tuning).await?;
        let service = config.service;
        Self::build(service.addr, queue, sink, masker, config.tuning)
            .await
            .map_err(service.cannot_listen())
    }

    /// Binds the health listener; the queue and sink are already connected.
    pub async fn build(
        addr: SocketAddr,
        queue: Arc<dyn Queue>,
        sink: Arc<dyn Sink>,
        masker: Masker,
        tuning: Tuning,
    ) -> std::io::Result<Self> {
        Bound::bind(addr, (queue, sink, masker, tuning))
            .await
            .map(Self)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Drains the queue until `shutdown` fires, then stops polling, commits
    /// and deletes what it holds, releases what it could not commit, and
    /// returns.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::metrics::describe();
        let Bound {
            listener,
            parts: (queue, sink, masker, tuning),
        } = self.0;
        let leases = Leases::new(tuning.visibility);
        let classifier = Arc::new(
            Classifier::new(masker, tuning.max_record_bytes)
                .with_max_rejected_bytes(tuning.max_rejected_bytes),
        );
        // Room for two receives per consumer: enough to keep batches full, small
        // enough that a slow database stops the receiving, not memory.
        let (tx, rx) = mpsc::channel(tuning.consumers * 20);
        let row_budget = Arc::new(tokio::sync::Semaphore::new(tuning.max_held_rows));

        let health = Arc::new(Health::default());
        let http_stop = CancellationToken::new();
        let http = {
            let state = HttpState {
                queue: Arc::clone(&queue),
                sink: Arc::clone(&sink),
                health: Arc::clone(&health),
                metrics: telemetry::metrics_handle(),
            };
            let stop = http_stop.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, router(state))
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "health listener failed");
                }
            })
        };

        let lease_stop = CancellationToken::new();
        let keeper = tokio::spawn(
            leases
                .clone()
                .keep_alive(Arc::clone(&queue), lease_stop.clone()),
        );

        let purger = tokio::spawn(crate::purge::run(
            Arc::clone(&sink),
            tuning.idempotency_retention,
            lease_stop.clone(),
        ));

        let depth = tokio::spawn(crate::depth::run(
            Arc::clone(&queue),
            tuning.queue_depth_interval,
            lease_stop.clone(),
        ));

        let mut consumers = JoinSet::new();
        for _ in 0..tuning.consumers {
            let consumer = Consumer {
                queue: Arc::clone(&queue),
                classifier: Arc::clone(&classifier),
                leases: leases.clone(),
                deliveries: tx.clone(),
                row_budget: Arc::clone(&row_budget),
                max_held_rows: tuning.max_held_rows,
                wait: tuning.wait,
                visibility: tuning.visibility,
                health: Arc::clone(&health),
            };
            consumers.spawn(consumer.run(shutdown.clone()));
        }
        drop(tx);

        let committer = Committer {
            queue: Arc::clone(&queue),
            sink: Arc::clone(&sink),
            leases: leases.clone(),
            batch_rows: tuning.batch_rows,
            batch_messages: tuning.batch_messages,
            linger: tuning.linger,
            committers: tuning.committers,
            shutdown_timeout: tuning.shutdown_timeout,
            health,
        };
        tracing::info!(
            queue = %queue.describe(),
            database = sink.kind(),
            consumers = tuning.consumers,
            "writer started"
        );
        // The committer ends when every consumer has stopped and the channel
        // is drained.
        committer.run(rx, shutdown.clone()).await;
        while consumers.join_next().await.is_some() {}
        lease_stop.cancel();
        let _ = keeper.await;
        let _ = purger.await;
        let _ = depth.await;
        http_stop.cancel();
        let _ = http.await;
        tracing::info!(still_held = leases.held_count(), "writer stopped");
    }
}
