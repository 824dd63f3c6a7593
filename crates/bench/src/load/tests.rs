//! Tests of answer classification, headers and the load loop against
//! local listeners.

use super::*;

#[test]
fn classify_answers() {
    assert_eq!(
        classify(202, br#"{"accepted": 100}"#),
        Outcome::Accepted {
            reported: Some(100)
        }
    );
    assert_eq!(classify(202, b""), Outcome::Accepted { reported: None });
    assert_eq!(
        classify(
            503,
            br#"{"error": "queue_unavailable", "detail": "SQS did not answer"}"#
        ),
        Outcome::Status {
            status: 503,
            code: Some("queue_unavailable".into())
        }
    );
    assert_eq!(
        classify(502, b"<html>bad gateway</html>"),
        Outcome::Status {
            status: 502,
            code: None
        }
    );
    // A long or odd code is not used as a report key.
    assert_eq!(
        classify(400, br#"{"error": "a sentence with spaces"}"#),
        Outcome::Status {
            status: 400,
            code: None
        }
    );
}

#[test]
fn record_counts_events_and_maps_requests() {
    let plan = Plan::new(250, 100);
    let bodies = vec![Bytes::from_static(b"[]"); plan.requests()];
    let mut result = LoadResult::empty(0, 3);
    result.record(
        &plan,
        &bodies,
        2,
        Outcome::Accepted { reported: Some(50) },
        7,
    );
    result.record(
        &plan,
        &bodies,
        1,
        Outcome::Status {
            status: 503,
            code: Some("queue_unavailable".into()),
        },
        8,
    );
    result.record(
        &plan,
        &bodies,
        0,
        Outcome::Accepted { reported: Some(99) },
        9,
    );
    assert_eq!(result.events_sent, 250);
    assert_eq!(result.events_accepted, 150);
    assert_eq!(result.requests_failed(), 1);
    assert_eq!(result.accepted_at_us, vec![Some(9), None, Some(7)]);
    assert_eq!(result.errors["HTTP 503 queue_unavailable"], 1);
    assert_eq!(
        result.warnings["accepted count differs from events sent"],
        1
    );
    assert_eq!(result.bytes_sent, 6);
}

#[test]
fn headers_follow_the_format() {
    let config = LoadConfig {
        url: reqwest::Url::parse("http://127.0.0.1:1/events").unwrap(),
        token: Some("s3cret".into()),
        concurrency: 1,
        timeout: Duration::from_secs(1),
        format: BodyFormat {
            ndjson: true,
            gzip: true,
        },
        progress_every: None,
        retry_for: Duration::ZERO,
        idempotency_prefix: None,
    };
    let h = headers(&config).unwrap();
    assert_eq!(h[CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(h[CONTENT_ENCODING], "gzip");
    assert_eq!(h[AUTHORIZATION], "Bearer s3cret");
    assert!(h[AUTHORIZATION].is_sensitive());
    let plain = LoadConfig {
        token: None,
        format: BodyFormat::default(),
        ..config
    };
    let h = headers(&plain).unwrap();
    assert_eq!(h[CONTENT_TYPE], "application/json");
    assert!(!h.contains_key(CONTENT_ENCODING) && !h.contains_key(AUTHORIZATION));
}

#[tokio::test]
async fn refused_connections_are_reported_by_kind() {
    // A free port: nothing listens on it.
    let port = sluice_testkit::free_port();
    let config = plain_config(&format!("http://127.0.0.1:{port}/events"), 2);
    let plan = Plan::new(30, 10);
    let bodies = Arc::new(vec![Bytes::from_static(b"[]"); plan.requests()]);
    let result = run(&config, plan, bodies).await.unwrap();
    assert_eq!(result.requests, 3);
    assert_eq!(result.events_accepted, 0);
    assert_eq!(
        result.errors.get("connect: connection refused"),
        Some(&3),
        "{:?}",
        result.errors
    );
    assert_eq!(result.latency.len(), 0);
}

#[tokio::test]
async fn accepted_requests_are_timed_and_mapped() {
    // A one-file HTTP/1.1 server answering 202 to every request, then 503
    // to the third: enough to drive the client end to end.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let server = {
        let served = served.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests are "[]" bodies with Content-Length: 2.
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            if buf.len() < end + 4 + 2 {
                                break;
                            }
                            buf.drain(..end + 4 + 2);
                            let i = served.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = if i == 2 {
                                (
                                    "503 Service Unavailable",
                                    r#"{"error":"queue_unavailable","detail":"x"}"#,
                                )
                            } else {
                                ("202 Accepted", r#"{"accepted":10}"#)
                            };
                            let answer = format!(
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        })
    };
    let config = plain_config(&format!("http://{addr}/events"), 1);
    let plan = Plan::new(40, 10);
    let bodies = Arc::new(vec![Bytes::from_static(b"[]"); plan.requests()]);
    let result = run(&config, plan, bodies).await.unwrap();
    server.abort();
    assert_eq!(result.requests, 4);
    assert_eq!(result.requests_accepted, 3);
    assert_eq!(result.events_accepted, 30);
    assert_eq!(result.errors["HTTP 503 queue_unavailable"], 1);
    assert_eq!(result.latency.len(), 4);
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    // One worker: requests go out in order, so the third one failed.
    assert!(result.accepted_at_us[2].is_none());
    let times: Vec<i64> = result.accepted_at_us.iter().flatten().copied().collect();
    assert_eq!(times.len(), 3);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        times
            .iter()
            .all(|&t| t >= result.started_at_us && t <= result.finished_at_us)
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// JSON bodies, no token, no retries, a 5 s timeout.
fn plain_config(url: &str, concurrency: usize) -> LoadConfig {
    LoadConfig {
        url: reqwest::Url::parse(url).unwrap(),
        token: None,
        concurrency,
        timeout: Duration::from_secs(5),
        format: BodyFormat::default(),
        progress_every: None,
        retry_for: Duration::ZERO,
        idempotency_prefix: None,
    }
}
