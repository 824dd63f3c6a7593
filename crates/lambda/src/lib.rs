//! `sluice-ingest-lambda`: sluice-ingest's router on AWS Lambda, behind a
//! function URL or API Gateway. `lambda_http` turns each invocation's event
//! into an HTTP request for the very same axum router
//! ([`sluice_ingest::startup::service`]), so the answers, limits and error
//! bodies are those of `sluice-ingest`. It is a crate of its own so that the
//! Lambda runtime is linked into this binary only.
//!
//! What differs from `sluice-ingest`, and why:
//! - No listener: the runtime API hands over requests, so `INGEST_ADDR` is
//!   not read.
//! - No start-up queue check: it calls `GetQueueAttributes`, and the
//!   function's role needs only `sqs:SendMessage`. A wrong `QUEUE_URL` shows
//!   as 503 `queue_unavailable` on the first request, and in the log.
//! - API Gateway stages: `lambda_http` puts a named stage in front of the
//!   path (`/prod/events`); the stage is taken off again here, so the routes
//!   are the same whatever the stage is called.
//! - `INGEST_LINGER_MS` and `INGEST_MAX_LINGER_MS` default to 0: an instance
//!   serves one invocation at a time, so no other request can join a batch,
//!   and waiting would only delay the answer.
//!
//! What is kept: the answer (202) is sent only once SQS acknowledged every
//! event, so when the runtime freezes the instance after the response
//! nothing is left pending in the batcher.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{self, Uri, uri::PathAndQuery};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use lambda_http::request::RequestContext;
use lambda_http::{RequestExt, Service};
use sluice_core::config::{self, ConfigError, Env, LogFormat, QueueUrl, require_queue_url};
use sluice_core::queue::Queue;
use sluice_core::queue::sqs::SqsSettings;
use sluice_ingest::configuration::Settings;
use sluice_ingest::startup;
use tokio_util::sync::CancellationToken;

/// Lambda's batching defaults: no waiting for other requests (an instance
/// serves one at a time), unless `INGEST_LINGER_MS` / `INGEST_MAX_LINGER_MS`
/// were set.
pub fn no_linger_unless_set(settings: &mut Settings, linger_set: bool, max_linger_set: bool) {
    if !linger_set {
        settings.batch.linger = Duration::ZERO;
    }
    if !max_linger_set {
        settings.batch.max_linger = settings.batch.linger;
    }
}

/// Everything the function reads from its environment, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `QUEUE_URL`: an SQS queue (an embedded queue file has no meaning on
    /// Lambda), and how to reach it.
    pub queue: SqsSettings,
    pub settings: Settings,
    pub log_format: LogFormat,
}

impl Config {
    /// What `sluice-ingest` reads, but for `INGEST_ADDR`, with Lambda's
    /// batching defaults.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let log_format = config::log_format(env)?;
        let mut settings = Settings::load(env)?;
        let queue = match require_queue_url(config::queue_url(env)?.as_ref())? {
            QueueUrl::Sqs(url) => SqsSettings::load(env, url.clone()),
            QueueUrl::Sqlite(_) => {
                return Err(ConfigError::new(
                    "QUEUE_URL",
                    "names an embedded queue file; on Lambda it must be an SQS queue URL",
                ));
            }
        };
        no_linger_unless_set(
            &mut settings,
            env.is_set("INGEST_LINGER_MS"),
            env.is_set("INGEST_MAX_LINGER_MS"),
        );
        Ok(Self {
            queue,
            settings,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_from_a_list_with_lambdas_defaults() {
        let sqs = "https://sqs.eu-west-1.amazonaws.com/123456789012/q";
        let config = Config::load(&Env::from_pairs([
            ("QUEUE_URL", sqs),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(config.queue.queue_url, sqs);
        assert!(config.queue.credentials.is_some());
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(config.settings.batch.linger, Duration::ZERO);
        assert_eq!(config.settings.batch.max_linger, Duration::ZERO);
        let config = Config::load(&Env::from_pairs([
            ("QUEUE_URL", sqs),
            ("INGEST_LINGER_MS", "3"),
            // Not read on Lambda: no listener.
            ("INGEST_ADDR", "nowhere"),
        ]))
        .unwrap();
        assert_eq!(config.settings.batch.max_linger, Duration::from_millis(3));
        let err = Config::load(&Env::from_pairs([("QUEUE_URL", "sqlite:q.db")])).unwrap_err();
        assert_eq!(err.variable, "QUEUE_URL");
    }
}

/// What the function serves: ingest's router, with its batcher running on
/// the current Tokio runtime, behind the stage fix-up.
///
/// Nothing ever shuts it down: the runtime stops the process between
/// invocations at the earliest, and by then every request was answered,
/// which means its events are in the queue. The batcher task lives as long
/// as the router (it ends when the router's handles are dropped).
pub fn app(queue: Arc<dyn Queue>, settings: &Settings) -> Function {
    let service = startup::service(queue, settings, CancellationToken::new());
    // Detached on purpose: see above.
    drop(service.batching);
    Function {
        router: service.router,
        // With this variable set, lambda_http leaves the stage out itself.
        strip_stage: std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_none(),
    }
}

/// The router as a service of Lambda requests. The stage must come off
/// before routing, which a layer on the router itself would be too late for.
#[derive(Clone)]
pub struct Function {
    router: Router,
    strip_stage: bool,
}

impl Service<lambda_http::Request> for Function {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Service::<lambda_http::Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: lambda_http::Request) -> Self::Future {
        if self.strip_stage {
            strip_stage(&mut request);
        }
        self.router.call(request)
    }
}

/// `/<stage>/events` → `/events`, for a named API Gateway stage.
fn strip_stage<B>(request: &mut http::Request<B>) {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return;
    };
    let uri = request.uri();
    let Some(rest) = uri
        .path()
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(&*stage))
    else {
        return;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}
