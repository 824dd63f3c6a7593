//! Graceful shutdown: requests in flight when it starts are answered 202 and
//! their events are in the queue; new connections are refused; the service
//! returns.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

async fn requests_in_flight_are_answered_and_flushed(server: Server) {
    let (queue, wrapped) = require!(gated_queue(server).await);
    let mut settings = test_settings();
    settings.batch.flush_concurrency = 6;
    settings.batch.enqueue_timeout = Duration::from_secs(20);
    let ingest = RunningIngest::start(wrapped.clone(), settings).await;

    // Six requests, each in a flush of its own held at the queue.
    let mut expected = Vec::new();
    let mut answers = Vec::new();
    for i in 0..6 {
        let events = tune_events(50, &format!("shutdown-{i}"));
        expected.extend(events.clone());
        let request = ingest
            .client
            .post(ingest.url("/events"))
            .header("content-type", "application/json")
            .body(Value::Array(events).to_string());
        answers.push(tokio::spawn(async move {
            Answer::from(request.send().await.unwrap()).await
        }));
        eventually(
            Duration::from_secs(10),
            "the request's send to be held",
            || async { wrapped.held.load(Ordering::SeqCst) == i + 1 },
        )
        .await;
    }

    ingest.shutdown.cancel();
    // New connections are refused once the listener is closed.
    let addr = ingest.addr;
    eventually(
        Duration::from_secs(10),
        "the listener to close",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert!(!ingest.handle.is_finished(), "waits for requests in flight");

    wrapped.open();
    for a in answers {
        a.await.unwrap().accepted(50);
    }
    tokio::time::timeout(Duration::from_secs(15), ingest.handle)
        .await
        .expect("the service returns after its last answer")
        .unwrap();
    queue.holds_once(&expected, Duration::from_secs(20)).await;
}

/// Requests that cannot finish before the shutdown timeout do not hold the
/// service up: it returns, and those requests get no 202.
async fn shutdown_timeout_bounds_the_wait(server: Server) {
    let (_queue, wrapped) = require!(gated_queue(server).await);
    let mut settings = test_settings();
    settings.shutdown_timeout = Duration::from_secs(1);
    settings.batch.enqueue_timeout = Duration::from_secs(60);
    let ingest = RunningIngest::start(wrapped.clone(), settings).await;
    let request = ingest
        .client
        .post(ingest.url("/events"))
        .body(Value::Array(tune_events(5, "stuck")).to_string());
    let answer = tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    eventually(Duration::from_secs(10), "the send to be held", || async {
        wrapped.held.load(Ordering::SeqCst) == 1
    })
    .await;
    ingest.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), ingest.handle)
        .await
        .expect("the service returns within the shutdown timeout (plus the batch deadline)")
        .unwrap();
    assert!(!matches!(answer.await.unwrap(), Ok(202)));
}

on_sqs_servers! {
    requests_in_flight_are_answered_and_flushed => requests_in_flight_are_answered_and_flushed();
    shutdown_timeout_bounds_the_wait => shutdown_timeout_bounds_the_wait();
}
