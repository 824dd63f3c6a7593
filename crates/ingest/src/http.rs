//! The routes: `POST /events`, `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! `GET /openapi.json` (documented in `crates/ingest/openapi.json`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sluice_core::idempotency;
use sluice_core::queue::Queue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Token;
use crate::batcher::Batcher;
use crate::body;
use crate::budget::{Budget, Room};
use crate::error::ApiError;
use crate::events::Events;
use crate::metrics;
use crate::openapi;
use crate::pack;
use crate::parse;

/// Limits a request is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `INGEST_MAX_BODY`: bytes on the wire.
    pub max_body: usize,
    /// `INGEST_MAX_DECODED_BODY`: bytes after decompression.
    pub max_decoded_body: usize,
    /// `INGEST_MAX_MESSAGE_BYTES`: one event must fit in one message.
    pub max_message_bytes: usize,
    /// `INGEST_REQUEST_TIMEOUT_SECS`: to receive the body.
    pub request_timeout: Duration,
    /// `INGEST_RETRY_AFTER_SECS`: suggested with every 503.
    pub retry_after: u64,
    /// `INGEST_MAX_BUFFERED_BYTES`: body bytes, read and decompressed, of
    /// all requests at once.
    pub max_buffered: usize,
}

#[derive(Clone)]
pub struct HttpState {
    inner: Arc<Inner>,
}

struct Inner {
    batcher: Batcher,
    budget: Budget,
    token: Option<Token>,
    limits: Limits,
    queue: Arc<dyn Queue>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
}

impl HttpState {
    pub fn new(
        batcher: Batcher,
        token: Option<Token>,
        limits: Limits,
        queue: Arc<dyn Queue>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                budget: Budget::new(limits.max_buffered),
                batcher,
                token,
                limits,
                queue,
                metrics: sluice_core::telemetry::metrics_handle(),
                shutdown,
            }),
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/events", post(post_events))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

async fn post_events(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = match accept(&state.inner, &headers, body).await {
        Ok(accepted) => {
            metrics::accepted(accepted);
            (StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response()
        }
        Err(e) => {
            tracing::debug!(
                status = e.status().as_u16(),
                error = e.code(),
                "request refused"
            );
            e.into_response()
        }
    };
    metrics::request(response.status(), started.elapsed());
    response
}

/// Checks, reads, parses and enqueues one request; the number of events.
async fn accept(state: &Inner, headers: &HeaderMap, body: Body) -> Result<usize, ApiError> {
    // From here until it is handed over, the batcher waits for this request.
    let arrival = state.batcher.arrival();
    if let Some(token) = &state.token {
        token.check(headers)?;
    }
    let key = idempotency_key(headers)?;
    let format = body::format(headers)?;
    let encoding = body::encoding(headers)?;
    let limits = &state.limits;
    let length = body::content_length(headers);
    if length.is_some_and(|n| n > limits.max_body as u64) {
        return Err(ApiError::BodyTooLarge {
            limit: limits.max_body,
        });
    }
    let overloaded = ApiError::Overloaded {
        retry_after: limits.retry_after,
    };
    // The body's room in the memory budget, held until it is parsed.
    let mut room = Room::default();
    let (raw, inflated) = tokio::time::timeout(
        limits.request_timeout,
        body::read(
            body,
            limits.max_body,
            length,
            encoding,
            limits.max_decoded_body,
            &state.budget,
            &mut room,
        ),
    )
    .await
    .map_err(|_| ApiError::Timeout {
        seconds: limits.request_timeout.as_secs(),
    })?
    .map_err(|e| e.unwrap_or(overloaded))?;
    if raw.is_empty() {
        return Err(parse::ParseError::Empty.into());
    }
    let (max_decoded, max_message) = (limits.max_decoded_body, limits.max_message_bytes);
    let (budget, retry_after) = (state.budget.clone(), limits.retry_after);
    let events = crate::cpu::run(move || {
        let mut room = room;
        let json = body::decode_within(raw, encoding, max_decoded, inflated, &budget, &mut room)
            .map_err(|e| e.unwrap_or(ApiError::Overloaded { retry_after }))?;
        let events = parse::parse(&json, format)?;
        drop(json);
        drop(room);
        check_sizes(&events, max_message)?;
        Ok::<_, ApiError>(events)
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    let mut events = events;
    events.set_key(key);
    let count = events.len();
    state
        .batcher
        .submit(events, arrival)
        .await
        .map_err(|e| ApiError::enqueue(e, limits.retry_after))?;
    Ok(count)
}

/// The identity key of the request's `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || !idempotency::valid_key(value.as_bytes()) {
        return Err(ApiError::BadIdempotencyKey);
    }
    Ok(Some(idempotency::identity_key(value.as_bytes())))
}

/// Every event must fit in one message by itself.
fn check_sizes(events: &Events, max_message_bytes: usize) -> Result<(), ApiError> {
    let always = pack::always_fits(max_message_bytes);
    for (index, event) in events.iter().enumerate() {
        if event.len() > always && !pack::fits_alone(event, max_message_bytes) {
            return Err(ApiError::EventTooLarge {
                index,
                limit: max_message_bytes,
            });
        }
    }
    Ok(())
}

/// Ready when the queue answers within two seconds, and not shutting down.
async fn readyz(State(state): State<HttpState>) -> Response {
    let state = &state.inner;
    let (code, detail) = if state.shutdown.is_cancelled() {
        ("shutting_down", "the service is shutting down")
    } else {
        match tokio::time::timeout(Duration::from_secs(2), state.queue.depth()).await {
            Ok(Ok(_)) => return Json(json!({"status": "ready"})).into_response(),
            Ok(Err(_)) => ("not_ready", "the queue does not answer"),
            Err(_) => ("not_ready", "the queue did not answer within 2 s"),
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": code, "detail": detail})),
    )
        .into_response()
}

async fn render_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.inner.metrics.render(),
    )
}
