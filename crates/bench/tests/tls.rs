//! `sluice-bench --database-url` over TLS with `sslmode=verify-ca`: the
//! mode that made rustls panic while the build held two crypto providers.
//! A whole run — ingest and a writer in this process, on an embedded queue,
//! into a TLS-only PostgreSQL cluster of the test's own — must pass its
//! end-to-end check.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::config::DatabaseUrl;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::queue::Queue;
use sluice_core::sink;
use sluice_testkit::pg_cluster::{Certificates, Cluster};
use sluice_testkit::{require, service};
use sluice_writer::configuration::Tuning;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-bench");

/// In the URL; trust authentication ignores it, and no output may show it.
const PASSWORD: &str = "bench-tls-s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_verifies_over_tls_with_verify_ca() {
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    let (certificates, cluster) = tokio::task::spawn_blocking(move || {
        let certificates = Certificates::make();
        let cluster = Cluster::create_tls(Path::new(&bin), &certificates.server());
        (certificates, cluster)
    })
    .await
    .unwrap();
    let name = format!("b_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&cluster.admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}?sslmode=verify-ca&sslrootcert={}",
        cluster.port(),
        certificates.ca().display()
    );

    let dir = tempfile::tempdir().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(sluice_testkit::fresh_embedded_queue(dir.path()));
    let sink = sink::connect(&DatabaseUrl::Postgres(url.clone().into()), 4)
        .await
        .unwrap();
    sink.migrate().await.unwrap();
    let masker = Masker::new(
        Keyring::new(PiiKey::from_bytes(&[42u8; 32]), vec![]),
        Policy::default(),
    );
    let tuning = Tuning {
        wait: Duration::from_secs(1),
        linger: Duration::from_millis(50),
        ..Tuning::default()
    };
    let stop = CancellationToken::new();
    let writer = sluice_writer::startup::Application::build(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&queue),
        sink,
        masker,
        tuning,
    )
    .await
    .unwrap();
    let writer = tokio::spawn(writer.run(stop.clone()));
    let ingest = sluice_ingest::startup::Application::build(
        "127.0.0.1:0".parse().unwrap(),
        queue,
        sluice_ingest::configuration::Settings::default(),
    )
    .await
    .unwrap();
    let events = format!("http://{}/events", ingest.local_addr());
    let ingest = tokio::spawn(ingest.run(stop.clone()));

    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new(BIN)
            .env_clear()
            .env("RUST_BACKTRACE", "1")
            .args(["--url", &events, "--kind", "mixed", "--total", "400"])
            .args(["--events-per-request", "50", "--concurrency", "2"])
            .args(["--wait-secs", "90", "--database-url", &url])
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sluice-bench finishes within 150 s")
    .unwrap();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), ingest).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("{:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    assert!(out.status.success(), "the run passes\n{context}");
    assert!(!stderr.contains("panicked"), "no panic\n{context}");
    assert!(
        !format!("{stdout}{stderr}").contains(PASSWORD),
        "no password\n{context}"
    );
}
