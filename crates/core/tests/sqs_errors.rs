//! What real SQS servers answer, classified by meaning: a message over the
//! queue's `MaximumMessageSize`, a call over 1 MiB, a queue that does not
//! exist, a receipt handle that is not one. On fauxqs and on moto, which
//! spell some of these differently (moto's codes arrive with the
//! `AWS.SimpleQueueService.` prefix through the SDK).
#![allow(clippy::unwrap_used)]

use aws_sdk_sqs::types::QueueAttributeName;
use sluice_core::queue::sqs::SqsQueue;
use sluice_core::queue::{Queue, SqsErrorKind};
use sluice_testkit::{fresh_queue, require, service};

async fn answers_are_classified(variable: &str) {
    let endpoint = require!(service(variable));

    // One message over the queue's limit: refused per entry (fauxqs) or for
    // the whole call (moto, AWS for a lone entry); either way "too large".
    let small = fresh_queue(
        &endpoint,
        &[(QueueAttributeName::MaximumMessageSize, "1024")],
    )
    .await;
    match small.send_batch(&["x".repeat(2_000), "fits".into()]).await {
        Ok(out) => {
            assert_eq!(out.failed.len(), 1, "{out:?}");
            assert!(out.failed[0].is_too_large(), "{:?}", out.failed[0]);
            assert_eq!(out.failed[0].index, 0);
        }
        Err(e) => assert!(e.is_too_large(), "{e} ({:?})", e.kind),
    }

    // A call whose bodies total more than 1 MiB.
    let queue = fresh_queue(&endpoint, &[]).await;
    let err = queue
        .send_batch(&vec!["y".repeat(200_000); 6])
        .await
        .expect_err("a call over 1 MiB is refused");
    assert_eq!(err.kind, SqsErrorKind::BatchTooLong, "{err}");
    assert!(err.is_too_large());

    // A queue nobody created.
    let missing = SqsQueue::from_client(
        queue.client().clone(),
        format!("{}-never-created", queue.url()),
    );
    let err = missing.counts().await.expect_err("no such queue");
    assert_eq!(err.kind, SqsErrorKind::QueueMissing, "{err}");

    // A receipt handle that is not one: refused per entry (moto, AWS) or for
    // the call. fauxqs accepts any handle and reports nothing.
    match queue.delete_batch(&["not-a-receipt-handle".into()]).await {
        Ok(failures) => {
            if variable.ends_with("_MOTO") {
                assert_eq!(failures.len(), 1, "{failures:?}");
            }
            for f in &failures {
                assert!(f.kind().handle_is_gone(), "{f:?}");
            }
        }
        Err(e) => assert!(e.kind.handle_is_gone(), "{e} ({:?})", e.kind),
    }

    // Nobody listening: no answer, which start-up retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = sluice_core::queue::sqs::SqsSettings {
        queue_url: format!("http://127.0.0.1:{closed}/000000000000/q"),
        endpoint_url: Some(format!("http://127.0.0.1:{closed}")),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
    };
    let nobody = SqsQueue::from_client(
        sluice_core::queue::sqs::client(&settings).await,
        settings.queue_url.clone(),
    );
    let err = nobody.counts().await.expect_err("nobody listens");
    assert_eq!(err.kind, SqsErrorKind::NoAnswer, "{err}");
}

#[tokio::test]
async fn fauxqs_answers_are_classified() {
    answers_are_classified("SLUICE_TEST_SQS_ENDPOINT").await;
}

#[tokio::test]
async fn moto_answers_are_classified() {
    answers_are_classified("SLUICE_TEST_SQS_ENDPOINT_MOTO").await;
}
