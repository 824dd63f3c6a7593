//! `keys`, `rekey`, `lookup` and `forget` through the real binary, on
//! PostgreSQL and SQLite: rows written under one key by a writer, then
//! rotated, looked up and erased — checked against a dump of the database
//! (SQLite: the file's bytes) and against the originals recovered with the
//! new key alone. No command may print or log the plaintext it was given.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sluice_core::masking::{Keyring, Masker, PiiKey, Policy};
use sluice_core::queue::Queue;

use crate::helpers::*;

pub(crate) const WAIT: Duration = Duration::from_secs(120);
/// Key B, the new primary; key A is the writers' usual `TEST_KEY`.
const KEY_B: [u8; 32] = [77u8; 32];

pub(crate) fn key_a() -> PiiKey {
    PiiKey::from_bytes(&TEST_KEY)
}
pub(crate) fn key_b() -> PiiKey {
    PiiKey::from_bytes(&KEY_B)
}
pub(crate) fn masker_of(current: PiiKey, older: Vec<PiiKey>) -> Masker {
    Masker::new(Keyring::new(current, older), Policy::default())
}

/// The binary with only `env`, in `dir` (the binary tests' helper).
pub(crate) use crate::binary::writer as command;

pub(crate) struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Out {
    let out = tokio::time::timeout(WAIT, command(dir, env, args).output())
        .await
        .unwrap_or_else(|_| panic!("sluice-writer {args:?} did not finish"))
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `PII_KEY=B PII_OLD_KEYS=A` (or only `B` when `with_old` is false).
pub(crate) fn env_b(db: &TestDb, with_old: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url_string()),
        ("PII_KEY", STANDARD.encode(KEY_B)),
        ("SLUICE_OPERATOR", "it-dpo".to_owned()),
    ];
    if with_old {
        env.push(("PII_OLD_KEYS", test_key_base64()));
    }
    env
}

pub(crate) fn env_a(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url_string()),
        ("PII_KEY", test_key_base64()),
        ("SLUICE_OPERATOR", "it-dpo".to_owned()),
    ]
}

/// What each command test starts from: a directory of its own, a fresh
/// database of `kind` (`None`, skip, when PostgreSQL is absent) and an
/// embedded queue.
pub(crate) async fn fresh_store(kind: &str) -> Option<(tempfile::TempDir, TestDb, TestQueue)> {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(kind, dir.path()).await?;
    Some((dir, db, TestQueue::embedded()))
}

/// A writer in this process masking with `masker`.
pub(crate) async fn writer_with(
    queue: Arc<dyn Queue>,
    db: &TestDb,
    masker: Masker,
) -> RunningWriter {
    RunningWriter::start_masking(queue, db.sink().await, masker, test_tuning()).await
}

/// TUNE events and adjustments with PII in typed columns and in `extra`,
/// at depth; `tag` makes the ids and values unique.
pub(crate) fn tune_records(tag: &str, ip: &str, device: &str) -> Vec<Value> {
    vec![
        json!({
            "event_id": format!("{tag}-e1"), "action": "conversion", "payout": "1.25",
            "ip": ip, "session_ip": "198.51.100.23", "google_aid": device,
            "aff_sub": format!("{tag}-aff-secret"), "email": format!("{tag}@example.com"),
            "details": {"customer_id": format!("{tag}-cust-secret"), "list": [{"browser_id": format!("{tag}-browser")}]},
        }),
        json!({
            "event_id": format!("{tag}-e1"), "adjust_action": "update", "adjustment_sequence_id": 1,
            "payout": "-0.25", "aff_sub": format!("{tag}-adj-secret"), "ip": ip,
        }),
    ]
}

/// Loads logins, TUNE records, a rejected record (masked JSON) and a body
/// that does not parse (encrypted whole), all under key A; returns the
/// plaintexts stored.
async fn load_under_a(queue: &TestQueue, db: &TestDb, logins: usize) -> Vec<String> {
    let writer = writer_with(queue.shared(), db, masker()).await;
    let mut records = generated_logins(logins, "rk");
    records.extend(tune_records("rk", "203.0.113.9", "dev-rk-1"));
    records.push(json!({"odd": "shape", "ip": "192.0.2.77", "device_id": "dev-rejected"}));
    let mut bodies = envelope_bodies(&records, 500);
    bodies.push("not json at all: ip 192.0.2.88".to_owned());
    queue.send(&bodies).await;
    let expected_logins = logins as i64;
    eventually(WAIT, "every row stored", || async {
        db.count("user_logins").await == expected_logins
            && db.count("tune_events").await == 1
            && db.count("tune_adjustments").await == 1
            && db.count("rejected_records").await == 2
    })
    .await;
    writer.stop().await;
    let mut plain = vec![
        "203.0.113.9".to_owned(),
        "dev-rk-1".to_owned(),
        "rk-aff-secret".to_owned(),
        "rk-cust-secret".to_owned(),
        "rk-browser".to_owned(),
        "rk@example.com".to_owned(),
        "192.0.2.77".to_owned(),
    ];
    for r in generated_logins(logins, "rk") {
        plain.push(r["ip"].as_str().unwrap().to_owned());
        plain.push(r["device_id"].as_str().unwrap().to_owned());
    }
    plain
}

/// Every `enc:`/`hmac:` token in a text.
fn tokens_in(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(enc|hmac):[0-9a-f]{1,16}:[A-Za-z0-9_-]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_owned()).collect()
}

/// The state after a complete rekey: nothing under A in the database, every
/// stored value recovers with B alone, the originals are all there, and
/// `keys` (with B alone) reports B only.
async fn assert_all_under_b(dir: &Path, db: &TestDb, originals: &[String]) {
    let dump = db.dump().await;
    let a = key_a().id().to_owned();
    let b = key_b().id().to_owned();
    if let Some(at) = dump.find(&format!(":{a}:")) {
        let from = dump.floor_char_boundary(at.saturating_sub(200));
        let to = dump.ceil_char_boundary((at + 100).min(dump.len()));
        panic!(
            "no value under key {a} is left in the database; found in {:?}",
            &dump[from..to]
        );
    }
    // Values read through SQL: the file's bytes run columns together.
    let mut stored = String::new();
    for sql in [
        "SELECT masked_ip, masked_device_id FROM user_logins",
        "SELECT masked_ip, masked_session_ip, masked_user_agent, masked_device_id, CAST(extra AS TEXT) FROM tune_events",
        "SELECT CAST(extra AS TEXT) FROM tune_adjustments",
        "SELECT payload FROM rejected_records",
    ] {
        for row in db.text_rows(sql).await {
            for cell in row.into_iter().flatten() {
                stored.push_str(&cell);
                stored.push('\n');
            }
        }
    }
    let b_only = masker_of(key_b(), vec![]);
    let mut recovered = HashSet::new();
    for token in tokens_in(&stored).iter().filter(|t| t.starts_with("enc:")) {
        assert!(token.starts_with(&format!("enc:{b}:")), "{token}");
        let plain = b_only
            .recover(token)
            .unwrap_or_else(|e| panic!("{token} recovers with B alone: {e}"));
        recovered.insert(String::from_utf8_lossy(&plain).into_owned());
    }
    for original in originals {
        assert!(
            recovered.contains(original),
            "{original} comes back with key B"
        );
    }
    assert!(
        recovered.iter().any(|p| p.contains("192.0.2.88")),
        "the payload encrypted whole comes back with key B"
    );
    let keys = run(dir, &env_b(db, false), &["keys", "--json"]).await;
    assert!(keys.ok, "{}", keys.stderr);
    let report: Value = serde_json::from_str(keys.stdout.trim()).unwrap();
    let listed: Vec<&str> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["values"].as_u64().unwrap() > 0)
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![b.as_str()], "keys agrees: {report}");
}

/// `recover` through the binary, with key B alone, for one stored value.
async fn recover_one_with_b(dir: &Path, db: &TestDb) {
    let ip = db
        .text_rows("SELECT masked_ip FROM user_logins WHERE user_id = 'rk-0000001'")
        .await[0][0]
        .clone()
        .unwrap();
    let out = run(dir, &env_b(db, false), &["recover", &ip]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "10.0.0.1");
}

async fn rekey_after_writes(kind: &str) {
    let (dir, db, queue) = require!(fresh_store(kind).await);
    let originals = load_under_a(&queue, &db, 300).await;

    // Before: keys (B primary, A old) sees A in use.
    let keys = run(dir.path(), &env_b(&db, true), &["keys"]).await;
    assert!(keys.ok, "{}", keys.stderr);
    let a = key_a().id().to_owned();
    let line = keys
        .stdout
        .lines()
        .find(|l| l.starts_with(&a))
        .unwrap()
        .to_owned();
    assert!(line.contains("old"), "{}", keys.stdout);
    assert!(keys.stdout.contains("tune_events.extra"), "{}", keys.stdout);

    // A dry run changes nothing.
    let dry = run(dir.path(), &env_b(&db, true), &["rekey", "--dry-run"]).await;
    assert!(dry.ok, "{}", dry.stderr);
    assert!(dry.stdout.starts_with("would rekey"), "{}", dry.stdout);
    assert!(db.dump().await.contains(&format!("enc:{a}:")));

    let out = run(
        dir.path(),
        &env_b(&db, true),
        &["rekey", "--batch-rows", "64"],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("rekeyed"), "{}", out.stdout);
    assert!(
        out.stderr.contains("rekey") && out.stderr.contains("it-dpo"),
        "an audit line: {}",
        out.stderr
    );
    assert_all_under_b(dir.path(), &db, &originals).await;
    recover_one_with_b(dir.path(), &db).await;
    assert_eq!(db.count("user_logins").await, 300, "nothing lost or added");

    // Again: nothing left to do.
    let again = run(dir.path(), &env_b(&db, true), &["rekey"]).await;
    assert!(again.ok);
    assert!(
        again.stdout.starts_with("rekeyed 0 values"),
        "{}",
        again.stdout
    );
}

/// Writers (already on B, A old) keep loading while rekey runs.
async fn rekey_beside_running_writers(kind: &str) {
    let (dir, db, queue) = require!(fresh_store(kind).await);
    let originals = load_under_a(&queue, &db, 3000).await;

    let rotated = masker_of(key_b(), vec![key_a()]);
    let writers = [
        writer_with(queue.shared(), &db, rotated.clone()).await,
        writer_with(queue.shared(), &db, rotated).await,
    ];
    let done = Arc::new(AtomicBool::new(false));
    let loader = {
        let (queue, done) = (queue.shared(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut round = 0;
            while !done.load(Ordering::SeqCst) || round < 3 {
                let records = generated_logins(200, &format!("live{round}"));
                let bodies = envelope_bodies(&records, 50);
                for chunk in bodies.chunks(10) {
                    assert!(queue.send_batch(chunk).await.unwrap().failed.is_empty());
                }
                sent += records.len();
                round += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    let out = run(
        dir.path(),
        &env_b(&db, true),
        &["rekey", "--batch-rows", "100"],
    )
    .await;
    done.store(true, Ordering::SeqCst);
    assert!(out.ok, "{}", out.stderr);
    let sent = loader.await.unwrap() as i64;
    eventually(WAIT, "every live login stored", || async {
        db.count("user_logins").await == 3000 + sent
    })
    .await;
    for w in writers {
        w.stop().await;
    }
    assert_eq!(queue.remaining().await, 0);
    assert_all_under_b(dir.path(), &db, &originals).await;
    recover_one_with_b(dir.path(), &db).await;
}

/// Rekey killed midway, then run again: every login keeps its own values.
async fn rekey_killed_midway(kind: &str) {
    let (dir, db, queue) = require!(fresh_store(kind).await);
    let originals = load_under_a(&queue, &db, 20_000).await;
    let (a, b) = (key_a().id().to_owned(), key_b().id().to_owned());
    let under = |id: &str| {
        format!("SELECT CAST(COUNT(*) AS TEXT) FROM user_logins WHERE masked_ip LIKE 'enc:{id}:%'")
    };

    let mut child = command(
        dir.path(),
        &env_b(&db, true),
        &["rekey", "--batch-rows", "5"],
    )
    .spawn()
    .unwrap();
    let count =
        |rows: Vec<Vec<Option<String>>>| rows[0][0].clone().unwrap().parse::<i64>().unwrap();
    eventually(WAIT, "rekey under way", || async {
        count(db.text_rows(&under(&b)).await) > 0
    })
    .await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished");
    let (left, moved) = (
        count(db.text_rows(&under(&a)).await),
        count(db.text_rows(&under(&b)).await),
    );
    assert!(
        left > 0 && moved > 0,
        "killed midway: {left} left, {moved} moved"
    );
    assert_eq!(left + moved, 20_000);

    let out = run(dir.path(), &env_b(&db, true), &["rekey"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(db.count("user_logins").await, 20_000);
    assert_all_under_b(dir.path(), &db, &originals).await;
    // Each row still holds its own values.
    let b_only = masker_of(key_b(), vec![]);
    let rows = db
        .text_rows("SELECT user_id, masked_ip FROM user_logins")
        .await;
    let expected: std::collections::HashMap<String, String> = generated_logins(20_000, "rk")
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap().to_owned(),
                r["ip"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for row in rows {
        let user = row[0].clone().unwrap();
        let ip = b_only.recover(row[1].as_deref().unwrap()).unwrap();
        assert_eq!(String::from_utf8(ip).unwrap(), expected[&user]);
    }
}

/// For each name, `postgres::name` and `sqlite::name` calling `name(kind)`.
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("postgres").await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("sqlite").await;
                }
            )+
        }
    };
}

pub(crate) use on_both_databases;

on_both_databases!(
    rekey_after_writes,
    rekey_beside_running_writers,
    rekey_killed_midway,
);
