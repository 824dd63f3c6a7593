//! One memory budget for the whole front door: sixteen concurrent gzip
//! bombs (10 GB of zeros each, ~10 MB on the wire) are all refused 413
//! while the real binary's peak RSS stays within 128 MiB and `/healthz`
//! keeps answering; connections over `INGEST_MAX_CONNECTIONS` wait.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crash::start_with;
use crate::helpers::*;

/// 10 GiB of zeros as gzip: one member of 10 MiB of zeros, repeated (gzip
/// members concatenate, and HTTP's gzip decoders read them all).
fn bomb() -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
    let member = gz.finish().unwrap();
    member.repeat(1024)
}

/// Peak resident memory of a process, from `/proc/PID/status`, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_gzip_bombs_stay_within_128_mib() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_with(dir.path(), queue.url(), &[]).await;
    let pid = child.id().unwrap();
    eprintln!("at start: peak RSS {} MiB", vm_hwm_kib(pid) / 1024);
    let bomb = axum::body::Bytes::from(bomb());
    assert!(bomb.len() < 10 * 1024 * 1024, "{} bytes", bomb.len());
    let client = reqwest::Client::new();

    let mut bombs = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, bomb) = (client.clone(), bomb.clone());
        let url = format!("http://{addr}/events");
        bombs.spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(bomb)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        });
    }
    // Meanwhile /healthz answers, every time.
    let health = format!("http://{addr}/healthz");
    let mut checks = 0;
    while !bombs.is_empty() {
        let r = tokio::time::timeout(Duration::from_secs(10), client.get(&health).send())
            .await
            .expect("/healthz answers within 10 s during the bombs")
            .unwrap();
        assert_eq!(r.status(), 200);
        checks += 1;
        while let Some(done) = bombs.try_join_next() {
            assert_eq!(done.unwrap(), (413, "body_too_large".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = vm_hwm_kib(pid);
    eprintln!(
        "16 gzip bombs: peak RSS {} MiB, {checks} health checks",
        peak / 1024
    );
    assert!(peak <= 128 * 1024, "peak RSS {} MiB", peak / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait() {
    let queue = TestQueue::embedded();
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) =
        start_with(dir.path(), queue.url(), &[("INGEST_MAX_CONNECTIONS", "1")]).await;
    // The one connection, kept open after a request.
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A second one is not served while the first is open...
    let second = tokio::spawn(reqwest::get(format!("http://{addr}/healthz")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "a connection over the cap was served"
    );
    // ... and is, once it closes.
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("served once the first connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
}
