//! What only the SQLite sink does: wait for another process's lock and
//! report it as transient, create the file's folder.

use std::time::Duration;

use sluice_core::sink::Sink;
use sluice_core::sink::sqlite::SqliteSink;

use crate::fixture::{Db, Kind};
use crate::rows::sample_batch;

async fn sqlite_db() -> Db {
    Db::fresh(Kind::Sqlite)
        .await
        .expect("SQLite needs no service")
}

#[tokio::test]
async fn sqlite_locked_database_is_transient() {
    let db = sqlite_db().await;
    let path = db.sqlite_path().expect("sqlite");
    db.sink().await;
    let sink = SqliteSink::open_with_busy_timeout(path, Duration::from_millis(50))
        .await
        .expect("open");
    // Another process holds the write lock for longer than the busy timeout.
    let holder = rusqlite::Connection::open(path).expect("open sqlite for checks");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");
    let err = sink.write(&sample_batch()).await.expect_err("locked");
    assert!(err.is_transient(), "{err:?}");
    holder.execute_batch("ROLLBACK").expect("release");
    // Once released the same batch goes through.
    let outcome = sink
        .write(&sample_batch())
        .await
        .expect("write after unlock");
    assert_eq!(outcome.logins_written, 3);
}

#[tokio::test]
async fn sqlite_creates_a_missing_folder_and_refuses_an_impossible_one() {
    let db = sqlite_db().await;
    let dir = db.sqlite_path().and_then(|p| p.parent()).expect("folder");
    // A first run: data/sluice.db before data/ exists.
    let path = dir.join("no/such/dir/x.db");
    let sink = SqliteSink::open(&path).await.expect("folder created");
    sink.migrate().await.unwrap();
    assert!(path.is_file());
    // A folder that cannot be made (a file is in the way) is a permanent error.
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let err = SqliteSink::open(&blocker.join("x.db"))
        .await
        .expect_err("cannot create a folder under a file");
    assert!(!err.is_transient(), "{err:?}");
}
