//! The HTTP/1.1 server loop: accept, serve each connection, and on shutdown
//! stop accepting and let in-flight requests finish — within a time limit.
//!
//! This is `axum::serve` with two things it does not offer: a timeout for
//! reading request headers (hyper's needs a timer, which `axum::serve` does
//! not set, so a client sending headers a byte a minute would hold its
//! connection forever), an upper bound on the graceful drain, and a cap on
//! open connections (`INGEST_MAX_CONNECTIONS`): at the cap the loop stops
//! accepting, so further clients wait in the listen backlog instead of each
//! taking a task and buffers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `shutdown`; then closes the listener,
/// lets open requests finish for up to `drain`, and closes what is left.
/// Returns when shutdown began.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
    drain: Duration,
    max_connections: usize,
) -> Instant {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let began = Instant::now();
    tracing::info!(
        open_connections = connections.len(),
        "stopped accepting; finishing requests in flight"
    );
    if tokio::time::timeout_at(began + drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            after_secs = drain.as_secs(),
            "requests still in flight at the shutdown timeout; closing their connections"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    began
}
