//! Logins, receipts and rejected records: written once per message, in one
//! transaction per batch, whichever database and however many writers.

use sluice_core::sink::SinkError;

use crate::fixture::{Db, Login};
use crate::rows::{PLAIN_USER_LOGINS_DDL, TABLES, batch, login, message, rejected, sample_batch};

contract! {
    migrate_twice_is_idempotent(2);
    writes_rows_and_receipts;
    same_batch_again_is_all_duplicates;
    same_batch_from_two_writers_lands_once(2);
    mixed_batch_writes_only_unseen_messages;
    works_with_precreated_user_logins;
    missing_table_is_permanent;
    twenty_thousand_rows_in_one_write;
    two_sinks_write_concurrently(2);
}

async fn migrate_twice_is_idempotent(db: &Db) {
    // Two writers starting at once against a fresh database.
    let (sink, other) = (db.open_sink().await, db.open_sink().await);
    let (a, b) = tokio::join!(sink.migrate(), other.migrate());
    a.expect("concurrent migrate a");
    b.expect("concurrent migrate b");
    sink.migrate().await.expect("migrate again");
    // Another process (here: another connection) opening and migrating too.
    db.open_sink()
        .await
        .migrate()
        .await
        .expect("migrate from a third connection");
    assert_eq!(db.migrations().await, vec![1, 2, 3, 4]);
    for table in TABLES {
        assert_eq!(db.count(table).await, 0, "{table}");
    }
    if db.sqlite_path().is_some() {
        let mode = db.scalar("PRAGMA journal_mode").await;
        assert_eq!(mode.as_deref(), Some("wal"));
    }
    assert_eq!(sink.kind(), db.kind());
    sink.ping().await.expect("ping");
}

async fn writes_rows_and_receipts(db: &Db) {
    let sink = db.sink().await;
    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(outcome.logins_written, 3);
    assert_eq!(outcome.rejected_written, 1);

    let date = Some("2024-05-17".to_owned());
    assert_eq!(
        db.logins().await,
        vec![
            (stored("u1", 2_003_000), date.clone()),
            (
                (Some("u2".into()), None, None, None, None, None),
                date.clone()
            ),
            (stored("u3", 96_000), date),
        ]
    );
    assert_eq!(
        db.receipts().await,
        vec![("m1".into(), 2), ("m2".into(), 2)]
    );
    let rejected = db
        .text_rows(
            "SELECT message_key, reason, payload, payload_format, \
             CAST(rejected_at AS TEXT) FROM rejected_records",
        )
        .await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0][..4],
        [
            Some("m2".into()),
            Some("unrecognized record shape".into()),
            Some(r#"{"foo":"bar"}"#.into()),
            Some("masked_json".into())
        ]
    );
    if db.sqlite_path().is_some() {
        // RFC 3339 UTC timestamps.
        let rejected_at = rejected[0][4].as_deref().expect("rejected_at");
        chrono::DateTime::parse_from_rfc3339(rejected_at).expect("rejected_at is RFC 3339");
        let committed_at = db
            .scalar("SELECT committed_at FROM sluice_receipts LIMIT 1")
            .await
            .expect("committed_at");
        assert!(committed_at.ends_with('Z'), "{committed_at}");
        chrono::DateTime::parse_from_rfc3339(&committed_at).expect("committed_at is RFC 3339");
    } else {
        let committed_recently = db
            .scalar(
                "SELECT CAST(bool_and(committed_at > now() - interval '1 hour') AS TEXT) \
                 FROM sluice_receipts",
            )
            .await;
        assert_eq!(committed_recently.as_deref(), Some("true"));
    }
}

/// `rows::login(user, Some(app_version))` as read back.
fn stored(user: &str, app_version: i32) -> Login {
    (
        Some(user.into()),
        Some("android".into()),
        Some(format!("enc:k1:ip-{user}")),
        Some(format!("enc:k1:dev-{user}")),
        Some("RU".into()),
        Some(app_version),
    )
}

async fn same_batch_again_is_all_duplicates(db: &Db) {
    let sink = db.sink().await;
    sink.write(&sample_batch()).await.expect("first write");

    let again = sink.write(&sample_batch()).await.expect("second write");
    assert_eq!(again.duplicate_keys, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!((again.logins_written, again.rejected_written), (0, 0));
    assert_eq!(db.count("user_logins").await, 3);
    assert_eq!(db.count("rejected_records").await, 1);
    assert_eq!(db.count("sluice_receipts").await, 2);
}

async fn same_batch_from_two_writers_lands_once(db: &Db) {
    // The queue delivered the same messages to two writer replicas at once.
    let (sink, other) = (db.sink().await, db.open_sink().await);
    let batch = sample_batch();
    let (a, b) = tokio::join!(sink.write(&batch), other.write(&batch));
    let (a, b) = (a.expect("writer a"), b.expect("writer b"));
    let mut duplicates = [a.duplicate_keys, b.duplicate_keys].concat();
    duplicates.sort();
    assert_eq!(duplicates, vec!["m1".to_owned(), "m2".to_owned()]);
    assert_eq!(a.logins_written + b.logins_written, 3);
    assert_eq!(db.count("user_logins").await, 3);
    assert_eq!(db.count("rejected_records").await, 1);
}

async fn mixed_batch_writes_only_unseen_messages(db: &Db) {
    let sink = db.sink().await;
    sink.write(&batch(vec![message(
        "seen",
        vec![login("a", None)],
        vec![],
    )]))
    .await
    .expect("first write");

    let outcome = sink
        .write(&batch(vec![
            message("seen", vec![login("a-again", None)], vec![rejected("x")]),
            message("unseen", vec![login("b", Some(1))], vec![]),
            // A key repeated inside one batch is written once.
            message("unseen", vec![login("b-again", Some(1))], vec![]),
            // A message with no rows still gets its receipt.
            message("empty", vec![], vec![]),
        ]))
        .await
        .expect("mixed write");
    assert_eq!(
        outcome.duplicate_keys,
        vec!["seen".to_owned(), "unseen".to_owned()]
    );
    assert_eq!((outcome.logins_written, outcome.rejected_written), (1, 0));
    let users: Vec<Option<String>> = db.logins().await.into_iter().map(|(l, _)| l.0).collect();
    assert_eq!(users, vec![Some("a".into()), Some("b".into())]);
    assert_eq!(db.count("rejected_records").await, 0);
    assert_eq!(
        db.receipts().await,
        vec![
            ("empty".into(), 0),
            ("seen".into(), 1),
            ("unseen".into(), 1)
        ]
    );
}

async fn works_with_precreated_user_logins(db: &Db) {
    db.execute(PLAIN_USER_LOGINS_DDL).await;
    let sink = db.sink().await;
    let outcome = sink.write(&sample_batch()).await.expect("write");
    assert_eq!(outcome.logins_written, 3);
    let logins = db.logins().await;
    assert_eq!(logins.len(), 3);
    // `date` has NUMERIC affinity in SQLite; the text date must survive it.
    assert!(
        logins
            .iter()
            .all(|(_, d)| d.as_deref() == Some("2024-05-17"))
    );
    // The table was left exactly as it was: seven columns.
    let columns = match db.sqlite_path() {
        Some(_) => "SELECT CAST(count(*) AS TEXT) FROM pragma_table_info('user_logins')",
        None => {
            "SELECT CAST(count(*) AS TEXT) FROM information_schema.columns \
             WHERE table_name = 'user_logins'"
        }
    };
    assert_eq!(db.scalar(columns).await.as_deref(), Some("7"));
}

async fn missing_table_is_permanent(db: &Db) {
    // Not migrated: the tables do not exist.
    let sink = db.open_sink().await;
    let err = sink.write(&sample_batch()).await.expect_err("no tables");
    assert!(matches!(&err, SinkError::Permanent(_)), "{err:?}");
    if db.sqlite_path().is_none() {
        // relation does not exist
        assert!(err.to_string().contains("42P01"), "{err:?}");
    }
}

async fn twenty_thousand_rows_in_one_write(db: &Db) {
    let sink = db.sink().await;
    // 20,000 rows x 7 columns would be 140,000 parameters in a multi-row
    // VALUES insert, over PostgreSQL's 65,535 limit.
    let messages = (0..20)
        .map(|m| {
            let logins = (0..1_000)
                .map(|i| login(&format!("user-{m}-{i}"), Some(i)))
                .collect();
            message(&format!("big-{m}"), logins, vec![rejected("r")])
        })
        .collect();
    let outcome = sink.write(&batch(messages)).await.expect("big write");
    assert_eq!(outcome.logins_written, 20_000);
    assert_eq!(outcome.rejected_written, 20);
    assert_eq!(db.count("user_logins").await, 20_000);
    assert_eq!(db.count("sluice_receipts").await, 20);
}

async fn two_sinks_write_concurrently(db: &Db) {
    let (a, b) = (db.sink().await, db.open_sink().await);
    let batch_for = |prefix: &str| {
        batch(
            (0..50)
                .map(|m| {
                    let logins = (0..200)
                        .map(|i| login(&format!("{prefix}-{m}-{i}"), Some(i)))
                        .collect();
                    message(&format!("{prefix}-{m}"), logins, vec![])
                })
                .collect(),
        )
    };
    let (batch_a, batch_b) = (batch_for("a"), batch_for("b"));
    let task_a = tokio::spawn(async move {
        for chunk in batch_a.messages.chunks(5) {
            a.write(&batch(chunk.to_vec())).await?;
        }
        Ok::<_, SinkError>(())
    });
    let task_b = tokio::spawn(async move {
        for chunk in batch_b.messages.chunks(5) {
            b.write(&batch(chunk.to_vec())).await?;
        }
        Ok::<_, SinkError>(())
    });
    task_a.await.expect("join a").expect("writer a");
    task_b.await.expect("join b").expect("writer b");
    assert_eq!(db.count("user_logins").await, 2 * 50 * 200);
    assert_eq!(db.count("sluice_receipts").await, 100);
}
