//! Fresh PostgreSQL databases on the test server, one per test, so tests
//! run in parallel without seeing each other's rows.

use sqlx::{Connection, PgConnection};

/// A database made for one test on the server of an admin URL.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// The admin URL with this database's name.
    pub url: String,
}

/// Creates a uniquely named database on the server at `admin_url`.
pub async fn fresh_database(admin_url: &str) -> FreshDatabase {
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    run(admin_url, format!("CREATE DATABASE {name}")).await;
    FreshDatabase {
        url: with_database(admin_url, &name),
        admin_url: admin_url.to_owned(),
        name,
    }
}

impl FreshDatabase {
    /// Drops the database, closing its connections; a test that fails
    /// before this leaves it behind for inspection.
    pub async fn drop_database(self) {
        run(
            &self.admin_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// Runs one admin statement on its own connection.
async fn run(admin_url: &str, sql: String) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to SLUICE_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    admin.close().await.expect("close the admin connection");
}

/// Replaces the database name in a PostgreSQL URL, keeping any query string.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}
