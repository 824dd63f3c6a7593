//! `sluice-writer setup` on SQS: the queue, its dead-letter queue and the
//! redrive policy; the dead-letter queue keeps messages 14 days (never less
//! than its source); a second run changes nothing. On fauxqs and on moto.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use sluice_core::queue::sqs::{DLQ_RETENTION_SECS, SqsSettings};

use crate::binary::{assert_has_tables, aws_env, setup_succeeds, sqlite_tables, sqlite_url};
use crate::helpers::*;

async fn url_of(client: &Client, name: &str) -> String {
    client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name} exists: {e:?}"))
        .queue_url()
        .unwrap()
        .to_owned()
}

/// Every attribute of a queue but the timestamps (which a
/// `SetQueueAttributes` to the same values may move).
async fn attributes(client: &Client, url: &str) -> BTreeMap<String, String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .filter(|(k, _)| !k.ends_with("Timestamp"))
        .collect()
}

async fn setup_twice(backend: Backend) {
    let variable = match backend {
        Backend::Moto => "SLUICE_TEST_SQS_ENDPOINT_MOTO",
        _ => "SLUICE_TEST_SQS_ENDPOINT",
    };
    let endpoint = require!(service(variable));
    let dir = tempfile::tempdir().unwrap();
    let name = format!("setup-{}", uuid::Uuid::now_v7().simple());
    let queue_url = format!("{endpoint}/000000000000/{name}");
    let path = dir.path().join("x.db");
    let mut env = aws_env(&endpoint, &queue_url);
    env.push(("DATABASE_URL", sqlite_url(&path)));
    let client = sluice_core::queue::sqs::client(&SqsSettings {
        queue_url: queue_url.clone(),
        endpoint_url: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
    })
    .await;

    let mut after = Vec::new();
    for round in 1..=2 {
        let out = setup_succeeds(dir.path(), &env, round).await;
        // It says what it set.
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains(&format!("MessageRetentionPeriod {DLQ_RETENTION_SECS} s")),
            "setup #{round} names the dead-letter retention: {said}"
        );
        let main_url = url_of(&client, &name).await;
        let dlq_url = url_of(&client, &format!("{name}-dlq")).await;
        after.push((
            attributes(&client, &main_url).await,
            attributes(&client, &dlq_url).await,
        ));
    }
    assert_has_tables(&sqlite_tables(&path));
    assert_eq!(after[0], after[1], "a second setup changes nothing");

    let (main, dlq) = &after[1];
    let dlq_arn = &dlq["QueueArn"];
    assert!(
        dlq_arn.ends_with(&format!(":{name}-dlq")),
        "the DLQ's ARN: {dlq_arn}"
    );
    let policy: Value = serde_json::from_str(&main["RedrivePolicy"])
        .unwrap_or_else(|e| panic!("RedrivePolicy is JSON ({e}): {main:?}"));
    assert_eq!(
        policy["deadLetterTargetArn"],
        Value::String(dlq_arn.clone()),
        "{policy}"
    );
    let max = match &policy["maxReceiveCount"] {
        Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    };
    assert_eq!(max, Some(5), "{policy}");
    // Dead letters outlive their source: 14 days, and never less.
    let retention = |attrs: &BTreeMap<String, String>| -> u64 {
        attrs["MessageRetentionPeriod"].parse().unwrap()
    };
    assert_eq!(retention(dlq), DLQ_RETENTION_SECS, "{dlq:?}");
    assert!(retention(dlq) >= retention(main), "{main:?} {dlq:?}");
}

sluice_testkit::cases! {
    #[tokio::test]
    setup_twice_on_fauxqs => setup_twice(Backend::Sqs);
    setup_twice_on_moto => setup_twice(Backend::Moto);
}
