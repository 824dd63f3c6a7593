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

#[derive(Clone)]
pub struct HttpState {
    pub queue: Arc<dyn Queue>,
    pub sink: Arc<dyn Sink>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when both the database and the queue answer within two seconds.
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
    if database && queue {
        return Json(json!({"status": "ready"})).into_response();
    }
    let detail = match (database, queue) {
        (false, false) => "database and queue unreachable",
        (false, true) => "database unreachable",
        _ => "queue unreachable",
    };
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
