//! Every row of the README's status table ("sluice-ingest"), each answered
//! with its status and a JSON error body `{"error", "detail"}`; plus 404,
//! 405, 408 and the health, readiness and metrics endpoints.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::text::incompressible_letters;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// The address in event content that must never come back in an answer.
const SECRET: &str = "198.51.100.77";

async fn ingest() -> Option<(TestQueue, RunningIngest)> {
    ingest_on(Server::Fauxqs, |_| {}).await
}

/// Posts `body` once with each of `values` as `header`: each is answered
/// `status` with `error`. The answers, for further checks.
async fn refused_each(
    ingest: &RunningIngest,
    body: &str,
    header: &str,
    values: &[&str],
    status: u16,
    error: &str,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    for value in values {
        let a = ingest.post(body.to_owned(), &[(header, *value)]).await;
        assert_eq!(a.error(status), error, "{header}: {value}");
        answers.push(a);
    }
    answers
}

/// Asserts an error answer carries no event content.
fn no_content(answer: &Answer) {
    assert!(!answer.text.contains(SECRET), "{}", answer.text);
    assert!(!answer.text.contains("198.51"), "{}", answer.text);
}

#[tokio::test]
async fn accepted_202_with_the_count() {
    let (queue, ingest) = require!(ingest().await);
    let events = tune_events(3, "a202");
    ingest.accepts(&events).await;
    queue.holds_once(&events, Duration::from_secs(10)).await;
    ingest.stop().await;
}

#[tokio::test]
async fn bad_request_400() {
    let (queue, ingest) = require!(ingest().await);
    let json_ct = [("content-type", "application/json")];

    // Invalid JSON: the detail gives line and column.
    let a = ingest
        .post(
            format!("[{{\"ip\": \"{SECRET}\"}},\n {{\"ip\": {SECRET}}}]"),
            &json_ct,
        )
        .await;
    assert_eq!(a.error(400), "invalid_json");
    let detail = a.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("line 2 column"), "{detail}");
    no_content(&a);

    // An element that is not an object.
    let a = ingest
        .post(format!("[{{\"a\": 1}}, \"{SECRET}\"]"), &json_ct)
        .await;
    assert_eq!(a.error(400), "not_an_object");
    assert!(a.text.contains("element 1"), "{}", a.text);
    no_content(&a);
    let a = ingest
        .post(
            format!("{{\"ip\": \"{SECRET}\"}}\n42\n"),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(a.error(400), "not_an_object");
    assert!(a.text.contains("line 2"), "{}", a.text);
    no_content(&a);

    // A broken gzip stream.
    let mut broken = gzip(format!("[{{\"ip\": \"{SECRET}\"}}]").as_bytes());
    broken.truncate(broken.len() - 5);
    let a = ingest
        .post(
            broken,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(a.error(400), "bad_encoding");
    let a = ingest
        .post(
            b"definitely not deflate".to_vec(),
            &[("content-encoding", "deflate")],
        )
        .await;
    assert_eq!(a.error(400), "bad_encoding");

    // Empty bodies, arrays and envelopes.
    for body in ["", "  \n", "[]", r#"{"v": 1, "events": []}"#] {
        let a = ingest.post(body, &json_ct).await;
        assert_eq!(a.error(400), "empty_body", "{body:?}");
    }
    assert_eq!(
        ingest
            .post(gzip(b""), &[("content-encoding", "gzip")])
            .await
            .error(400),
        "empty_body"
    );

    // Nesting over 100 levels, also past serde_json's own limit of 128: an
    // object, an array element, an envelope's event, an NDJSON line.
    for levels in [101, 128, 129, 10_000] {
        let event = format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels));
        for (body, ct) in [
            (event.clone(), "application/json"),
            (format!("[{{}}, {event}]"), "application/json"),
            (format!("{{\"events\": [{event}]}}"), "application/json"),
            (format!("{{}}\n{event}\n"), "application/x-ndjson"),
        ] {
            let a = ingest.post(body, &[("content-type", ct)]).await;
            assert_eq!(a.error(400), "too_deep", "{levels} levels, {ct}");
        }
    }

    // An Idempotency-Key that is empty, too long, not printable ASCII, or
    // given twice.
    for key in ["", &"k".repeat(256), "tab\tkey", "caf\u{e9}"] {
        let mut request = reqwest::Client::new()
            .post(ingest.url("/events"))
            .header("content-type", "application/json")
            .body("{\"a\": 1}");
        request = match reqwest::header::HeaderValue::from_bytes(key.as_bytes()) {
            Ok(value) => request.header("idempotency-key", value),
            Err(_) => continue,
        };
        let a = Answer::from(request.send().await.unwrap()).await;
        assert_eq!(a.error(400), "bad_idempotency_key", "{key:?}");
    }
    let a = Answer::from(
        reqwest::Client::new()
            .post(ingest.url("/events"))
            .header("idempotency-key", "one")
            .header("idempotency-key", "two")
            .body("{\"a\": 1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.error(400), "bad_idempotency_key");

    // Nothing of any of that reached the queue.
    assert_eq!(queue.remaining().await, 0);
    ingest.stop().await;
}

#[tokio::test]
async fn unauthorized_401() {
    let (queue, ingest) = require!(
        ingest_on(Server::Fauxqs, |s| {
            s.token = Some(sluice_ingest::auth::Token::new("let-me-in"));
        })
        .await
    );
    let body = json!([{"event_id": "e-401", "action": "click"}]).to_string();

    let a = ingest.post(body.clone(), &[]).await;
    assert_eq!(a.error(401), "unauthorized");
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let wrong = [
        "Bearer let-me-i",
        "Bearer let-me-in-too",
        "Basic let-me-in",
        "let-me-in",
    ];
    for a in refused_each(&ingest, &body, "authorization", &wrong, 401, "unauthorized").await {
        assert!(!a.text.contains("let-me-in"), "{}", a.text);
    }
    // The token is checked before anything else: no hint about the body.
    let a = ingest
        .post("not json", &[("content-type", "text/plain")])
        .await;
    assert_eq!(a.error(401), "unauthorized");
    assert_eq!(queue.remaining().await, 0);

    ingest
        .post(body, &[("authorization", "Bearer let-me-in")])
        .await
        .accepted(1);
    // Health endpoints stay open.
    assert_eq!(ingest.get("/healthz").await.status, 200);
    ingest.stop().await;
}

#[tokio::test]
async fn payload_too_large_413() {
    let (queue, ingest) = require!(
        ingest_on(Server::Fauxqs, |s| {
            s.max_body = 64 * 1024;
            s.max_decoded_body = 256 * 1024;
            s.batch.max_message_bytes = 16 * 1024;
        })
        .await
    );

    // Over the body limit, declared in Content-Length.
    let big = Value::Array(tune_events(400, "big"));
    let a = ingest.post_json(&big).await;
    assert_eq!(a.error(413), "body_too_large");
    assert!(a.text.contains("65536"), "{}", a.text);

    // Over the limit without a Content-Length (chunked).
    let chunk = format!("{:x}\r\n{}\r\n", 40_000, "[".repeat(40_000));
    let request = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let answer = raw_request(ingest.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"body_too_large\""), "{answer}");

    // A gzip body small on the wire but over the decompressed limit.
    let bomb = gzip(format!("[{}]", " ".repeat(1_000_000)).as_bytes());
    let a = ingest.post(bomb, &[("content-encoding", "gzip")]).await;
    assert_eq!(a.error(413), "body_too_large");
    assert!(a.text.contains("262144"), "{}", a.text);

    // One event larger than a message: the detail names the limit.
    let noise = incompressible_letters(7, 40_000);
    let events = json!([{"event_id": "ok"}, {"event_id": "huge", "ip": SECRET, "blob": noise}]);
    let a = ingest.post_json(&events).await;
    assert_eq!(a.error(413), "event_too_large");
    assert!(a.text.contains("event 1"), "{}", a.text);
    assert!(a.text.contains("16384"), "{}", a.text);
    no_content(&a);

    assert_eq!(queue.remaining().await, 0);
    ingest.stop().await;
}

#[tokio::test]
async fn unsupported_media_type_415() {
    let (queue, ingest) = require!(ingest().await);
    let body = json!({"event_id": "e-415"}).to_string();
    let types = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/json; charset=iso-8859-1",
    ];
    refused_each(
        &ingest,
        &body,
        "content-type",
        &types,
        415,
        "unsupported_media_type",
    )
    .await;
    let encodings = ["br", "zstd", "compress", "gzip, gzip"];
    refused_each(
        &ingest,
        &body,
        "content-encoding",
        &encodings,
        415,
        "unsupported_encoding",
    )
    .await;
    assert_eq!(queue.remaining().await, 0);
    ingest.stop().await;
}

/// 503 with Retry-After, within the enqueue timeout, when nothing listens
/// where the queue should be.
#[tokio::test]
async fn unavailable_503_when_nothing_listens() {
    let queue = sqs_queue_at(&closed_port_url()).await;
    let mut settings = test_settings();
    settings.batch.enqueue_timeout = Duration::from_millis(1500);
    let ingest = RunningIngest::start(queue, settings).await;
    let started = Instant::now();
    let a = ingest
        .post_json(&json!([{"event_id": "e-503", "ip": SECRET}]))
        .await;
    let took = started.elapsed();
    assert_eq!(a.error(503), "queue_unavailable");
    assert_eq!(a.headers["retry-after"], "3");
    no_content(&a);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(
        took >= Duration::from_millis(1400),
        "answered after {took:?}"
    );
    // Not ready either.
    let ready = ingest.get("/readyz").await;
    assert_eq!(ready.error(503), "not_ready");
    ingest.stop().await;
}

/// 503 with Retry-After when the queue accepts connections and never answers.
#[tokio::test]
async fn unavailable_503_when_the_queue_hangs() {
    let hole = BlackHole::start().await;
    let queue = sqs_queue_at(&hole.url).await;
    let mut settings = test_settings();
    settings.batch.enqueue_timeout = Duration::from_millis(1000);
    let ingest = RunningIngest::start(queue, settings).await;
    let started = Instant::now();
    let bodies = (0..5)
        .map(|i| json!([{"event_id": format!("hang-{i}")}]).to_string())
        .collect();
    for a in ingest.post_concurrently(bodies, &[]).await {
        assert_eq!(a.error(503), "queue_unavailable");
        assert!(a.headers.contains_key("retry-after"));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    ingest.stop().await;
}

#[tokio::test]
async fn not_found_405_and_request_timeout() {
    let (_queue, ingest) = require!(
        ingest_on(Server::Fauxqs, |s| {
            s.request_timeout = Duration::from_secs(1);
        })
        .await
    );
    assert_eq!(ingest.get("/nope").await.error(404), "not_found");
    assert_eq!(ingest.get("/events").await.error(405), "method_not_allowed");

    // A client that promises a body and stops sending: 408, and the
    // connection does not hang.
    let mut stream = tokio::net::TcpStream::connect(ingest.addr).await.unwrap();
    stream
        .write_all(b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{\"a\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    // Headers sent a byte at a time and never finished: closed too.
    let mut slow = tokio::net::TcpStream::connect(ingest.addr).await.unwrap();
    slow.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "a connection with unfinished headers is closed"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (_queue, ingest) = require!(ingest().await);
    let h = ingest.get("/healthz").await;
    assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
    let r = ingest.get("/readyz").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));

    ingest
        .post_json(&Value::Array(tune_events(20, "metrics")))
        .await
        .accepted(20);
    ingest.post("[1]", &[]).await.error(400);
    let text = ingest.get("/metrics").await.text;
    for name in [
        "sluice_ingest_requests_total{status=\"202\"}",
        "sluice_ingest_requests_total{status=\"400\"}",
        "sluice_ingest_events_accepted_total",
        "sluice_ingest_messages_sent_total",
        "sluice_ingest_json_bytes_sent_total",
        "sluice_ingest_encoded_bytes_sent_total",
        "sluice_ingest_sqs_calls_total{outcome=\"ok\"}",
        "sluice_ingest_sqs_call_seconds_bucket",
        "sluice_ingest_message_kiloevents_bucket",
    ] {
        assert!(text.contains(name), "{name} in /metrics");
    }
    assert!(metric_value(&text, "sluice_ingest_events_accepted_total") >= 20.0);
    ingest.stop().await;
}
