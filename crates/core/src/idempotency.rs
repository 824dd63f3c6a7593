//! `Idempotency-Key` identities: what makes a pusher's retry safe.
//!
//! Event *i* of a request sent with the header `Idempotency-Key: K` has the
//! identity *(key(K), i)*, and the writer stores it at most once, whatever
//! happened to earlier attempts of that request. Envelope ids and receipts
//! cannot do this alone: ingest packs the events of concurrent requests into
//! shared envelopes, so a retry's events travel in different envelopes, next
//! to other requests' events.
//!
//! - Ingest turns `K` into [`identity_key`], a hash, so that whatever a
//!   pusher puts in its key (an order number, an e-mail) is never stored or
//!   queued as such. Keys are global to a deployment (one queue and its
//!   database): pushers should use random keys (a UUID per request).
//! - The identity travels in the envelope *beside* the events, as
//!   [`KeySpan`]s (a run of consecutive events of one request), never inside
//!   the events: the events stay exactly as written.
//! - The writer claims each identity in `sluice_idempotency` in the same
//!   transaction as the rows; an event whose identity was already claimed is
//!   skipped. The table holds one row per key with the runs of event indexes
//!   claimed ([`runs`]), so a claim costs a few statements per request, not a
//!   row per event. A key's row is kept until `WRITER_IDEMPOTENCY_RETENTION_HOURS`
//!   after its last claim and then purged, after which a retry is new data.

mod runs;

use sha2::{Digest, Sha256};

use crate::wire::KeySpan;

pub use runs::{Claim, Fresh, Runs};

/// Longest `Idempotency-Key` header value accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Default of `WRITER_IDEMPOTENCY_RETENTION_HOURS`.
pub const DEFAULT_RETENTION_HOURS: u64 = 72;

/// Whether `value` is a usable `Idempotency-Key`: 1–255 printable ASCII
/// characters (space to tilde).
pub fn valid_key(value: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&value.len()) && value.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// The identity key stored for an `Idempotency-Key`: 128 bits of SHA-256,
/// hex (32 characters).
pub fn identity_key(key: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"sluice idempotency key v1\0");
    hash.update(key);
    let digest = hash.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// One event's identity: its request's key and its index in the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub key: String,
    pub index: i64,
}

/// The identities of a body's `events` events: the distinct identities, and
/// for each event the index of its own among them (`None`: unkeyed). Spans
/// that do not fit the events, or overlap earlier ones, are ignored: such
/// events are stored as unkeyed rather than lost.
pub fn per_event(spans: &[KeySpan], events: usize) -> (Vec<Identity>, Vec<Option<u32>>) {
    if spans.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut identities = Vec::new();
    let mut origin = vec![None; events];
    for KeySpan(at, key, first, count) in spans {
        let Some(end) = at.checked_add(*count) else {
            continue;
        };
        let fits = *count > 0 && end <= events && !key.is_empty() && key.len() <= 64;
        let first = i64::try_from(*first).ok();
        let Some(first) = first.filter(|f| f.checked_add(*count as i64).is_some()) else {
            continue;
        };
        if !fits || origin[*at..end].iter().any(Option::is_some) {
            continue;
        }
        for (j, slot) in origin[*at..end].iter_mut().enumerate() {
            *slot = u32::try_from(identities.len()).ok();
            identities.push(Identity {
                key: key.clone(),
                index: first + j as i64,
            });
        }
    }
    (identities, origin)
}

/// Which identity each row of a message came from, per table, in row order;
/// empty while the message has no identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowOrigins {
    pub logins: Vec<Option<u32>>,
    pub tune_events: Vec<Option<u32>>,
    pub tune_adjustments: Vec<Option<u32>>,
    pub rejected: Vec<Option<u32>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert!(valid_key(b"a"));
        assert!(valid_key(b"order 42/retry-ok~"));
        assert!(valid_key("k".repeat(255).as_bytes()));
        assert!(!valid_key(b""));
        assert!(!valid_key("k".repeat(256).as_bytes()));
        assert!(!valid_key(b"tab\there"));
        assert!(!valid_key("caf\u{e9}".as_bytes()));
        assert!(!valid_key(b"nul\0"));
    }

    #[test]
    fn identity_keys_are_hashes() {
        let k = identity_key(b"order-42");
        assert_eq!(k.len(), 32);
        assert_eq!(k, identity_key(b"order-42"));
        assert_ne!(k, identity_key(b"order-43"));
        assert!(!k.contains("order"));
    }

    #[test]
    fn spans_map_events_and_bad_spans_are_ignored() {
        let spans = vec![
            KeySpan(1, "k".into(), 10, 2),
            KeySpan(2, "overlap".into(), 0, 1),
            KeySpan(3, "past the end".into(), 0, 5),
            KeySpan(4, "empty".into(), 0, 0),
            KeySpan(4, "m".into(), 0, 1),
        ];
        let (ids, origin) = per_event(&spans, 5);
        assert_eq!(origin, vec![None, Some(0), Some(1), None, Some(2)]);
        assert_eq!(
            ids,
            vec![
                Identity {
                    key: "k".into(),
                    index: 10
                },
                Identity {
                    key: "k".into(),
                    index: 11
                },
                Identity {
                    key: "m".into(),
                    index: 0
                },
            ]
        );
    }
}
