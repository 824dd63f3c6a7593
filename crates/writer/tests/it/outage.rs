//! PostgreSQL stopped mid-run: the writer retries, recovers without a
//! restart, deletes nothing before its rows commit, and the table ends
//! complete with every record once.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use sluice_testkit::pg_cluster::Cluster;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_run() {
    let endpoint = require!(service("SLUICE_TEST_SQS_ENDPOINT"));
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    let cluster = tokio::task::spawn_blocking(move || Cluster::create(Path::new(&bin)))
        .await
        .unwrap();
    let db = TestDb::Postgres(fresh_postgres(&cluster.admin_url()).await);
    let queue = TestQueue::sqs(&endpoint, 30).await;
    let records = generated_logins(6_000, "outage");
    let bodies = envelope_bodies(&records, 100);
    queue.send(&bodies[..20]).await;

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    eventually(Duration::from_secs(60), "the first rows", || async {
        db.count("user_logins").await >= 100
    })
    .await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    // Messages sent while the database is down are received and held.
    queue.send(&bodies[20..]).await;
    eventually(
        Duration::from_secs(60),
        "the writer to notice the outage",
        || async {
            writer
                .metric("sluice_writer_errors_total{kind=\"db_transient\"}")
                .await
                >= 2.0
        },
    )
    .await;
    let (status, _) = writer.get("/readyz").await;
    assert_eq!(status, 503, "not ready while the database is down");
    let (_, in_flight) = queue.counts().await;
    assert!(
        in_flight > 0,
        "held messages must not be deleted while nothing commits"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    // Every row after the restart.
    all_landed(&db, &queue, "user_logins", 6_000).await;
    let TestDb::Postgres(url) = &db else {
        unreachable!()
    };
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let distinct: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT user_id) FROM user_logins")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(distinct, 6_000, "every record exactly once");
    writer.stop().await;
    drop(cluster);
}
