//! `sluice-writer rekey`: re-encrypts every `enc:` value made under an old
//! key with the primary key, so the old key can be retired.
//!
//! Slice by slice (see [`super::store`]): each slice's rows are locked, their
//! tokens under old keys decrypted and encrypted again, the rows written and
//! the slice committed. Safe beside running writers — they only insert, with
//! the primary key, and a value already under the primary is left alone — and
//! safe to kill: a slice is all done or not at all, and a rerun finds exactly
//! the values still under old keys (the work left is what the data says, so
//! no checkpoint is needed). AES-SIV is deterministic, so equal values stay
//! equal after rekeying, as they are across writers.
//!
//! `hmac:` values cannot move: the plaintext is gone. They are counted and
//! left; a hash under an old key still groups equal values, but no longer
//! matches new values of the same input (`lookup` prints both forms).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_core::masking::Masker;

use super::progress::Progress;
use super::store::{Change, Row, Store, TABLES, Table};
use super::tokens::{self, Kind};
use super::{OpsError, Tally, audit, sweep};

type Place = (String, &'static str, &'static str);

/// What a rekey found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `enc:` values moved to the primary, by (old key id, table, column).
    pub rekeyed: BTreeMap<Place, u64>,
    /// `hmac:` values under another key, which cannot move.
    pub hashes: BTreeMap<Place, u64>,
    /// `enc:` values under a key no configured key is.
    pub unknown: BTreeMap<Place, u64>,
    /// `enc:` values under an old key that do not decrypt with it.
    pub corrupt: u64,
    /// Rows changed.
    pub rows: u64,
}

impl Tally for Outcome {
    fn merge(&mut self, other: Self) {
        for (mine, theirs) in [
            (&mut self.rekeyed, other.rekeyed),
            (&mut self.hashes, other.hashes),
            (&mut self.unknown, other.unknown),
        ] {
            for (k, n) in theirs {
                *mine.entry(k).or_default() += n;
            }
        }
        self.corrupt += other.corrupt;
        self.rows += other.rows;
    }
}

fn sum(map: &BTreeMap<Place, u64>) -> u64 {
    map.values().sum()
}

/// Re-encrypts one slice's tokens under old keys.
fn rekey_rows(masker: &Masker, table: &Table, rows: Vec<Row>) -> (Vec<Change>, Outcome) {
    let primary = masker.keyring().current().id();
    let mut outcome = Outcome::default();
    let mut changes = Vec::new();
    for row in rows {
        let mut changed = false;
        let mut cells = Vec::with_capacity(row.cells.len());
        for (column, cell) in table.columns.iter().zip(row.cells) {
            let Some(text) = cell else {
                cells.push(None);
                continue;
            };
            let new = tokens::rewrite(&text, |token| {
                if token.key_id == primary {
                    return None;
                }
                let place = (token.key_id.to_owned(), table.name, column.name);
                match token.kind {
                    Kind::Hmac => {
                        *outcome.hashes.entry(place).or_default() += 1;
                        None
                    }
                    Kind::Enc if masker.keyring().by_id(token.key_id).is_none() => {
                        *outcome.unknown.entry(place).or_default() += 1;
                        None
                    }
                    Kind::Enc => match masker.recover(token.text) {
                        Ok(plain) => {
                            *outcome.rekeyed.entry(place).or_default() += 1;
                            Some(masker.encrypt(&plain))
                        }
                        Err(_) => {
                            outcome.corrupt += 1;
                            None
                        }
                    },
                }
            });
            changed |= new.is_some();
            cells.push(Some(new.unwrap_or(text)));
        }
        if changed {
            outcome.rows += 1;
            changes.push(Change::Update {
                key: row.key,
                cells,
            });
        }
    }
    (changes, outcome)
}

pub async fn run(
    masker: Masker,
    store: &Store,
    operator: &str,
    dry_run: bool,
    batch_rows: usize,
) -> Result<(), OpsError> {
    let primary = masker.keyring().current().id().to_owned();
    let old_ids: Vec<String> = masker
        .keyring()
        .older()
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    let masker = Arc::new(masker);
    let mut progress = Progress::new("rekey", true);
    let mut outcome = Outcome::default();
    let mut failure = None;
    for table in TABLES {
        let m = Arc::clone(&masker);
        let done = sweep(
            store,
            table,
            !dry_run,
            batch_rows,
            &mut progress,
            move |table, rows| rekey_rows(&m, table, rows),
        )
        .await;
        match done {
            Ok(o) => outcome.merge(o),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() && !dry_run {
        failure = store.settle().await.err();
    }
    let counts = format!(
        "rekeyed={} rows={} hashes_under_old_keys={} unknown_key={} corrupt={}",
        sum(&outcome.rekeyed),
        outcome.rows,
        sum(&outcome.hashes),
        sum(&outcome.unknown),
        outcome.corrupt
    );
    let key_ids = format!("{} -> {primary}", old_ids.join(","));
    audit(
        "rekey",
        operator,
        &key_ids,
        &counts,
        dry_run,
        failure.is_none(),
    );
    if let Some(e) = failure {
        return Err(e);
    }
    print_summary(&outcome, &primary, dry_run);
    Ok(())
}

fn print_summary(outcome: &Outcome, primary: &str, dry_run: bool) {
    let verb = if dry_run { "would rekey" } else { "rekeyed" };
    println!(
        "{verb} {} values in {} rows to key {primary}",
        sum(&outcome.rekeyed),
        outcome.rows
    );
    let lines = |map: &BTreeMap<Place, u64>| {
        for ((key, table, column), n) in map {
            println!("    {:<36} key {key}: {n}", format!("{table}.{column}"));
        }
    };
    lines(&outcome.rekeyed);
    if !outcome.hashes.is_empty() {
        println!(
            "{} hash values under other keys stay as they are: a hash cannot change key without the plaintext",
            sum(&outcome.hashes)
        );
        lines(&outcome.hashes);
    }
    if !outcome.unknown.is_empty() {
        println!(
            "{} values under keys that are not configured were left (add the key to PII_OLD_KEYS and run rekey again)",
            sum(&outcome.unknown)
        );
        lines(&outcome.unknown);
    }
    if outcome.corrupt > 0 {
        println!(
            "{} values did not decrypt with the key they name and were left",
            outcome.corrupt
        );
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::masking::{Keyring, PiiKey, Policy};

    use super::*;
    use crate::pii_ops::store::{RowKey, TABLES};

    #[test]
    fn moves_enc_under_old_keys_and_counts_what_it_cannot_move() {
        let (a, b, c) = (
            PiiKey::from_bytes(&[1; 32]),
            PiiKey::from_bytes(&[2; 32]),
            PiiKey::from_bytes(&[3; 32]),
        );
        let under = |k: &PiiKey| Masker::new(Keyring::new(k.clone(), vec![]), Policy::default());
        let rotated = Masker::new(Keyring::new(b.clone(), vec![a.clone()]), Policy::default());
        let tune = TABLES.iter().find(|t| t.name == "tune_events").unwrap();
        let extra = format!(
            r#"{{"aff_sub":"{}","deep":[{{"email":"{}"}}],"n":1e400}}"#,
            under(&a).encrypt(b"sub-1"),
            under(&c).encrypt(b"lost@example.com"),
        );
        let row = Row {
            key: RowKey::RowId(1),
            cells: vec![
                Some(under(&a).encrypt(b"203.0.113.1")),
                Some(under(&b).encrypt(b"203.0.113.2")),
                Some(under(&a).hash(b"agent")),
                None,
                Some(extra),
            ],
        };
        let (changes, outcome) = rekey_rows(&rotated, tune, vec![row]);
        assert_eq!(sum(&outcome.rekeyed), 2);
        assert_eq!(sum(&outcome.hashes), 1);
        assert_eq!(sum(&outcome.unknown), 1);
        assert_eq!(outcome.rows, 1);
        let [Change::Update { cells, .. }] = &changes[..] else {
            panic!("one update: {changes:?}");
        };
        let b_only = under(&b);
        assert_eq!(
            b_only.recover(cells[0].as_deref().unwrap()).unwrap(),
            b"203.0.113.1"
        );
        assert_eq!(
            b_only.recover(cells[1].as_deref().unwrap()).unwrap(),
            b"203.0.113.2"
        );
        assert!(
            cells[2]
                .as_deref()
                .unwrap()
                .starts_with(&format!("hmac:{}:", a.id()))
        );
        assert_eq!(cells[3], None);
        let extra = cells[4].as_deref().unwrap();
        assert!(
            extra.ends_with(r#""}],"n":1e400}"#),
            "the rest stays as it was: {extra}"
        );
        assert!(extra.contains(&format!("enc:{}:", c.id())));
        assert!(!extra.contains(&format!("enc:{}:", a.id())));

        // Again: nothing left to move.
        let row = Row {
            key: RowKey::RowId(1),
            cells: cells.clone(),
        };
        let (changes, outcome) = rekey_rows(&rotated, tune, vec![row]);
        assert!(changes.is_empty());
        assert_eq!(sum(&outcome.rekeyed), 0);
    }
}
