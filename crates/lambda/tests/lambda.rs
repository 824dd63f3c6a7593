//! The Lambda function end to end, short of AWS: an invocation event as a
//! function URL / API Gateway delivers it is turned into a request the way
//! `lambda_http::run` does (its own deserializer and adapter), the router of
//! `sluice-ingest-lambda` answers it, and the answer is what Lambda would
//! return to the caller. The events must then be in a real (emulated) SQS
//! queue, by the time the 202 is out.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use serde_json::{Value, json};
use sluice_core::queue::Queue;
use sluice_core::queue::sqs::SqsQueue;
use sluice_core::wire::{Item, decode_body};
use sluice_ingest::configuration::Settings;
use sluice_testkit::{require, service};

/// The settings Config::load makes on Lambda with nothing set.
fn settings() -> Settings {
    let mut settings = Settings::default();
    sluice_ingest_lambda::no_linger_unless_set(&mut settings, false, false);
    assert_eq!(settings.batch.linger, Duration::ZERO);
    assert_eq!(settings.batch.max_linger, Duration::ZERO);
    settings
}

fn events() -> Vec<Value> {
    vec![
        json!({"event_id": "lambda-1", "action": "click", "offer_id": 7, "ip": "192.0.2.10"}),
        json!({"event_id": "lambda-2", "action": "conversion", "payout": "1.25"}),
        json!({"user_id": "u-lambda", "ip": "198.51.100.7", "app_version": "2.3.0"}),
    ]
}

/// A function URL (API Gateway HTTP API, payload 2.0) event for `POST /events`.
fn function_url_event(headers: Value, body: &str, base64: bool) -> Value {
    http_api_event("$default", "/events", headers, body, base64)
}

/// An API Gateway HTTP API (payload 2.0) event; a named stage is in the path.
fn http_api_event(stage: &str, path: &str, headers: Value, body: &str, base64: bool) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "source=test",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "sluice-test"
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": stage,
            "time": "22/Nov/2026:05:00:00 +0000",
            "timeEpoch": 1_795_000_000_000_u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

/// An API Gateway REST API (payload 1.0) event for `POST /events`.
fn rest_api_event(body: &str) -> Value {
    json!({
        "resource": "/events",
        "path": "/events",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json", "host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {
            "content-type": ["application/json"],
            "host": ["abc.execute-api.us-east-1.amazonaws.com"]
        },
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "abc123",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "sluice-test"},
            "resourcePath": "/events",
            "httpMethod": "POST",
            "apiId": "abc",
            "path": "/prod/events"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Invokes the function's router with `event` as `lambda_http::run` would,
/// and returns the answer as Lambda serialises it back to the caller.
async fn invoke(queue: &SqsQueue, event: Value) -> Value {
    let shared: Arc<dyn Queue> = Arc::new(queue.clone());
    let router = sluice_ingest_lambda::app(shared, &settings());
    // As the runtime reads it: from the invocation's JSON text.
    let request: LambdaRequest =
        serde_json::from_str(&event.to_string()).expect("a valid Lambda event");
    let mut adapter = Adapter::from(router);
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("the router is infallible");
    serde_json::to_value(&response).unwrap()
}

/// The JSON body of a Lambda answer.
fn body_of(answer: &Value) -> Value {
    let body = answer["body"].as_str().expect("a body");
    assert_eq!(
        answer["isBase64Encoded"],
        json!(false),
        "JSON goes back as text"
    );
    serde_json::from_str(body).expect("a JSON body")
}

/// Every event in the queue, received until `count` arrived (or the
/// deadline), then once more to see nothing extra is there.
async fn received(queue: &SqsQueue, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last_look = false;
    loop {
        let wait = if last_look {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        let messages = queue
            .receive(10, wait, Duration::from_secs(60))
            .await
            .unwrap();
        for m in &messages {
            for item in decode_body(m.body.as_bytes()).items {
                match item {
                    Item::Record(r) => events.push(Value::Object(r)),
                    Item::Invalid { reason, .. } => panic!("undecodable item: {reason}"),
                }
            }
        }
        if last_look {
            return events;
        }
        if events.len() >= count || tokio::time::Instant::now() >= deadline {
            last_look = true;
        }
    }
}

/// Invokes the function with `event` over a fresh queue on the emulator
/// (`None`, skip, without one): the queue and the answer.
async fn invoke_on_fresh_queue(event: Value) -> Option<(SqsQueue, Value)> {
    let endpoint = service("SLUICE_TEST_SQS_ENDPOINT")?;
    let queue = sluice_testkit::fresh_queue(&endpoint, &[]).await;
    let answer = invoke(&queue, event).await;
    Some((queue, answer))
}

/// `event` is answered 202 with the count of `expected`, and — answered
/// means in the queue already — one look at the queue finds exactly
/// `expected`.
async fn reaches_the_queue(event: Value, expected: Vec<Value>) {
    let (queue, answer) = require!(invoke_on_fresh_queue(event).await);
    assert_eq!(answer["statusCode"], json!(202), "{answer}");
    assert_eq!(body_of(&answer), json!({"accepted": expected.len()}));
    assert_eq!(received(&queue, expected.len()).await, expected);
}

#[tokio::test]
async fn function_url_json_body_reaches_the_queue() {
    let body = serde_json::to_string(&events()).unwrap();
    let event = function_url_event(
        json!({"content-type": "application/json", "host": "abcdefghij.lambda-url.us-east-1.on.aws"}),
        &body,
        false,
    );
    reaches_the_queue(event, events()).await;
}

#[tokio::test]
async fn function_url_base64_gzip_body_reaches_the_queue() {
    // NDJSON, gzipped: a binary body, which Lambda hands over in base64.
    let ndjson: String = events()
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<Vec<_>>()
        .concat();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ndjson.as_bytes()).unwrap();
    let body = STANDARD.encode(gz.finish().unwrap());
    let event = function_url_event(
        json!({
            "content-type": "application/x-ndjson",
            "content-encoding": "gzip",
            "host": "abcdefghij.lambda-url.us-east-1.on.aws"
        }),
        &body,
        true,
    );
    reaches_the_queue(event, events()).await;
}

#[tokio::test]
async fn rest_api_event_reaches_the_queue() {
    let one = json!({"user_id": "u-rest", "device_id": "d-1"});
    reaches_the_queue(rest_api_event(&one.to_string()), vec![one]).await;
}

#[tokio::test]
async fn http_api_named_stage_reaches_the_queue() {
    let one = json!({"user_id": "u-stage", "ip": "192.0.2.44"});
    let event = http_api_event(
        "prod",
        "/prod/events",
        json!({"content-type": "application/json"}),
        &one.to_string(),
        false,
    );
    reaches_the_queue(event, vec![one]).await;
}

#[tokio::test]
async fn invalid_json_is_a_400_with_a_json_error_and_nothing_enqueued() {
    let event = function_url_event(
        json!({"content-type": "application/json"}),
        "{\"event_id\": \"x\", ",
        false,
    );
    let (queue, answer) = require!(invoke_on_fresh_queue(event).await);

    assert_eq!(answer["statusCode"], json!(400));
    let body = body_of(&answer);
    assert_eq!(body["error"], json!("invalid_json"));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(received(&queue, 0).await.is_empty());
}

/// Runs the binary outside Lambda with `env` (and nothing else of ours).
fn run_binary(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-ingest-lambda"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(env.iter().copied());
    let out = command.output().expect("run sluice-ingest-lambda");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_setting_is_one_line_naming_the_variable() {
    let (code, stderr) = run_binary(&[("QUEUE_URL", "sqlite:///tmp/queue.db")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: QUEUE_URL: "), "{stderr}");

    let (code, stderr) = run_binary(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.starts_with("error: QUEUE_URL: "), "{stderr}");
}

#[test]
fn outside_lambda_it_says_so_in_one_line() {
    let (code, stderr) = run_binary(&[(
        "QUEUE_URL",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue",
    )]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: AWS_LAMBDA_RUNTIME_API: "),
        "{stderr}"
    );
}
