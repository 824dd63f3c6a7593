//! Benchmark: `sluice-writer rekey` over BENCH_ROWS (default 1,000,000)
//! stored logins, on PostgreSQL (`SLUICE_TEST_DATABASE_URL`, an admin URL; a
//! fresh database is made) and on a fresh SQLite file; and what it does to a
//! writer loading beside it.
//!
//! For each database: fill `user_logins` under key A through the real sink;
//! measure a loader (the sink writing 10,000-row batches under key B, as a
//! writer after the rotation) alone for a few seconds; then run the release
//! binary `PII_KEY=B PII_OLD_KEYS=A sluice-writer rekey` with the loader
//! still running, and report rekey rows/s, the loader's rows/s and its
//! slowest batch alone and during the rekey.
//!
//! `cargo build --release -p sluice-writer --examples && SLUICE_TEST_DATABASE_URL=… \
//!   target/release/examples/rekey_bench`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use sluice_core::config::DatabaseUrl;
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::records::{LoginRow, MessageRows, WriteBatch};
use sluice_core::sink::{self, Sink};
use sqlx::Connection;

const KEY_A: [u8; 32] = [42u8; 32];
const KEY_B: [u8; 32] = [77u8; 32];
const BATCH: usize = 10_000;

fn batch(masker: &Masker, tag: &str, from: usize, n: usize) -> WriteBatch {
    let mut message = MessageRows::new(format!("{tag}-{from}"));
    message.logins = (from..from + n)
        .map(|i| LoginRow {
            user_id: format!("{tag}-{i:08}"),
            device_type: Some("android".into()),
            masked_ip: Some(masker.encrypt(
                format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255).as_bytes(),
            )),
            masked_device_id: Some(
                masker
                    .encrypt(format!("{:03}-{:02}-{:04}", i % 1000, i % 100, i % 10000).as_bytes()),
            ),
            locale: Some("FR".into()),
            app_version: Some(2_003_000),
        })
        .collect();
    WriteBatch {
        written_on: chrono::Utc::now().date_naive(),
        messages: vec![message],
    }
}

/// Loads batches under key B until `stop`; returns (rows, seconds, slowest batch).
async fn load(
    sink: Arc<dyn Sink>,
    tag: &'static str,
    stop: Arc<AtomicBool>,
) -> (usize, f64, Duration) {
    let masker = Masker::new(
        Keyring::new(PiiKey::from_bytes(&KEY_B), vec![]),
        Policy::default(),
    );
    let started = Instant::now();
    let (mut rows, mut slowest, mut i) = (0, Duration::ZERO, 0);
    while !stop.load(Ordering::SeqCst) {
        let b = batch(&masker, tag, i, BATCH);
        let t = Instant::now();
        while sink.write(&b).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest = slowest.max(t.elapsed());
        rows += BATCH;
        i += BATCH;
        // A writer between batches: receive, decode, mask.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (rows, started.elapsed().as_secs_f64(), slowest)
}

async fn bench(name: &str, url: DatabaseUrl, url_text: String, rows: usize) {
    let sink = sink::connect(&url, 2).await.unwrap();
    sink.migrate().await.unwrap();
    let a = Masker::new(
        Keyring::new(PiiKey::from_bytes(&KEY_A), vec![]),
        Policy::default(),
    );
    let t = Instant::now();
    for from in (0..rows).step_by(BATCH) {
        sink.write(&batch(&a, "old", from, BATCH.min(rows - from)))
            .await
            .unwrap();
    }
    eprintln!(
        "{name}: {rows} logins under key A in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let alone = tokio::spawn(load(Arc::clone(&sink), "alone", Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::SeqCst);
    let (alone_rows, alone_secs, alone_slowest) = alone.await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let beside = tokio::spawn(load(Arc::clone(&sink), "beside", Arc::clone(&stop)));
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("sluice-writer");
    let b64 = base64::engine::general_purpose::STANDARD;
    let t = Instant::now();
    let out = tokio::process::Command::new(bin)
        .env_clear()
        .env("DATABASE_URL", &url_text)
        .env("PII_KEY", b64.encode(KEY_B))
        .env("PII_OLD_KEYS", b64.encode(KEY_A))
        .env("RUST_LOG", "warn")
        .arg("rekey")
        .output()
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (beside_rows, beside_secs, beside_slowest) = beside.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!(
        "{name}: rekey of {rows} logins in {secs:.1} s = {:.0} rows/s; loader alone {:.0} rows/s (slowest batch {} ms), during rekey {:.0} rows/s (slowest batch {} ms)",
        rows as f64 / secs,
        alone_rows as f64 / alone_secs,
        alone_slowest.as_millis(),
        beside_rows as f64 / beside_secs,
        beside_slowest.as_millis(),
    );
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if let Ok(admin) = std::env::var("SLUICE_TEST_DATABASE_URL") {
        let name = format!("rekey_bench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        bench(
            "postgres",
            DatabaseUrl::Postgres(url.clone().into()),
            url,
            rows,
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    bench(
        "sqlite",
        DatabaseUrl::Sqlite(path.clone()),
        format!("sqlite://{}", path.display()),
        rows,
    )
    .await;
}
