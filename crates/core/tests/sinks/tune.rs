//! TUNE events and adjustments: each stored once however often TUNE sends
//! it, and `tune_events_current` applying adjustments in whatever order
//! they came.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use sluice_core::records::{AdjustAction, TuneEventRow, WriteBatch};
use sqlx::PgConnection;

use crate::fixture::{Db, sqlite_values as lite_values};
use crate::rows::{
    amount, batch, duplicate_tune_batch, time, tune_adjustment, tune_event, tune_message,
    view_batches,
};

contract! {
    tune_rows_round_trip;
    tune_duplicates_are_skipped;
    tune_view_applies_updates_even_when_they_come_first;
    overlapping_tune_events_from_two_writers(2);
}

async fn tune_rows_round_trip(db: &Db) {
    let sink = db.sink().await;

    let bare = TuneEventRow {
        event_id: "e-bare".to_owned(),
        action: "impression".to_owned(),
        occurred_at: None,
        transaction_id: None,
        offer_id: None,
        affiliate_id: None,
        advertiser_id: None,
        payout: None,
        revenue: None,
        currency: None,
        country: None,
        status: None,
        masked_ip: None,
        masked_session_ip: None,
        masked_user_agent: None,
        masked_device_id: None,
        extra: "{}".to_owned(),
    };
    let mut create = tune_adjustment(
        "e-created",
        16_648_208_123_366,
        AdjustAction::Create,
        (1, "1.0", "2.0"),
        "2022-10-03T18:13:32Z",
    );
    create.current_payout = amount("1.0");
    create.current_revenue = amount("2.0");
    let outcome = sink
        .write(&batch(vec![tune_message(
            "m",
            vec![tune_event("e1", Some("12.50"), Some("0.1")), bare],
            vec![create],
        )]))
        .await
        .expect("write");
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (2, 1)
    );
    assert_eq!(outcome.rows_written(), 3);
    assert_eq!(db.receipts().await, vec![("m".into(), 3)]);
    match db.pg().await {
        Some(mut conn) => pg_round_trip(&mut conn).await,
        None => sqlite_round_trip(db.sqlite_path().expect("sqlite")),
    }
}

/// Exact `numeric`, `timestamptz` and `jsonb` columns.
async fn pg_round_trip(conn: &mut PgConnection) {
    type Typed = (
        String,
        String,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let typed: Vec<Typed> = sqlx::query_as(
        "SELECT event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
         advertiser_id, payout::text, revenue::text, currency, country, status \
         FROM tune_events ORDER BY event_id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("typed columns");
    assert_eq!(
        typed,
        vec![
            (
                "e-bare".into(),
                "impression".into(),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ),
            (
                "e1".into(),
                "conversion".into(),
                Some(time("2016-10-10T19:19:12.250Z")),
                Some("tx-e1".into()),
                Some(180),
                Some(1039),
                Some(9_000_000_000),
                Some("12.50".into()),
                Some("0.1".into()),
                Some("EUR".into()),
                Some("US".into()),
                Some("approved".into())
            ),
        ]
    );
    type Masked = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        sqlx::types::Json<serde_json::Value>,
        bool,
    );
    let masked: Masked = sqlx::query_as(
        "SELECT masked_ip, masked_session_ip, masked_user_agent, masked_device_id, extra, \
         loaded_at > now() - interval '1 hour' FROM tune_events WHERE event_id = 'e1'",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("masked columns");
    assert_eq!(
        masked,
        (
            Some("enc:k1:ip-e1".into()),
            None,
            Some("hmac:k1:ua".into()),
            Some("enc:k1:dev".into()),
            sqlx::types::Json(serde_json::json!(
                {"network_id": "N", "aff_sub": "enc:k1:sub", "nested": {"n": 1}}
            )),
            true
        )
    );
    let extra_type: String =
        sqlx::query_scalar("SELECT jsonb_typeof(extra) FROM tune_events WHERE event_id = 'e-bare'")
            .fetch_one(&mut *conn)
            .await
            .expect("extra type");
    assert_eq!(extra_type, "object");

    type Adjustment = (
        String,
        i64,
        i16,
        Option<DateTime<Utc>>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let adjustment: Adjustment = sqlx::query_as(
        "SELECT event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, \
         payout::text, revenue::text, current_payout::text, current_revenue::text, \
         extra->>'action' FROM tune_adjustments",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("adjustment");
    assert_eq!(
        adjustment,
        (
            "e-created".into(),
            16_648_208_123_366,
            1,
            Some(time("2022-10-03T18:13:32Z")),
            Some(1),
            Some("1.0".into()),
            Some("2.0".into()),
            Some("1.0".into()),
            Some("2.0".into()),
            "conversion".into()
        )
    );
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// `REAL` amounts, RFC 3339 text timestamps, JSON text.
fn sqlite_round_trip(path: &Path) {
    let typed = lite_values(
        path,
        "SELECT event_id, action, occurred_at, transaction_id, offer_id, affiliate_id, \
         advertiser_id, payout, revenue, currency, country, status FROM tune_events \
         WHERE event_id = 'e1'",
    );
    assert_eq!(
        typed,
        vec![vec![
            text("e1"),
            text("conversion"),
            text("2016-10-10T19:19:12.250Z"),
            text("tx-e1"),
            Value::Integer(180),
            Value::Integer(1039),
            Value::Integer(9_000_000_000),
            Value::Real(12.5),
            Value::Real(0.1),
            text("EUR"),
            text("US"),
            text("approved")
        ]]
    );
    let masked = lite_values(
        path,
        "SELECT masked_ip, masked_user_agent, json_extract(extra, '$.network_id'), \
         json_type(extra), loaded_at FROM tune_events ORDER BY event_id",
    );
    // e-bare first: no masked values, an empty object of extras.
    assert_eq!(
        masked[0][..4],
        [Value::Null, Value::Null, Value::Null, text("object")]
    );
    assert_eq!(
        masked[1][..4],
        [
            text("enc:k1:ip-e1"),
            text("hmac:k1:ua"),
            text("N"),
            text("object")
        ]
    );
    let Value::Text(loaded_at) = &masked[1][4] else {
        panic!("loaded_at is text: {:?}", masked[1][4]);
    };
    assert!(loaded_at.ends_with('Z'), "{loaded_at}");
    chrono::DateTime::parse_from_rfc3339(loaded_at).expect("loaded_at is RFC 3339");

    let adjustment = lite_values(
        path,
        "SELECT event_id, adjustment_sequence_id, adjust_action, adjusted_at, num, payout, \
         revenue, current_payout, current_revenue FROM tune_adjustments",
    );
    assert_eq!(
        adjustment,
        vec![vec![
            text("e-created"),
            Value::Integer(16_648_208_123_366),
            Value::Integer(1),
            text("2022-10-03T18:13:32.000Z"),
            Value::Integer(1),
            Value::Real(1.0),
            Value::Real(2.0),
            Value::Real(1.0),
            Value::Real(2.0)
        ]]
    );
}

async fn tune_duplicates_are_skipped(db: &Db) {
    let sink = db.sink().await;
    let outcome = sink.write(&duplicate_tune_batch()).await.expect("write");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (2, 1)
    );
    // The first copy is the one kept.
    let kept = db
        .text_rows("SELECT action, CAST(payout AS TEXT) FROM tune_events WHERE event_id = 'e1'")
        .await;
    let payout = if db.sqlite_path().is_some() {
        "10.0"
    } else {
        "10"
    };
    assert_eq!(
        kept,
        vec![vec![Some("conversion".into()), Some(payout.into())]]
    );

    // The same event and adjustment in a new message (TUNE sent them again).
    let outcome = sink
        .write(&batch(vec![tune_message(
            "t3",
            vec![tune_event("e1", Some("1"), None)],
            vec![tune_adjustment(
                "e1",
                7,
                AdjustAction::Update,
                (0, "5", "5"),
                "2016-10-11T00:00:00Z",
            )],
        )]))
        .await
        .expect("write again");
    assert!(outcome.duplicate_keys.is_empty());
    assert_eq!(
        (
            outcome.tune_events_written,
            outcome.tune_adjustments_written
        ),
        (0, 0)
    );
    assert_eq!(outcome.rows_written(), 0);
    // And the first batch redelivered: receipts skip it.
    let again = sink
        .write(&duplicate_tune_batch())
        .await
        .expect("redelivery");
    assert_eq!(again.duplicate_keys, vec!["t1".to_owned(), "t2".to_owned()]);
    assert_eq!(again.rows_written(), 0);

    assert_eq!(db.count("tune_events").await, 2);
    assert_eq!(db.count("tune_adjustments").await, 1);
    assert_eq!(db.count("sluice_receipts").await, 3);
}

/// A row of tune_events_current: event_id, payout, revenue (as text: exact
/// numeric), num_delta, adjustment_count, last_adjusted_at.
type PgCurrent = (
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<DateTime<Utc>>,
);

async fn pg_current(conn: &mut PgConnection) -> Vec<PgCurrent> {
    sqlx::query_as(
        "SELECT event_id, payout::text, revenue::text, num_delta, adjustment_count, \
         last_adjusted_at FROM tune_events_current ORDER BY event_id",
    )
    .fetch_all(conn)
    .await
    .expect("read tune_events_current")
}

/// A row of tune_events_current in SQLite: event_id, payout, revenue,
/// num_delta, adjustment_count, last_adjusted_at.
type LiteCurrent = (String, Option<f64>, Option<f64>, i64, i64, Option<String>);

fn lite_current(path: &Path) -> Vec<LiteCurrent> {
    let real = |v: &Value| match v {
        Value::Real(x) => Some(*x),
        Value::Integer(x) => Some(*x as f64),
        _ => None,
    };
    let integer = |v: &Value| match v {
        Value::Integer(x) => *x,
        other => panic!("not an integer: {other:?}"),
    };
    let text = |v: &Value| match v {
        Value::Text(x) => Some(x.clone()),
        _ => None,
    };
    lite_values(
        path,
        "SELECT event_id, payout, revenue, num_delta, adjustment_count, last_adjusted_at \
         FROM tune_events_current ORDER BY event_id",
    )
    .iter()
    .map(|r| {
        let id = text(&r[0]).expect("event_id");
        (
            id,
            real(&r[1]),
            real(&r[2]),
            integer(&r[3]),
            integer(&r[4]),
            text(&r[5]),
        )
    })
    .collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

async fn tune_view_applies_updates_even_when_they_come_first(db: &Db) {
    let sink = db.sink().await;
    let [early, events, late] = <[WriteBatch; 3]>::try_from(view_batches()).expect("3 batches");

    sink.write(&early).await.expect("early adjustments");
    assert_eq!(db.count("tune_adjustments").await, 2);
    assert_eq!(db.count("tune_events_current").await, 0, "no event yet");

    sink.write(&events).await.expect("events");
    let after_events = db.pg().await;
    match (after_events, db.sqlite_path()) {
        (Some(mut conn), _) => {
            let day = |d: &str| Some(time(&format!("{d}T00:00:00Z")));
            assert_eq!(
                pg_current(&mut conn).await,
                vec![
                    (
                        "e1".into(),
                        Some("0.00".into()),
                        Some("0.10".into()),
                        -1,
                        1,
                        day("2016-10-12")
                    ),
                    ("e2".into(), Some("0.1".into()), None, 0, 0, None),
                ]
            );
        }
        (None, path) => {
            let rows = lite_current(path.expect("sqlite"));
            assert_eq!(rows.len(), 2);
            let (id, payout, revenue, num, count, last) = &rows[0];
            assert_eq!(id, "e1");
            assert!(close(*payout, 0.0), "{payout:?}");
            assert!(close(*revenue, 0.1), "{revenue:?}");
            assert_eq!((*num, *count), (-1, 1));
            assert_eq!(last.as_deref(), Some("2016-10-12T00:00:00.000Z"));
            assert_eq!(rows[1].0, "e2");
            assert!(close(rows[1].1, 0.1));
            assert_eq!(
                (rows[1].2, rows[1].3, rows[1].4, rows[1].5.clone()),
                (None, 0, 0, None)
            );
        }
    }

    sink.write(&late).await.expect("second update");
    match (db.pg().await, db.sqlite_path()) {
        (Some(mut conn), _) => {
            let day = |d: &str| Some(time(&format!("{d}T00:00:00Z")));
            assert_eq!(
                pg_current(&mut conn).await[0],
                (
                    "e1".into(),
                    Some("0.25".into()),
                    Some("0.10".into()),
                    -1,
                    2,
                    day("2016-10-12")
                )
            );
        }
        (None, path) => {
            let (_, payout, revenue, num, count, last) =
                lite_current(path.expect("sqlite")).remove(0);
            assert!(close(payout, 0.25), "{payout:?}");
            assert!(close(revenue, 0.1), "{revenue:?}");
            assert_eq!((num, count), (-1, 2));
            assert_eq!(last.as_deref(), Some("2016-10-12T00:00:00.000Z"));
        }
    }
    // The view carries the event's other columns unchanged.
    let columns = db
        .text_rows(
            "SELECT action, CAST(offer_id AS TEXT), masked_ip FROM tune_events_current \
             WHERE event_id = 'e1'",
        )
        .await;
    assert_eq!(
        columns,
        vec![vec![
            Some("conversion".into()),
            Some("180".into()),
            Some("enc:k1:ip-e1".into())
        ]]
    );
}

async fn overlapping_tune_events_from_two_writers(db: &Db) {
    let (sink, other) = (db.sink().await, db.open_sink().await);
    // Different messages (keys) holding the same events in opposite orders:
    // sorted inserts keep the two transactions from deadlocking.
    let events: Vec<TuneEventRow> = (0..200)
        .map(|i| tune_event(&format!("e{i:03}"), Some("1"), None))
        .collect();
    let mut reversed = events.clone();
    reversed.reverse();
    let batch_of = |prefix: &str, events: &[TuneEventRow]| {
        let messages = events
            .chunks(20)
            .enumerate()
            .map(|(i, c)| tune_message(&format!("{prefix}{i}"), c.to_vec(), vec![]));
        batch(messages.collect())
    };
    let (a, b) = (batch_of("a", &events), batch_of("b", &reversed));
    let (ra, rb) = tokio::join!(sink.write(&a), other.write(&b));
    let (ra, rb) = (ra.expect("writer a"), rb.expect("writer b"));
    assert_eq!(ra.tune_events_written + rb.tune_events_written, 200);
    assert_eq!(db.count("tune_events").await, 200);
}
