//! Events really reach the queue: every body form and encoding, many
//! concurrent clients sharing envelopes, and failures SQS reports per entry
//! (HTTP 200 with a `Failed` list), per call (`BatchRequestTooLong`) and per
//! message size.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use sluice_ingest::configuration::Settings;
use sluice_testkit::text::incompressible_letters;

use crate::helpers::*;

const DRAIN: Duration = Duration::from_secs(20);

async fn every_body_form_and_encoding_lands(server: Server) {
    let (queue, ingest) = require!(ingest_on(server, |_| {}).await);
    let mut expected = Vec::new();
    let mut batch = |n: usize, tag: &str| {
        let events = tune_events(n, tag);
        expected.extend(events.clone());
        events
    };

    // One object.
    let one = batch(1, "object");
    ingest.post_json(&one[0]).await.accepted(1);
    // An array.
    let array = batch(25, "array");
    ingest.post_json(&Value::Array(array)).await.accepted(25);
    // NDJSON, with a blank line and CRLF endings.
    let lines = batch(7, "ndjson");
    let text = ndjson(&lines).replace('\n', "\r\n\n");
    ingest
        .post(text, &[("content-type", "application/x-ndjson")])
        .await
        .accepted(7);
    // An envelope, as TUNE delivers them.
    let env = batch(9, "envelope");
    let body =
        json!({"v": 1, "id": "client-id", "received_at": "2026-01-01T00:00:00Z", "events": env});
    ingest.post_json(&body).await.accepted(9);
    // gzip and deflate (zlib), and raw deflate; no Content-Type means JSON.
    let gz = batch(30, "gzip");
    ingest
        .post(
            gzip(Value::Array(gz).to_string().as_bytes()),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await
        .accepted(30);
    let df = batch(11, "deflate");
    ingest
        .post(
            zlib(ndjson(&df).as_bytes()),
            &[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "deflate"),
            ],
        )
        .await
        .accepted(11);
    let raw = batch(4, "rawdeflate");
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, Value::Array(raw).to_string().as_bytes()).unwrap();
    ingest
        .post(e.finish().unwrap(), &[("content-encoding", "deflate")])
        .await
        .accepted(4);

    let drained = queue.holds_once(&expected, DRAIN).await;
    // The events are the objects sent, unchanged.
    for e in &expected {
        assert!(drained.events.contains(e), "{e} arrived unchanged");
    }
    // Every message is a Sluice envelope with an id of its own.
    assert!(drained.envelope_ids.iter().all(Option::is_some));
    ingest.stop().await;
}

/// Records of unknown shape are not ingest's business: they travel on.
async fn records_of_any_shape_travel_on(server: Server) {
    let (queue, ingest) = require!(ingest_on(server, |_| {}).await);
    let odd = vec![
        json!({"foo": "oops_wrong_msg_type", "n": 1}),
        json!({}),
        json!({"events": "not an array", "x": [1, {"y": null}]}),
        json!({"big": 12345678901234567890u64, "f": 0.1, "s": "é\u{1F600}\n"}),
    ];
    ingest.accepts(&odd).await;
    let drained = queue.drain(4, DRAIN).await;
    assert_eq!(drained.events, odd);
    ingest.stop().await;
}

/// 2,000 events from 32 concurrent clients: each in the queue exactly once,
/// in far fewer messages than events and fewer SQS calls than requests.
async fn concurrent_clients_share_messages(server: Server) {
    let (queue, wrapped, ingest) =
        require!(ingest_through(server, Faults::default(), |_| {}).await);
    let events = tune_events(2_000, "concurrent");
    // 200 requests of 10 events, 32 at a time.
    let requests: Vec<Vec<Value>> = events.chunks(10).map(<[Value]>::to_vec).collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for chunk in requests {
        let permit = Arc::clone(&semaphore).acquire_owned().await.unwrap();
        let client = ingest.client.clone();
        let url = ingest.url("/events");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(Value::Array(chunk).to_string())
                .send()
                .await
                .unwrap();
            drop(permit);
            Answer::from(r).await
        }));
    }
    for t in tasks {
        t.await.unwrap().accepted(10);
    }
    let drained = queue.holds_once(&events, DRAIN).await;
    let (messages, calls) = (drained.messages(), wrapped.calls());
    eprintln!("2000 events in {messages} messages, {calls} SendMessageBatch calls");
    assert!(messages <= 50, "{messages} messages for 200 requests");
    assert!(calls <= 50, "{calls} calls for 200 requests");
    ingest.stop().await;
}

/// A large request fills several envelopes, each under the limit.
async fn a_large_request_fills_several_full_messages(server: Server) {
    let (queue, ingest) =
        require!(ingest_on(server, |s| s.batch.max_message_bytes = 32 * 1024).await);
    let events = tune_events(5_000, "large");
    ingest.accepts(&events).await;
    let drained = queue.holds_once(&events, DRAIN).await;
    assert!(drained.messages() > 3, "{} messages", drained.messages());
    assert!(drained.body_sizes.iter().all(|n| *n <= 32 * 1024));
    // Packed in parallel groups, yet nearly all messages are full.
    let partial = drained
        .body_sizes
        .iter()
        .filter(|n| **n < 30 * 1024)
        .count();
    assert!(partial <= 2, "{:?}", drained.body_sizes);
    ingest.stop().await;
}

/// SQS reports some entries as failed (HTTP 200): the request is answered
/// only after the retry succeeded, and every event is there once.
async fn failed_entries_are_retried_before_the_answer(server: Server) {
    let faults = Faults {
        fail_first_calls: 1,
        fail_entries_once: vec![1, 3],
        ..Faults::default()
    };
    let tweak = |s: &mut Settings| s.batch.max_message_bytes = 8 * 1024;
    let (queue, wrapped, ingest) = require!(ingest_through(server, faults, tweak).await);
    let events = tune_events(600, "retry");
    ingest.accepts(&events).await;
    assert!(wrapped.calls() >= 3, "{} calls", wrapped.calls());
    // Accepted means durable: the events are there now, no waiting.
    queue.holds_once(&events, Duration::from_secs(2)).await;
    assert!(ingest.metric("sluice_ingest_queue_errors_total").await >= 1.0);
    ingest.stop().await;
}

/// SQS keeps refusing: 503 with Retry-After within the enqueue timeout.
async fn persistent_failures_give_503(server: Server) {
    let faults = Faults {
        fail_always: true,
        ..Faults::default()
    };
    let tweak = |s: &mut Settings| s.batch.enqueue_timeout = Duration::from_millis(1500);
    let (queue, wrapped, ingest) = require!(ingest_through(server, faults, tweak).await);
    let started = Instant::now();
    let a = ingest
        .post_json(&Value::Array(tune_events(50, "refused")))
        .await;
    assert_eq!(a.error(503), "queue_unavailable");
    assert!(a.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Retried with backoff, not hammered.
    let calls = wrapped.calls();
    assert!((2..=40).contains(&calls), "{calls} calls");
    assert_eq!(queue.remaining().await, 0);
    ingest.stop().await;
}

/// A call over SQS's total size is split in half and both halves sent.
async fn batch_request_too_long_splits_the_call(server: Server) {
    let faults = Faults {
        max_call_bytes: Some(40 * 1024),
        ..Faults::default()
    };
    let tweak = |s: &mut Settings| s.batch.max_message_bytes = 16 * 1024;
    let (queue, wrapped, ingest) = require!(ingest_through(server, faults, tweak).await);
    let events = tune_events(3_000, "split");
    ingest.accepts(&events).await;
    assert!(wrapped.too_long.load(Ordering::SeqCst) >= 1);
    queue.holds_once(&events, DRAIN).await;
    ingest.stop().await;
}

/// A fresh queue on `server` (`None`, skip, without it) whose
/// `MaximumMessageSize`, 4 KiB, is below what ingest packs by default.
async fn queue_refusing_over_4_kib(server: Server) -> Option<TestQueue> {
    let endpoint = server.endpoint()?;
    let attributes = [(QueueAttributeName::MaximumMessageSize, "4096")];
    Some(TestQueue::with_attributes(&endpoint, &attributes).await)
}

/// The queue's MaximumMessageSize is below INGEST_MAX_MESSAGE_BYTES: SQS
/// refuses the entries (per entry, HTTP 200), ingest re-packs them smaller
/// and every event still lands.
async fn a_smaller_queue_limit_is_learned(server: Server) {
    let queue = require!(queue_refusing_over_4_kib(server).await);
    let ingest = RunningIngest::start(queue.shared(), test_settings()).await;
    let events = tune_events(1_500, "small-queue");
    ingest.accepts(&events).await;
    let drained = queue.holds_once(&events, DRAIN).await;
    assert!(drained.body_sizes.iter().all(|n| *n <= 4096));
    // Later requests are packed small at once.
    let more = tune_events(300, "small-queue-2");
    ingest.accepts(&more).await;
    queue.holds_once(&more, DRAIN).await;

    // An event that does not fit the queue's limit even alone: 413.
    let noise = incompressible_letters(3, 6_000);
    let a = ingest
        .post_json(&json!([{"event_id": "fits"}, {"event_id": "too-big", "blob": noise}]))
        .await;
    assert_eq!(a.error(413), "event_too_large");
    assert!(a.text.contains("event 1"), "{}", a.text);
    ingest.stop().await;
}

/// The same refusals spelled as LocalStack spells them
/// (`InvalidParameterValueException` per entry,
/// `AWS.SimpleQueueService.…` per call): ingest still re-packs, and every
/// event is accepted. The spelling is applied by [`Wrapped`] over a real
/// queue whose `MaximumMessageSize` refuses the bodies; LocalStack itself
/// is too heavy for the suite.
async fn localstack_spellings_still_re_pack(server: Server) {
    let queue = require!(queue_refusing_over_4_kib(server).await);
    let wrapped = Wrapped::new(
        queue.shared(),
        Faults {
            localstack_spelling: true,
            ..Faults::default()
        },
    );
    let mut settings = test_settings();
    settings.batch.enqueue_timeout = Duration::from_secs(20);
    let ingest = RunningIngest::start(wrapped.clone(), settings).await;
    let events = tune_events(1_000, "localstack");
    ingest.accepts(&events).await;
    let drained = queue.holds_once(&events, DRAIN).await;
    assert!(drained.body_sizes.iter().all(|n| *n <= 4096));
    ingest.stop().await;
}

/// While the queue is slow, events wait in memory only up to
/// INGEST_MAX_PENDING_BYTES; a request that finds no room gets 503
/// `overloaded` at once, and the held one still lands.
async fn pending_memory_is_bounded(server: Server) {
    let (queue, wrapped) = require!(gated_queue(server).await);
    let mut settings = test_settings();
    settings.batch.max_pending_bytes = 16 * 1024;
    settings.batch.enqueue_timeout = Duration::from_secs(20);
    let ingest = RunningIngest::start(wrapped.clone(), settings).await;
    // More JSON than the room: it takes all of it.
    let first = tune_events(200, "room-1");
    let request = ingest
        .client
        .post(ingest.url("/events"))
        .body(Value::Array(first.clone()).to_string());
    let held = tokio::spawn(async move { Answer::from(request.send().await.unwrap()).await });
    eventually(
        Duration::from_secs(10),
        "the first send to be held",
        || async { wrapped.held.load(Ordering::SeqCst) == 1 },
    )
    .await;
    let started = Instant::now();
    let a = ingest
        .post_json(&Value::Array(tune_events(10, "room-2")))
        .await;
    assert_eq!(a.error(503), "overloaded");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(a.headers.contains_key("retry-after"));
    wrapped.open();
    held.await.unwrap().accepted(200);
    queue.holds_once(&first, DRAIN).await;
    ingest.stop().await;
}

on_sqs_servers! {
    every_body_form_and_encoding_lands => every_body_form_and_encoding_lands();
    records_of_any_shape_travel_on => records_of_any_shape_travel_on();
    concurrent_clients_share_messages => concurrent_clients_share_messages();
    a_large_request_fills_several_full_messages => a_large_request_fills_several_full_messages();
    failed_entries_are_retried_before_the_answer => failed_entries_are_retried_before_the_answer();
    persistent_failures_give_503 => persistent_failures_give_503();
    batch_request_too_long_splits_the_call => batch_request_too_long_splits_the_call();
    a_smaller_queue_limit_is_learned => a_smaller_queue_limit_is_learned();
    localstack_spellings_still_re_pack => localstack_spellings_still_re_pack();
    pending_memory_is_bounded => pending_memory_is_bounded();
}
