//! `sluice-writer lookup FIELD VALUE`: how VALUE is stored for FIELD, so
//! support can find a data subject's rows with plain SQL (GDPR art. 15).
//!
//! One line per form: under the primary key first, then every old key
//! (values not yet rekeyed are still under those); a truncated network once.
//! `--count` adds the rows per table holding any of the forms.

use std::sync::Arc;

use sluice_core::masking::Masker;

use super::progress::Progress;
use super::store::{Change, Store, TABLES};
use super::subject::Subject;
use super::{OpsError, Tally, audit, configured_key_ids, field_label, stored_forms, sweep};

#[derive(Debug, Default)]
struct Rows(u64);

impl Tally for Rows {
    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }
}

pub async fn run(
    masker: Masker,
    store: Option<&Store>,
    operator: &str,
    field: &str,
    value: &str,
) -> Result<(), OpsError> {
    let key_ids = configured_key_ids(&masker).join(",");
    let forms = match stored_forms(&masker, field, value) {
        Ok(forms) => forms,
        Err(e) => {
            audit(
                "lookup",
                operator,
                &key_ids,
                &format!("field={}", field_label(&masker, field)),
                false,
                false,
            );
            return Err(e);
        }
    };
    let label = field_label(&masker, field);
    let mut counts = Vec::new();
    if let Some(store) = store {
        let subject = Arc::new(Subject::new(
            &masker,
            &[(field.to_owned(), value.to_owned())],
        )?);
        let masker = Arc::new(masker);
        let mut progress = Progress::new("lookup", false);
        for table in TABLES {
            let (m, s) = (Arc::clone(&masker), Arc::clone(&subject));
            let rows = sweep(
                store,
                table,
                false,
                10_000,
                &mut progress,
                move |table, rows| {
                    let n = rows
                        .iter()
                        .filter(|row| {
                            table.columns.iter().zip(&row.cells).any(|(c, cell)| {
                                cell.as_deref()
                                    .is_some_and(|cell| s.matches(&m, c.kind, cell))
                            })
                        })
                        .count();
                    (Vec::<Change>::new(), Rows(n as u64))
                },
            )
            .await;
            match rows {
                Ok(rows) => counts.push((table.name, rows.0)),
                Err(e) => {
                    audit(
                        "lookup",
                        operator,
                        &key_ids,
                        &format!("field={label}"),
                        false,
                        false,
                    );
                    return Err(e);
                }
            }
        }
    }
    let summary = std::iter::once(format!("field={label} forms={}", forms.len()))
        .chain(counts.iter().map(|(t, n)| format!("{t}={n}")))
        .collect::<Vec<_>>()
        .join(" ");
    audit("lookup", operator, &key_ids, &summary, false, true);
    for form in &forms {
        println!("{form}");
    }
    for (table, n) in counts {
        println!("{table}\t{n}");
    }
    Ok(())
}
