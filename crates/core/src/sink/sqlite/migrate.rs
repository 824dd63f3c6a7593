//! The SQLite migrations and their runner.
//!
//! Migrations are the files of `migrations/sqlite/`, embedded at build time
//! and listed in [`MIGRATIONS`]; versions applied are recorded in
//! `sluice_migrations`. The whole run is one `BEGIN IMMEDIATE` transaction,
//! so two processes migrating at once serialise and the second finds nothing
//! to do. A file in the folder that the list leaves out is refused before
//! anything runs: a build that silently skipped a schema change would write
//! into the old schema and fail (or worse, not) much later.

use rusqlite::{Connection, TransactionBehavior, params};

use super::error::classify;
use crate::sink::SinkError;

/// One embedded migration file.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    /// Its name in `migrations/sqlite/`.
    pub(super) file: &'static str,
    pub(super) sql: &'static str,
}

macro_rules! migration {
    ($version:expr, $description:expr, $file:expr) => {
        Migration {
            version: $version,
            description: $description,
            file: $file,
            sql: include_str!(concat!("../../../../../migrations/sqlite/", $file)),
        }
    };
}

/// Every SQLite migration, in version order. To add one, put
/// `migrations/sqlite/000N_name.sql` next to the others and list it here.
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!(1, "init", "0001_init.sql"),
    migration!(2, "tune", "0002_tune.sql"),
    migration!(3, "idempotency", "0003_idempotency.sql"),
    migration!(4, "idempotency runs", "0004_idempotency_runs.sql"),
];

/// The `.sql` files of `migrations/sqlite/` when this was built (build.rs).
const FOLDER: &str = env!("SLUICE_SQLITE_MIGRATION_FILES");

/// Files of `folder` (comma-separated names) that `migrations` leaves out.
fn unlisted<'a>(folder: &'a str, migrations: &[Migration]) -> Vec<&'a str> {
    folder
        .split(',')
        .filter(|name| !name.is_empty())
        .filter(|name| !migrations.iter().any(|m| m.file == *name))
        .collect()
}

/// Applies [`MIGRATIONS`], refusing to when the folder held a file the list
/// leaves out.
pub(super) fn migrate_all(conn: &mut Connection) -> Result<(), SinkError> {
    migrate_listed(conn, FOLDER, MIGRATIONS)
}

/// [`migrate`] once every file of `folder` is in `migrations`.
fn migrate_listed(
    conn: &mut Connection,
    folder: &str,
    migrations: &[Migration],
) -> Result<(), SinkError> {
    refuse_unlisted(folder, migrations)?;
    migrate(conn, migrations)
}

fn refuse_unlisted(folder: &str, migrations: &[Migration]) -> Result<(), SinkError> {
    let missing = unlisted(folder, migrations);
    if missing.is_empty() {
        return Ok(());
    }
    Err(SinkError::Permanent(format!(
        "migrations/sqlite/ holds {} that this build does not list in MIGRATIONS \
         (crates/core/src/sink/sqlite/migrate.rs); refusing to migrate without it",
        missing.join(", ")
    )))
}

/// Applies the migrations not yet recorded in `sluice_migrations`, all in one
/// transaction. Versions recorded but unknown here (a newer writer migrated
/// the file) are left alone, so old and new writers can overlap in a rollout.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), SinkError> {
    let err = |e| classify("migrating", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS sluice_migrations (
             version     INTEGER PRIMARY KEY NOT NULL,
             description TEXT NOT NULL,
             applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         )",
    )
    .map_err(err)?;
    for migration in migrations {
        let applied: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sluice_migrations WHERE version = ?1)",
                [migration.version],
                |row| row.get(0),
            )
            .map_err(err)?;
        if applied {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(|e| {
            classify(
                &format!("applying SQLite migration {}", migration.version),
                e,
            )
        })?;
        tx.execute(
            "INSERT INTO sluice_migrations (version, description) VALUES (?1, ?2)",
            params![migration.version, migration.description],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_transaction_free() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        // The runner wraps all files in one transaction; a BEGIN or COMMIT in
        // a file would end it early and break the all-or-nothing run.
        for migration in MIGRATIONS {
            for line in migration.sql.lines() {
                let word = line.split_whitespace().next().unwrap_or_default();
                let word = word.trim_end_matches(';').to_ascii_uppercase();
                assert!(
                    !matches!(word.as_str(), "BEGIN" | "COMMIT" | "END" | "ROLLBACK"),
                    "migration {} controls its own transaction",
                    migration.version
                );
            }
        }
    }

    #[test]
    fn every_file_of_the_folder_is_listed() {
        assert!(!FOLDER.is_empty(), "build.rs found no migrations/sqlite/");
        assert_eq!(unlisted(FOLDER, MIGRATIONS), Vec::<&str>::new());
        refuse_unlisted(FOLDER, MIGRATIONS).expect("this build lists every file");
    }

    #[test]
    fn a_file_left_out_of_the_list_is_refused_before_anything_runs() {
        let folder = format!("{FOLDER},0099_forgotten.sql");
        let err = refuse_unlisted(&folder, MIGRATIONS).expect_err("unlisted file");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("0099_forgotten.sql"), "{err}");
        // The runner refuses it and leaves the file untouched.
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        let err = migrate_listed(&mut conn, &folder, MIGRATIONS).expect_err("refused");
        assert!(err.to_string().contains("0099_forgotten.sql"), "{err}");
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0);
        // With every file listed it migrates.
        migrate_listed(&mut conn, FOLDER, MIGRATIONS).unwrap();
        let applied: i64 = conn
            .query_row("SELECT count(*) FROM sluice_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(applied, MIGRATIONS.len() as i64);
    }
}
