//! `/healthz`, `/readyz` and `/metrics` on `WRITER_ADDR`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sluice_core::queue::Queue;
use sluice_core::sink::Sink;

use crate::health::Health;

#[derive(Clone)]
pub struct HttpState {
    pub queue: Arc<dyn Queue>,
    pub sink: Arc<dyn Sink>,
    /// What the receive and commit loops report.
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when both the database and the queue answer within two seconds,
/// batches commit and receives succeed (a full disk, say, fails the latter
/// two while pings still answer).
async fn readyz(State(state): State<HttpState>) -> Response {
    let limit = Duration::from_secs(2);
    let database = matches!(
        tokio::time::timeout(limit, state.sink.ping()).await,
        Ok(Ok(()))
    );
    let queue = matches!(
        tokio::time::timeout(limit, state.queue.depth()).await,
        Ok(Ok(_))
    );
    let problems = state.health.problems();
    if database && queue && problems.is_empty() {
        return Json(json!({"status": "ready"})).into_response();
    }
    let unreachable = match (database, queue) {
        (false, false) => Some("database and queue unreachable"),
        (false, true) => Some("database unreachable"),
        (true, false) => Some("queue unreachable"),
        (true, true) => None,
    };
    let detail = unreachable
        .map(str::to_owned)
        .into_iter()
        .chain(problems)
        .collect::<Vec<_>>()
        .join("; ");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "not_ready", "detail": detail})),
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
