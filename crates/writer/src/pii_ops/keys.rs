//! `sluice-writer keys`: which key ids the stored values use, and where.
//!
//! The check before retiring a key: after `rekey`, no `enc:` value may be
//! left under it. Each id is the primary (`PII_KEY`), an old key
//! (`PII_OLD_KEYS`) or unknown — no configured key opens it, so those values
//! can no longer be recovered or rekeyed.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_core::masking::Masker;

use super::progress::Progress;
use super::store::{Change, Row, Store, TABLES, Table};
use super::tokens::{self, Kind};
use super::{OpsError, Tally, configured_key_ids, sweep};

/// Values per (key id, kind, table, column).
#[derive(Debug, Default)]
pub struct Usage(pub BTreeMap<(String, Kind, &'static str, &'static str), u64>);

impl Tally for Usage {
    fn merge(&mut self, other: Self) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
}

/// What a key is to the configured keyring.
pub fn status(masker: &Masker, key_id: &str) -> &'static str {
    let keyring = masker.keyring();
    if keyring.current().id() == key_id {
        "primary"
    } else if keyring.older().iter().any(|k| k.id() == key_id) {
        "old"
    } else {
        "unknown"
    }
}

fn count(table: &Table, rows: Vec<Row>) -> (Vec<Change>, Usage) {
    let mut usage = Usage::default();
    for row in rows {
        for (column, cell) in table.columns.iter().zip(&row.cells) {
            for token in tokens::find(cell.as_deref().unwrap_or_default()) {
                *usage
                    .0
                    .entry((token.key_id.to_owned(), token.kind, table.name, column.name))
                    .or_default() += 1;
            }
        }
    }
    (Vec::new(), usage)
}

/// Counts every token in every table.
pub async fn usage(store: &Store, batch_rows: usize) -> Result<Usage, OpsError> {
    let mut progress = Progress::new("keys", false);
    let mut total = Usage::default();
    for table in TABLES {
        total.merge(sweep(store, table, false, batch_rows, &mut progress, count).await?);
    }
    Ok(total)
}

pub async fn run(masker: &Masker, store: &Store, as_json: bool) -> Result<(), OpsError> {
    let usage = usage(store, 10_000).await?;
    // Every configured key, used or not, then any other id found.
    let mut ids = configured_key_ids(masker);
    for (id, ..) in usage.0.keys() {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    let mut report = Vec::new();
    for id in &ids {
        let columns: Vec<_> = usage
            .0
            .iter()
            .filter(|((k, ..), _)| k == id)
            .map(|((_, kind, table, column), n)| (*kind, *table, *column, *n))
            .collect();
        report.push((id.as_str(), status(masker, id), columns));
    }
    if as_json {
        let keys: Vec<_> = report
            .iter()
            .map(|(id, status, columns)| {
                json!({
                    "key_id": id,
                    "status": status,
                    "values": columns.iter().map(|c| c.3).sum::<u64>(),
                    "columns": columns.iter().map(|(kind, table, column, n)| json!({
                        "table": table, "column": column, "kind": kind.as_str(), "values": n,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", json!({ "keys": keys }));
        return Ok(());
    }
    println!("{:<10} {:<8} {:>12}", "key id", "status", "values");
    for (id, status, columns) in &report {
        let total: u64 = columns.iter().map(|c| c.3).sum();
        println!("{id:<10} {status:<8} {total:>12}");
        for (kind, table, column, n) in columns {
            println!(
                "    {:<36} {:<5} {n:>12}",
                format!("{table}.{column}"),
                kind.as_str()
            );
        }
    }
    Ok(())
}
