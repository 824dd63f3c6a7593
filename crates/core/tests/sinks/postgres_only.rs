//! What only the PostgreSQL sink does: enforce column lengths (SQLite does
//! not), and reach a server over the network.

use std::time::Duration;

use sluice_core::sink::postgres::PostgresSink;
use sluice_core::sink::{Sink, SinkError};

use crate::fixture::{Db, Kind};
use crate::rows::{batch, login, message, sample_batch};

#[tokio::test]
async fn pg_value_too_long_is_permanent_and_leaves_nothing() {
    let Some(db) = Db::fresh(Kind::Postgres).await else {
        return;
    };
    let sink = db.sink().await;
    let secret = "device-type-that-is-far-too-long-SECRET-1234567890";
    let mut bad = login("u1", None);
    bad.device_type = Some(secret.to_owned());
    let err = sink
        .write(&batch(vec![
            message("good", vec![login("u0", None)], vec![]),
            message("bad", vec![bad], vec![]),
        ]))
        .await
        .expect_err("value too long must fail");
    let SinkError::Permanent(text) = &err else {
        panic!("expected a permanent error, got {err:?}");
    };
    assert!(text.contains("22001"), "{text}");
    assert!(text.contains("user_logins"), "{text}");
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!err.to_string().contains("SECRET"), "{err}");

    assert_eq!(db.count("sluice_receipts").await, 0);
    assert_eq!(db.count("user_logins").await, 0);

    // The pool is healthy afterwards and a good batch goes through.
    let outcome = sink
        .write(&batch(vec![message(
            "good",
            vec![login("u0", None)],
            vec![],
        )]))
        .await
        .expect("good write");
    assert_eq!(outcome.logins_written, 1);
    db.finish().await;
}

#[tokio::test]
async fn pg_unreachable_database_is_transient() {
    // Port 1 on localhost: connection refused, no server needed.
    let sink = PostgresSink::connect_with_timeout(
        "postgres://sluice:secret-password@127.0.0.1:1/sluice",
        1,
        Duration::from_millis(300),
    )
    .expect("lazy connect succeeds");
    let err = sink.ping().await.expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err:?}");
    let err = sink.write(&sample_batch()).await.expect_err("write");
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("secret-password"));

    let err = PostgresSink::connect("postgres://u:secret-password@host:notaport/db", 1)
        .await
        .expect_err("bad URL");
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("secret-password"), "{err}");
}
