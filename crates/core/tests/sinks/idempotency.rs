//! `Idempotency-Key` identities: each claimed once, purged after retention.

use chrono::Utc;
use sluice_core::idempotency::Identity;
use sluice_core::records::MessageRows;

use crate::fixture::Db;
use crate::rows::{batch, login, message};

contract! {
    identities_are_claimed_once;
}

/// Message `key` with one login per identity `(k, i)`.
fn keyed(key: &str, ids: &[(&str, i64)]) -> MessageRows {
    let mut m = message(key, vec![], vec![]);
    m.identities = ids
        .iter()
        .map(|(k, i)| Identity {
            key: (*k).to_owned(),
            index: *i,
        })
        .collect();
    for (j, (k, i)) in ids.iter().enumerate() {
        m.logins.push(login(&format!("{k}-{i}"), None));
        m.note_origin(Some(j as u32));
    }
    m
}

/// Identities stored before, and repeated within one batch, are written
/// once; unkeyed rows and new identities are written; the purge removes
/// every identity claimed before its cut-off.
async fn identities_are_claimed_once(db: &Db) {
    let sink = db.sink().await;
    let first = batch(vec![keyed("a1", &[("k", 0), ("k", 1)])]);
    assert_eq!(sink.write(&first).await.expect("write").logins_written, 2);
    let mut retry = keyed("a2", &[("k", 1), ("k", 2)]);
    retry.logins.push(login("unkeyed", None));
    retry.note_origin(None);
    let again = batch(vec![retry, keyed("a3", &[("k", 2), ("j", 0)])]);
    let outcome = sink.write(&again).await.expect("write");
    // k-2 and unkeyed from a2, j-0 from a3; k-1 stored before, k-2 twice.
    assert_eq!(outcome.logins_written, 3);
    let purged = sink
        .purge_idempotency(Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("purge");
    assert_eq!(purged, 4);
    assert_eq!(db.count("user_logins").await, 5);
    assert_eq!(db.count("sluice_idempotency").await, 0);
}
