//! `sluice-writer forget FIELD VALUE [FIELD VALUE …]`: erases a data subject
//! (GDPR art. 17).
//!
//! A row holding one of the subject's stored forms (under any configured
//! key) is the subject's:
//!
//! - `user_logins`: deleted;
//! - `tune_events`, `tune_adjustments`: every masked column and every masked
//!   value inside `extra` becomes NULL, while the business columns (amounts,
//!   ids, dates) stay for accounting — or the row is deleted with
//!   `--delete-events`;
//! - `rejected_records`: deleted (also a payload encrypted whole whose
//!   plaintext holds one of the values as a whole word).
//!
//! Running it again finds nothing left. A field stored as a truncated
//! network is refused: the network is shared with other subjects.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_core::masking::{Masker, Strategy};

use super::progress::Progress;
use super::store::{Change, ColumnKind, Row, Store, TABLES, Table};
use super::subject::Subject;
use super::tokens;
use super::{OpsError, Tally, audit, configured_key_ids, field_label, sweep};

#[derive(Debug, Default)]
struct Done {
    deleted: u64,
    cleared: u64,
}

impl Tally for Done {
    fn merge(&mut self, other: Self) {
        self.deleted += other.deleted;
        self.cleared += other.cleared;
    }
}

/// `text` (JSON) with every masked string value replaced by `null`.
fn null_masked_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for token in tokens::find(text) {
        let quoted = token.start > 0
            && bytes[token.start - 1] == b'"'
            && bytes.get(token.end) == Some(&b'"');
        if quoted && token.start > copied {
            out.push_str(&text[copied..token.start - 1]);
            out.push_str("null");
            copied = token.end + 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn forget_rows(
    masker: &Masker,
    subject: &Subject,
    delete_events: bool,
    table: &Table,
    rows: Vec<Row>,
) -> (Vec<Change>, Done) {
    let mut done = Done::default();
    let mut changes = Vec::new();
    let keeps_rows = matches!(table.name, "tune_events" | "tune_adjustments") && !delete_events;
    for row in rows {
        let theirs = table.columns.iter().zip(&row.cells).any(|(c, cell)| {
            cell.as_deref()
                .is_some_and(|cell| subject.matches(masker, c.kind, cell))
        });
        if !theirs {
            continue;
        }
        if !keeps_rows {
            done.deleted += 1;
            changes.push(Change::Delete(row.key));
            continue;
        }
        let cells = table
            .columns
            .iter()
            .zip(row.cells)
            .map(|(c, cell)| match (c.kind, cell) {
                (_, None) => None,
                (ColumnKind::Masked, Some(v)) if tokens::whole(&v).is_some() => None,
                (ColumnKind::Masked, Some(v)) if subject.matches(masker, c.kind, &v) => None,
                (ColumnKind::Json, Some(v)) => Some(null_masked_values(&v)),
                (_, v) => v,
            })
            .collect();
        done.cleared += 1;
        changes.push(Change::Update {
            key: row.key,
            cells,
        });
    }
    (changes, done)
}

pub struct Request {
    pub pairs: Vec<(String, String)>,
    pub delete_events: bool,
    pub dry_run: bool,
    pub batch_rows: usize,
}

pub async fn run(
    masker: Masker,
    store: &Store,
    operator: &str,
    request: Request,
) -> Result<(), OpsError> {
    let key_ids = configured_key_ids(&masker).join(",");
    let fields = request
        .pairs
        .iter()
        .map(|(f, _)| field_label(&masker, f))
        .collect::<Vec<_>>()
        .join(",");
    let refuse = |e: OpsError| {
        audit(
            "forget",
            operator,
            &key_ids,
            &format!("fields={fields}"),
            request.dry_run,
            false,
        );
        Err(e)
    };
    if let Some((field, _)) = request
        .pairs
        .iter()
        .find(|(f, _)| masker.policy().strategy(f) == Strategy::TruncateIp)
    {
        return refuse(OpsError::Usage(format!(
            "{}: stored as a truncated network, which other subjects share; forget cannot single one out",
            field_label(&masker, field)
        )));
    }
    let subject = match Subject::new(&masker, &request.pairs) {
        Ok(s) => Arc::new(s),
        Err(e) => return refuse(e),
    };
    let masker = Arc::new(masker);
    let mut progress = Progress::new("forget", !request.dry_run);
    let mut per_table = BTreeMap::new();
    for table in TABLES {
        let (m, s, delete_events) = (
            Arc::clone(&masker),
            Arc::clone(&subject),
            request.delete_events,
        );
        let done = sweep(
            store,
            table,
            !request.dry_run,
            request.batch_rows,
            &mut progress,
            move |table, rows| forget_rows(&m, &s, delete_events, table, rows),
        )
        .await;
        match done {
            Ok(done) => {
                per_table.insert(table.name, done);
            }
            Err(e) => return refuse(e),
        }
    }
    if !request.dry_run
        && let Err(e) = store.settle().await
    {
        return refuse(e);
    }
    let counts = per_table
        .iter()
        .map(|(t, d)| format!("{t}.deleted={} {t}.cleared={}", d.deleted, d.cleared))
        .collect::<Vec<_>>()
        .join(" ");
    audit(
        "forget",
        operator,
        &key_ids,
        &format!("fields={fields} {counts}"),
        request.dry_run,
        true,
    );
    let (deleted, cleared) = if request.dry_run {
        ("would delete", "would clear")
    } else {
        ("deleted", "cleared")
    };
    for table in TABLES {
        let d = &per_table[table.name];
        println!(
            "{:<18} {deleted} {} rows, {cleared} {} rows",
            table.name, d.deleted, d.cleared
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_json_values_become_null() {
        let text = r#"{"a":"enc:01:AA","b":[{"c":"hmac:02:BB"}],"d":"keep","e":1}"#;
        assert_eq!(
            null_masked_values(text),
            r#"{"a":null,"b":[{"c":null}],"d":"keep","e":1}"#
        );
    }
}
