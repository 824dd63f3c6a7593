//! TLS to PostgreSQL through the real binary, against a cluster of the
//! test's own with `ssl=on` and certificates made for it: `migrate` and a
//! short `serve` work with `prefer`, `require`, `verify-ca` and
//! `verify-full`; a
//! certificate that will never be trusted stops the writer at once with one
//! line naming `DATABASE_URL`, exit 2 — not a minute of retries, not a panic;
//! and one that stops being trusted while the writer runs holds the
//! messages, as an outage does.
//!
//! The cluster admits TLS connections only (`hostssl`), so a run that works
//! did negotiate TLS.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use sluice_core::sink::Sink;
use sluice_core::sink::postgres::PostgresSink;
use sluice_testkit::pg_cluster::{Certificates, Cluster, KeyPair};

use crate::binary::{drain, sigterm, writer};
use crate::helpers::*;

/// In every `DATABASE_URL` here; trust authentication ignores it, and no
/// output may show it.
const PASSWORD: &str = "tls-test-s3cret";

/// A certificate failure must stop the writer well before the minute it
/// waits for a database that is still starting.
const AT_ONCE: Duration = Duration::from_secs(30);

/// Certificates and a started TLS cluster presenting `server(&certificates)`.
async fn tls_cluster(bin: String, server: fn(&Certificates) -> KeyPair) -> (Certificates, Cluster) {
    tokio::task::spawn_blocking(move || {
        let certificates = Certificates::make();
        let cluster = Cluster::create_tls(Path::new(&bin), &server(&certificates));
        (certificates, cluster)
    })
    .await
    .unwrap()
}

/// A fresh database on `cluster`, as the URL a user would write: with a
/// password and `query`.
async fn database_url(cluster: &Cluster, query: &str) -> String {
    let admin = fresh_postgres(&cluster.admin_url()).await;
    let name = admin
        .rsplit_once('/')
        .and_then(|(_, rest)| rest.split('?').next())
        .unwrap()
        .to_owned();
    format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}?{query}",
        cluster.port()
    )
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn run(env: &[(&str, String)], args: &[&str], limit: Duration) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    // A panic would print its backtrace: make any such slip visible.
    env.push(("RUST_BACKTRACE", "1".to_owned()));
    let started = Instant::now();
    let out = tokio::time::timeout(limit, writer(dir.path(), &env, args).output())
        .await
        .unwrap_or_else(|_| panic!("sluice-writer {args:?} did not finish within {limit:?}"))
        .unwrap();
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// `migrate` exits 0.
async fn migrates(url: &str) {
    let out = run(
        &[("DATABASE_URL", url.to_owned())],
        &["migrate"],
        AT_ONCE * 2,
    )
    .await;
    assert!(
        out.status.success(),
        "migrate with {url}: {:?}\n{}",
        out.status,
        out.stderr
    );
}

/// A short `serve` from an embedded queue loads every row, then stops on
/// SIGTERM with 0.
async fn serves(url: &str, tag: &str) {
    let queue = TestQueue::embedded();
    let records = generated_logins(40, tag);
    queue.send(&envelope_bodies(&records, 10)).await;
    let env = queue.serve_env(url.to_owned(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut child = writer(dir.path(), &env, &[]).spawn().unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let _stdout = drain(child.stdout.take().unwrap());
    let db = TestDb::Postgres(url.to_owned());
    let loaded = tokio::time::timeout(Duration::from_secs(90), async {
        while db.count("user_logins").await < 40 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await;
    match loaded {
        Ok(Ok(())) => {}
        Ok(Err(status)) => panic!(
            "serve with {url} exited ({status}) before loading:\n{}",
            stderr.await.unwrap()
        ),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "serve with {url} loaded {} of 40 rows in 90 s:\n{}",
                db.count("user_logins").await,
                stderr.await.unwrap()
            );
        }
    }
    sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops within 30 s of SIGTERM")
        .unwrap();
    let logs = stderr.await.unwrap();
    assert!(status.success(), "serve exits 0 after SIGTERM:\n{logs}");
    assert!(!logs.contains(PASSWORD), "no password in the logs:\n{logs}");
    assert_eq!(db.count("user_logins").await, 40);
}

/// The contract for a setting that can never work: exit 2 within
/// [`AT_ONCE`], nothing on stdout, one `error: DATABASE_URL…` line, no
/// panic, no password. Returns the line.
async fn refused(env: &[(&str, String)], args: &[&str]) -> String {
    let out = run(env, args, AT_ONCE).await;
    let context = format!(
        "sluice-writer {args:?}: {:?} after {:?}\nstdout: {}\nstderr: {}",
        out.status, out.took, out.stdout, out.stderr
    );
    assert_eq!(out.status.code(), Some(2), "exit code 2\n{context}");
    assert!(out.stdout.is_empty(), "nothing on stdout\n{context}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line\n{context}");
    assert!(
        lines[0].starts_with("error: DATABASE_URL"),
        "names DATABASE_URL\n{context}"
    );
    assert!(!out.stderr.contains(PASSWORD), "no password\n{context}");
    let lower = out.stderr.to_ascii_lowercase();
    assert!(!lower.contains("panicked"), "no panic\n{context}");
    assert!(!lower.contains("backtrace"), "no backtrace\n{context}");
    lines[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_prefer_require_verify_ca_and_verify_full_migrate_and_serve() {
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    let (certificates, cluster) = tls_cluster(bin, Certificates::server).await;
    let ca = certificates.ca();
    // prefer too: the cluster admits TLS only, so it must negotiate it.
    for query in [
        "sslmode=prefer".to_owned(),
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
        format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ] {
        let url = database_url(&cluster, &query).await;
        migrates(&url).await;
        serves(&url, "tls").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_trouble_stops_the_writer_with_one_line() {
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    // The server presents a certificate our CA signed, for another name
    // (pg_cluster::OTHER_HOST) than the 127.0.0.1 we connect to.
    let (certificates, cluster) = tls_cluster(bin, Certificates::other_host).await;
    let ca = certificates.ca().display().to_string();
    let other_ca = certificates.other_ca().display().to_string();
    let missing = certificates.ca().with_file_name("missing.crt");

    let untrusted = database_url(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    )
    .await;
    let line = refused(&[("DATABASE_URL", untrusted.clone())], &["migrate"]).await;
    assert!(line.contains("not signed by a trusted CA"), "{line}");
    assert!(
        line.contains("sslmode=verify-full"),
        "says which URL: {line}"
    );
    // serve too: the queue answers, then the database stops it.
    let queue = TestQueue::embedded();
    let mut env = queue.env();
    env.extend([
        ("DATABASE_URL", untrusted),
        ("PII_KEY", test_key_base64()),
        ("WRITER_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let line = refused(&env, &["serve"]).await;
    assert!(line.contains("not signed by a trusted CA"), "{line}");

    let wrong_name = database_url(&cluster, &format!("sslmode=verify-full&sslrootcert={ca}")).await;
    let line = refused(&[("DATABASE_URL", wrong_name)], &["migrate"]).await;
    assert!(line.contains("does not name the host"), "{line}");
    assert!(!line.contains("not signed"), "{line}");

    let unreadable = database_url(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
    )
    .await;
    let line = refused(&[("DATABASE_URL", unreadable)], &["migrate"]).await;
    assert!(line.contains("sslrootcert"), "{line}");
    assert!(line.contains("cannot be read"), "{line}");

    // verify-ca does not check the name: the same server and CA work.
    migrates(&database_url(&cluster, &format!("sslmode=verify-ca&sslrootcert={ca}")).await).await;

    // A server that refuses connections is still one that may be starting.
    let refused_port =
        format!("postgres://u:{PASSWORD}@127.0.0.1:1/db?sslmode=verify-full&sslrootcert={ca}");
    let sink =
        PostgresSink::connect_with_timeout(&refused_port, 1, Duration::from_millis(300)).unwrap();
    let err = sink.ping().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn tls_required_of_a_server_without_it_is_one_line() {
    // The shared test cluster runs without TLS.
    let admin = require!(service("SLUICE_TEST_DATABASE_URL"));
    let url = fresh_postgres(&admin).await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=require");
    let line = refused(&[("DATABASE_URL", url)], &["migrate"]).await;
    assert!(line.contains("does not support TLS"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_untrusted_mid_run_holds_the_messages() {
    let bin = require!(service("SLUICE_TEST_PG_BIN"));
    let (certificates, cluster) = tls_cluster(bin, Certificates::server).await;
    let ca = certificates.ca().display().to_string();
    let url = database_url(&cluster, &format!("sslmode=verify-full&sslrootcert={ca}")).await;
    let db = TestDb::Postgres(url);
    // Counted through the admin URL (no verification), which works throughout.
    let admin_db = TestDb::Postgres(url_without_verification(&db, &cluster));
    let queue = TestQueue::embedded();
    let bodies = envelope_bodies(&generated_logins(40, "midrun"), 10);
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue.send(&bodies[..2]).await;
    admin_db
        .until_rows(
            "user_logins",
            20,
            Duration::from_secs(60),
            "the first 20 rows",
        )
        .await;

    // The server now presents a certificate for another name, and the
    // writer's open connections are cut: every new one fails verify-full.
    cluster.present(&certificates.other_host());
    admin_db
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .await;
    queue.send(&bodies[2..]).await;
    eventually(Duration::from_secs(60), "/readyz to answer 503", || async {
        writer.get("/readyz").await.0 == 503
    })
    .await;
    // Held and retried, as in an outage: each message received once and
    // kept (its lease extended) past the visibility timeout, none given up.
    // A batch refused as bad data would be released, redelivered after the
    // timeout and, past the maximum receive count, dead-lettered.
    let window = test_tuning().visibility + Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < deadline {
        assert_eq!(max_receive_count(&queue), 1, "held, not redelivered");
        assert_eq!(queue.dead_letters().await, 0, "nothing dead-lettered");
        assert_eq!(admin_db.count("user_logins").await, 20);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(queue.remaining().await > 0, "the messages are still queued");

    cluster.present(&certificates.server());
    // Every row once trusted again.
    all_landed(&admin_db, &queue, "user_logins", 40).await;
    assert_eq!(queue.dead_letters().await, 0);
    writer.stop().await;
}

/// `db`'s database through the cluster's admin URL (TLS, not verified).
fn url_without_verification(db: &TestDb, cluster: &Cluster) -> String {
    let TestDb::Postgres(url) = db else {
        unreachable!()
    };
    let before_query = url.split('?').next().unwrap();
    let (_, name) = before_query.rsplit_once('/').unwrap();
    cluster
        .admin_url()
        .replace("/postgres?", &format!("/{name}?"))
}

/// The most times any message of the embedded queue was received.
fn max_receive_count(queue: &TestQueue) -> i64 {
    let path = queue.url().strip_prefix("sqlite://").unwrap();
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(
        "SELECT COALESCE(MAX(receive_count), 0) FROM sluice_queue_messages WHERE queue = 0",
        [],
        |r| r.get(0),
    )
    .unwrap()
}
