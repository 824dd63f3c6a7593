//! TUNE/HasOffers records through the queue: tracking events and adjustments
//! land in their tables, masked and once; the view applies an adjustment
//! that arrived before its event; TUNE's own Firehose bodies drain too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::wire::{Envelope, encode_body};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

const CLICK_ID: &str = "6d631f8e-8f1e-11e6-9a2e-067e12251fb6";
const GOOGLE_AID: &str = "38400000-8cf0-11bd-b23e-10b96e40000d";

/// Plaintext PII the records below carry; none of it may reach the database.
const PII: &[&str] = &[
    "207.66.184.66",
    "207.66.184.67",
    "198.51.100.23",
    "Go-http-client/1.1",
    "imp-secret-agent",
    "trafgen",
    "sub2-secret-7731",
    "adv-secret-4410",
    "cust-secret-2290",
    "created-secret-5510",
    "late-secret-8812",
    GOOGLE_AID,
];

fn conversion() -> Value {
    json!({
        "action": "conversion",
        "event_id": "conv-1",
        "transaction_id": "10260c5c985c562d0da427bd82b31b",
        "datetime": "2016-10-10 19:25:00",
        "offer_id": "180",
        "affiliate_id": 1039,
        "advertiser_id": "7",
        "payout": "12.50",
        "revenue": 20,
        "currency": "EUR",
        "country_code": "US",
        "status": "approved",
        "status_code": 0,
        "ip": "207.66.184.66",
        "session_ip": "207.66.184.67",
        "user_agent": "Go-http-client/1.1",
        "google_aid": GOOGLE_AID,
        "aff_sub": "trafgen",
        "aff_sub2": "sub2-secret-7731",
        "adv_sub": "adv-secret-4410",
        "customer_id": "cust-secret-2290",
        "conversion_id": 923242
    })
}

fn impression() -> Value {
    json!({
        "action": "impression",
        "event_id": "imp-1",
        "datetime": "2016-10-10T19:18:00Z",
        "offer_id": 180,
        "affiliate_id": 1039,
        "ip": "198.51.100.23",
        "user_agent": "Mozilla/5.0 (imp-secret-agent)",
        "session_on_impression": true
    })
}

/// A conversion created through TUNE's API: a new event, in the ledger.
fn created() -> Value {
    json!({
        "adjust_action": "create",
        "adjustment_sequence_id": 16648208123366i64,
        "adjustment_timestamp": 1664820812,
        "event_id": "created-1",
        "action": "conversion",
        "num": 1,
        "payout": 1.0,
        "revenue": 2.0,
        "current_payout": 1.0,
        "current_revenue": 2.0,
        "created_from_adjustment": true,
        "aff_sub": "created-secret-5510"
    })
}

/// conv-1 rejected: its count, payout and revenue taken back.
fn rejection() -> Value {
    json!({
        "adjust_action": 2,
        "adjustment_sequence_id": 16648208200001i64,
        "adjustment_timestamp": "2016-10-11 08:00:00",
        "event_id": "conv-1",
        "action": "conversion",
        "num": -1,
        "payout": -12.5,
        "revenue": -20,
        "current_payout": 0,
        "current_revenue": 0,
        "aff_sub": "trafgen"
    })
}

fn bodies(records: &[Value]) -> Vec<String> {
    records.iter().map(Value::to_string).collect()
}

async fn one(db: &TestDb, sql: &str) -> Vec<Option<String>> {
    let mut rows = db.text_rows(sql).await;
    assert_eq!(rows.len(), 1, "one row expected from {sql}");
    rows.remove(0)
}

fn number(text: &Option<String>) -> f64 {
    text.as_deref().unwrap().parse().unwrap()
}

/// The full journey for one database kind.
async fn tune_records_land(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);

    let click = tune_click_fixture();
    // The click twice (TUNE redelivered it: two messages, one event_id), the
    // other records one per message, and an envelope repeating the
    // rejection next to two records that cannot load.
    let mut messages = bodies(&[
        click.clone(),
        click.clone(),
        conversion(),
        impression(),
        created(),
        rejection(),
    ]);
    messages.push(
        Envelope::new(vec![
            rejection(),
            json!({"event_id": "bad-1", "action": "click", "offer_id": "abc",
                   "ip": "198.51.100.23"}),
            json!({"event_id": "conv-1", "adjust_action": "delete",
                   "adjustment_sequence_id": 99, "aff_sub": "trafgen"}),
        ])
        .encode(),
    );
    queue.send(&messages).await;

    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    queue.until_empty(WAIT, "every message deleted").await;
    eventually(WAIT, "3 events, 2 adjustments, 2 rejected", || async {
        db.count("tune_events").await == 3
            && db.count("tune_adjustments").await == 2
            && db.count("rejected_records").await == 2
    })
    .await;
    assert_eq!(db.count("sluice_receipts").await, 7);

    // The click: typed columns, masked columns, the rest in extra.
    let m = masker();
    let row = one(
        &db,
        &format!(
            "SELECT action, {}, CAST(offer_id AS TEXT), CAST(affiliate_id AS TEXT), \
             CAST(advertiser_id AS TEXT), transaction_id, currency, country, status, \
             CAST(payout AS TEXT), masked_ip, masked_user_agent, masked_session_ip, \
             masked_device_id, {}, {}, {} FROM tune_events WHERE event_id = '{CLICK_ID}'",
            db.epoch_sql("occurred_at"),
            db.json_sql("extra", "network_id"),
            db.json_sql("extra", "aff_sub"),
            db.json_sql("extra", "click_url"),
        ),
    )
    .await;
    let text = |i: usize| row[i].as_deref();
    assert_eq!(text(0), Some("click"));
    assert_eq!(text(1), Some("1476127152"));
    assert_eq!(
        (text(2), text(3), text(4)),
        (Some("180"), Some("1039"), None)
    );
    assert_eq!(text(5), Some("10260c5c985c562d0da427bd82b31b"));
    assert_eq!(
        (text(6), text(7), text(8), text(9)),
        (Some("EUR"), Some("US"), Some("0"), None)
    );
    assert_eq!(m.recover(text(10).unwrap()).unwrap(), b"207.66.184.66");
    assert_eq!(text(11), Some(m.hash(b"Go-http-client/1.1").as_str()));
    assert_eq!((text(12), text(13)), (None, None));
    assert_eq!(text(14), Some("NETWORKID"));
    assert_eq!(m.recover(text(15).unwrap()).unwrap(), b"trafgen");
    assert!(text(16).unwrap().starts_with("enc:"));

    // The conversion: string forms converted, device id from google_aid.
    let row = one(
        &db,
        &format!(
            "SELECT {}, CAST(offer_id AS TEXT), CAST(advertiser_id AS TEXT), \
             CAST(payout AS TEXT), CAST(revenue AS TEXT), status, masked_session_ip, \
             masked_device_id FROM tune_events WHERE event_id = 'conv-1'",
            db.epoch_sql("occurred_at"),
        ),
    )
    .await;
    assert_eq!(row[0].as_deref(), Some("1476127500"));
    assert_eq!(
        (row[1].as_deref(), row[2].as_deref()),
        (Some("180"), Some("7"))
    );
    assert_eq!((number(&row[3]), number(&row[4])), (12.5, 20.0));
    assert_eq!(row[5].as_deref(), Some("approved"));
    assert_eq!(
        m.recover(row[6].as_deref().unwrap()).unwrap(),
        b"207.66.184.67"
    );
    assert_eq!(
        m.recover(row[7].as_deref().unwrap()).unwrap(),
        GOOGLE_AID.as_bytes()
    );

    let row = one(
        &db,
        &format!(
            "SELECT action, {} FROM tune_events WHERE event_id = 'imp-1'",
            db.epoch_sql("occurred_at")
        ),
    )
    .await;
    assert_eq!(
        row,
        vec![Some("impression".to_owned()), Some("1476127080".to_owned())]
    );

    // The ledger: the create and the rejection (sent twice, stored once).
    let ledger = db
        .text_rows(&format!(
            "SELECT event_id, CAST(adjust_action AS TEXT), {}, CAST(num AS TEXT), \
             CAST(payout AS TEXT), CAST(current_revenue AS TEXT) \
             FROM tune_adjustments ORDER BY event_id",
            db.epoch_sql("adjusted_at")
        ))
        .await;
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0][0].as_deref(), Some("conv-1"));
    assert_eq!(ledger[0][1].as_deref(), Some("2"));
    assert_eq!(ledger[0][2].as_deref(), Some("1476172800"));
    assert_eq!(ledger[0][3].as_deref(), Some("-1"));
    assert_eq!(number(&ledger[0][4]), -12.5);
    assert_eq!(number(&ledger[0][5]), 0.0);
    assert_eq!(ledger[1][0].as_deref(), Some("created-1"));
    assert_eq!(ledger[1][1].as_deref(), Some("1"));
    assert_eq!(ledger[1][2].as_deref(), Some("1664820812"));

    // The view: conv-1 with the rejection applied; the click untouched.
    let current = db
        .text_rows(
            "SELECT event_id, CAST(payout AS TEXT), CAST(revenue AS TEXT), \
             CAST(num_delta AS TEXT), CAST(adjustment_count AS TEXT) \
             FROM tune_events_current ORDER BY event_id",
        )
        .await;
    assert_eq!(current.len(), 3);
    let conv = current
        .iter()
        .find(|r| r[0].as_deref() == Some("conv-1"))
        .unwrap();
    assert_eq!((number(&conv[1]), number(&conv[2])), (0.0, 0.0));
    assert_eq!(
        (conv[3].as_deref(), conv[4].as_deref()),
        (Some("-1"), Some("1"))
    );
    let click_now = current
        .iter()
        .find(|r| r[0].as_deref() == Some(CLICK_ID))
        .unwrap();
    assert_eq!(click_now[4].as_deref(), Some("0"));

    let mut reasons: Vec<String> = db.rejected().await.into_iter().map(|r| r.reason).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "adjust_action is not 1 or \"create\", 2 or \"update\"",
            "offer_id is not an integer"
        ]
    );

    // An update that arrives before its event waits in the ledger...
    queue
        .send(&bodies(&[json!({
            "adjust_action": "UPDATE",
            "adjustment_sequence_id": "7",
            "adjustment_timestamp": "2016-10-12T10:00:00+02:00",
            "event_id": "late-1",
            "payout": "-5",
            "revenue": "-8",
            "num": -1,
            "aff_sub": "late-secret-8812"
        })]))
        .await;
    db.until_rows("tune_adjustments", 3, WAIT, "the early adjustment stored")
        .await;
    let late = "SELECT CAST(payout AS TEXT), CAST(revenue AS TEXT), \
                CAST(adjustment_count AS TEXT) FROM tune_events_current \
                WHERE event_id = 'late-1'";
    assert!(db.text_rows(late).await.is_empty());
    // ...and shows in the view once the event arrives.
    queue
        .send(&bodies(&[json!({
            "action": "conversion",
            "event_id": "late-1",
            "datetime": 1476266400,
            "payout": 5,
            "revenue": "8.00",
            "ip": "198.51.100.23",
            "aff_sub": "late-secret-8812"
        })]))
        .await;
    eventually(WAIT, "the late event in the view", || async {
        db.text_rows(late).await.len() == 1
    })
    .await;
    let row = one(&db, late).await;
    assert_eq!((number(&row[0]), number(&row[1])), (0.0, 0.0));
    assert_eq!(row[2].as_deref(), Some("1"));

    // No plaintext PII anywhere in the database.
    queue.until_empty(WAIT, "every message deleted").await;
    let dump = db.dump().await;
    for pii in PII {
        assert!(
            !dump.contains(pii),
            "plaintext PII ({pii}) found in the database"
        );
    }

    let (_, metrics) = writer.get("/metrics").await;
    for table in ["tune_events", "tune_adjustments"] {
        assert!(
            metrics.contains(&format!(
                "sluice_writer_rows_written_total{{table=\"{table}\"}}"
            )),
            "no rows_written metric for {table}"
        );
    }
    writer.stop().await;
}

/// A body as TUNE's Firehose puts it on a queue itself: base64(gzip(JSON))
/// of an object with an `events` list and TUNE's own metadata, no `v` or
/// `id` (the SQS message id is then the receipt key).
async fn firehose_delivery_lands(backend: Backend, kind: &str) {
    let queue = require!(TestQueue::new(backend, 30).await);
    let dir = tempfile::tempdir().unwrap();
    let db = require!(TestDb::fresh(kind, dir.path()).await);
    let delivery = json!({
        "count": 3,
        "network_id": "NETWORKID",
        "events": [tune_click_fixture(), conversion(), rejection()]
    });
    queue
        .send(&[encode_body(delivery.to_string().as_bytes())])
        .await;
    let writer = RunningWriter::start(queue.shared(), &db, test_tuning()).await;
    eventually(WAIT, "the delivery loaded and deleted", || async {
        db.count("tune_events").await == 2
            && db.count("tune_adjustments").await == 1
            && queue.remaining().await == 0
    })
    .await;
    assert_eq!(db.count("rejected_records").await, 0);
    assert_eq!(db.count("sluice_receipts").await, 1);
    let actions = db
        .text_rows("SELECT action FROM tune_events ORDER BY action")
        .await;
    assert_eq!(
        actions,
        vec![
            vec![Some("click".to_owned())],
            vec![Some("conversion".to_owned())]
        ]
    );
    let current = one(
        &db,
        "SELECT CAST(payout AS TEXT), CAST(adjustment_count AS TEXT) \
         FROM tune_events_current WHERE event_id = 'conv-1'",
    )
    .await;
    assert_eq!(number(&current[0]), 0.0);
    assert_eq!(current[1].as_deref(), Some("1"));
    let dump = db.dump().await;
    for pii in PII {
        assert!(
            !dump.contains(pii),
            "plaintext PII ({pii}) found in the database"
        );
    }
    writer.stop().await;
}

on_both_queues! {
    tune_records_land_in_postgres => tune_records_land("postgres");
    tune_records_land_in_sqlite => tune_records_land("sqlite");
    firehose_delivery_lands_in_postgres => firehose_delivery_lands("postgres");
    firehose_delivery_lands_in_sqlite => firehose_delivery_lands("sqlite");
}
