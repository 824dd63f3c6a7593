//! PII operations on stored data: `keys`, `rekey`, `lookup`, `forget`.
//!
//! Masking makes values safe to store; these make them manageable after
//! that. Rotation is only finished once no stored value needs the old key
//! (`keys` shows where each key is used, `rekey` moves `enc:` values to the
//! primary key), and a data subject's request — what is held about them
//! (GDPR art. 15), erase it (art. 17) — needs their values in the stored form
//! (`lookup` prints it, `forget` erases the rows holding it).
//!
//! Each operation is a sweep of [`store`]'s tables in slices of one
//! transaction each. `lookup`, `rekey` and `forget` write an audit line
//! (target `sluice::audit`) as `recover` does: who, when, which key ids, how
//! many; never the value they were given, nor its stored forms.

pub mod command;
pub mod forget;
pub mod keys;
pub mod lookup;
pub mod progress;
pub mod rekey;
pub mod store;
pub mod subject;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::config::ConfigError;
use sluice_core::masking::{Masker, Strategy};
use thiserror::Error;

use crate::configuration::{Config, Tuning};
use crate::startup::{StartError, connect_sink};
use progress::Progress;
use store::{Change, Row, Store, Table};

#[derive(Debug, Error)]
pub enum OpsError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("DATABASE_URL: {0}")]
    Database(String),
    /// A bad argument; says which, never the value.
    #[error("{0}")]
    Usage(String),
    /// Connecting or migrating failed, already one line naming the setting.
    #[error("{0}")]
    Start(String),
}

impl From<StartError> for OpsError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Config(c) => OpsError::Config(c),
            other => OpsError::Start(other.to_string()),
        }
    }
}

/// Who runs an operation, for the audit line: the flag, else `$USER`.
pub fn operator(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The ids of every configured key: the primary, then the old ones.
pub fn configured_key_ids(masker: &Masker) -> Vec<String> {
    std::iter::once(masker.keyring().current())
        .chain(masker.keyring().older())
        .map(|k| k.id().to_owned())
        .collect()
}

/// The audit line of an operation.
pub fn audit(command: &str, operator: &str, key_ids: &str, counts: &str, dry_run: bool, ok: bool) {
    tracing::info!(
        target: "sluice::audit",
        operator = %operator,
        key_ids = %key_ids,
        counts = %counts,
        dry_run,
        at = %chrono::Utc::now().to_rfc3339(),
        success = ok,
        "{command}"
    );
}

/// The masker from the settings and the database, migrated (so every table
/// an operation reads exists).
pub async fn open(config: &Config) -> Result<(Masker, Store), OpsError> {
    let masker = config.pii.masker()?;
    let url = config.database_url()?;
    connect_sink(url, &Tuning::default()).await?;
    Ok((masker, Store::open(url).await?))
}

/// The stored forms of `value` for a field: under the primary key, then
/// every old key (one line each; a truncated network once, as it does not
/// depend on the key). Refuses a field the policy leaves in plaintext.
pub fn stored_forms(masker: &Masker, field: &str, value: &str) -> Result<Vec<String>, OpsError> {
    let strategy = masker.policy().strategy(field);
    let keys = std::iter::once(masker.keyring().current()).chain(masker.keyring().older());
    let mut forms = Vec::new();
    for key in keys {
        let one = Masker::new(
            sluice_core::masking::Keyring::new(key.clone(), vec![]),
            masker.policy().clone(),
        );
        match strategy {
            // Not named: a field the policy does not know may be the value
            // itself, typed in the wrong place.
            Strategy::Keep => {
                return Err(OpsError::Usage(
                    "FIELD is not one the policy masks (e.g. ip, device_id, email); values of other fields are stored as they came".to_owned(),
                ));
            }
            Strategy::Drop => {
                return Err(OpsError::Usage(format!(
                    "{field}: the policy drops this field (drop), so it is not stored"
                )));
            }
            _ => {
                if let Some(form) = one.mask_text(strategy, value)
                    && !forms.contains(&form)
                {
                    forms.push(form);
                }
            }
        }
    }
    Ok(forms)
}

/// The field's name for logs, when the policy masks it; anything else may
/// be a value typed in the wrong place.
pub fn field_label(masker: &Masker, field: &str) -> String {
    match masker.policy().strategy(field) {
        Strategy::Keep => "other".to_owned(),
        _ => field.to_ascii_lowercase(),
    }
}

/// Something an operation adds up over slices.
pub trait Tally: Default + Send + 'static {
    fn merge(&mut self, other: Self);
}

/// Runs `decide` over every slice of `table` and adds up what it returns.
///
/// With `write`, a slice's changes commit with it; once the table is done,
/// rows that appeared behind the sweep (PostgreSQL puts an updated row's new
/// version at the end; writers keep inserting) are swept too, until a pass
/// over them changes nothing. A slice that fails is retried (its transaction rolled
/// back, so nothing of it was applied).
pub async fn sweep<T, F>(
    store: &Store,
    table: &'static Table,
    write: bool,
    batch_rows: usize,
    progress: &mut Progress,
    decide: F,
) -> Result<T, OpsError>
where
    T: Tally,
    F: Fn(&Table, Vec<Row>) -> (Vec<Change>, T) + Send + Sync + 'static,
{
    let decide = Arc::new(decide);
    let rows = store.row_count(table).await?;
    let mut end = store.extent(table).await?;
    let step = store.step(rows, end, batch_rows);
    progress.start_table(table.name, end);
    let mut total = T::default();
    let mut from = 0;
    let mut tail = false;
    loop {
        let mut changed = 0;
        while from < end {
            let to = from.saturating_add(step).min(end);
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            let mut attempt = 0;
            let (tally, n) = loop {
                let decide = Arc::clone(&decide);
                match store
                    .slice(table, from, to, write, move |rows| decide(table, rows))
                    .await
                {
                    Ok(done) => break done,
                    Err(e) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(table = table.name, error = %e, "slice failed; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            total.merge(tally);
            changed += n;
            progress.advance(to - from);
            from = to;
        }
        // After the main pass the tail is always looked at (a writer still
        // on an old key may have appended); after that, only while a pass
        // still changes something (its own updates append new versions).
        if !write || (tail && changed == 0) {
            break;
        }
        tail = true;
        let now = store.extent(table).await?;
        if now <= end {
            break;
        }
        progress.extend(now - end);
        end = now;
    }
    progress.finish_table();
    Ok(total)
}
