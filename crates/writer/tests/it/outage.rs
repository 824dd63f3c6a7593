//! PostgreSQL stopped mid-run: the writer retries, recovers without a
//! restart, deletes nothing before its rows commit, and the table ends
//! complete with every record once.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

/// A throwaway cluster of our own, so stopping it disturbs no other test.
struct Cluster {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            // initdb and postgres refuse to run as root.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn create(bin: &Path) -> Self {
        let data = tempfile::tempdir().unwrap();
        if is_root() {
            Command::new("chmod")
                .arg("755")
                .arg(data.path())
                .status()
                .unwrap();
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(data.path())
                .status()
                .unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin: bin.to_owned(),
            data,
            port,
        };
        let out = cluster
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(cluster.data.path().join("pg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start();
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let dir = self.data.path().join("pg");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            dir.display()
        );
        let out = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&dir)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "-m", "fast", "-o", &opts, action])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        self.pg_ctl("start");
    }

    fn stop(&self) {
        self.pg_ctl("stop");
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.data.path().join("pg");
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(dir)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

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
    eventually(
        Duration::from_secs(120),
        "every row after the restart",
        || async { db.count("user_logins").await == 6_000 },
    )
    .await;
    eventually(Duration::from_secs(60), "the queue drained", || async {
        queue.remaining().await == 0
    })
    .await;
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
