//! A fresh database of either kind, and what the tests read back from it.
//!
//! A SQLite database is a file in a temporary folder; a PostgreSQL one is
//! made on the server at `SLUICE_TEST_DATABASE_URL` (an admin URL) for one
//! test, so tests run in parallel without seeing each other's rows. Without
//! the variable the PostgreSQL half of each test prints a skip line, unless
//! `SLUICE_REQUIRE_SERVICES=1` (CI), where a missing database is a failure.
//!
//! Reads go through [`Db::text_rows`], the only place that knows both
//! drivers: queries cast their columns to text (`CAST(x AS TEXT)` is the
//! same on both), and the helpers parse what they need.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::types::Value;
use sluice_core::config::DatabaseUrl;
use sluice_core::sink::{self, Sink};
use sluice_testkit::postgres::{FreshDatabase, fresh_database};
use sqlx::{Connection, PgConnection};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A `user_logins` row: user_id, device_type, masked_ip, masked_device_id,
/// locale, app_version.
pub type Login = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
);

/// A database made for one test.
pub enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(FreshDatabase),
}

impl Db {
    /// A fresh database, or `None` when PostgreSQL tests are off.
    pub async fn fresh(kind: Kind) -> Option<Self> {
        Some(match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("sluice.db");
                Db::Sqlite { _dir: dir, path }
            }
            Kind::Postgres => {
                let admin = sluice_testkit::service("SLUICE_TEST_DATABASE_URL")?;
                Db::Postgres(fresh_database(&admin).await)
            }
        })
    }

    /// Drops a PostgreSQL database once its test passed (a failing test
    /// leaves it behind for inspection).
    pub async fn finish(self) {
        if let Db::Postgres(db) = self {
            db.drop_database().await;
        }
    }

    /// `sqlite` or `postgres`, as the sinks name themselves.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The SQLite file, for the SQLite-only checks.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Db::Sqlite { path, .. } => Some(path),
            Db::Postgres(_) => None,
        }
    }

    /// A connection for the PostgreSQL-only checks.
    pub async fn pg(&self) -> Option<PgConnection> {
        match self {
            Db::Postgres(db) => Some(
                PgConnection::connect(&db.url)
                    .await
                    .expect("connect test database"),
            ),
            Db::Sqlite { .. } => None,
        }
    }

    fn url(&self) -> DatabaseUrl {
        match self {
            Db::Sqlite { path, .. } => DatabaseUrl::Sqlite(path.clone()),
            Db::Postgres(db) => DatabaseUrl::Postgres(db.url.clone().into()),
        }
    }

    /// A new sink on this database (another writer, for the concurrent
    /// tests), not migrated.
    pub async fn open_sink(&self) -> Arc<dyn Sink> {
        sink::connect(&self.url(), 4).await.expect("open sink")
    }

    /// A new sink, migrated.
    pub async fn sink(&self) -> Arc<dyn Sink> {
        let sink = self.open_sink().await;
        sink.migrate().await.expect("migrate");
        sink
    }

    /// Runs statements (DDL).
    pub async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .expect("open sqlite for checks")
                .execute_batch(sql)
                .expect("execute"),
            Db::Postgres(_) => {
                let mut conn = self.pg().await.expect("postgres");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .expect("execute");
            }
        }
    }

    /// The rows of a query whose columns are all text (or NULL).
    pub async fn text_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Sqlite { path, .. } => sqlite_values(path, sql)
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|value| match value {
                            Value::Null => None,
                            Value::Text(text) => Some(text),
                            other => panic!("cast {other:?} to text in the query"),
                        })
                        .collect()
                })
                .collect(),
            Db::Postgres(_) => {
                use sqlx::Row;
                let mut conn = self.pg().await.expect("postgres");
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut conn)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                    .collect()
            }
        }
    }

    /// The one value of a one-row, one-column query.
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let mut rows = self.text_rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}");
        rows.remove(0).remove(0)
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT CAST(count(*) AS TEXT) FROM {table}");
        int(self.scalar(&sql).await)
    }

    /// `(message_key, row_count)` of every receipt, by key.
    pub async fn receipts(&self) -> Vec<(String, i64)> {
        self.text_rows(
            "SELECT message_key, CAST(row_count AS TEXT) FROM sluice_receipts ORDER BY message_key",
        )
        .await
        .into_iter()
        .map(|mut r| (r.remove(0).expect("key"), int(r.remove(0))))
        .collect()
    }

    /// Every login with its `create_date`, by user.
    pub async fn logins(&self) -> Vec<(Login, Option<String>)> {
        self.text_rows(
            "SELECT user_id, device_type, masked_ip, masked_device_id, locale, \
             CAST(app_version AS TEXT), CAST(create_date AS TEXT) \
             FROM user_logins ORDER BY user_id",
        )
        .await
        .into_iter()
        .map(|r| {
            let app_version = r[5].as_deref().map(|v| v.parse().expect("an integer"));
            (
                (
                    r[0].clone(),
                    r[1].clone(),
                    r[2].clone(),
                    r[3].clone(),
                    r[4].clone(),
                    app_version,
                ),
                r[6].clone(),
            )
        })
        .collect()
    }

    /// The versions the migration runner recorded, in order.
    pub async fn migrations(&self) -> Vec<i64> {
        let table = match self {
            Db::Sqlite { .. } => "sluice_migrations",
            Db::Postgres(_) => "_sqlx_migrations",
        };
        let sql = format!("SELECT CAST(version AS TEXT) FROM {table} ORDER BY version");
        self.text_rows(&sql)
            .await
            .into_iter()
            .map(|mut r| int(r.remove(0)))
            .collect()
    }
}

/// Every row of a query as SQLite's own values (storage class included).
pub fn sqlite_values(path: &Path, sql: &str) -> Vec<Vec<Value>> {
    let conn = rusqlite::Connection::open(path).expect("open sqlite for checks");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let columns = stmt.column_count();
    stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn int(text: Option<String>) -> i64 {
    text.expect("a value").parse().expect("an integer")
}
