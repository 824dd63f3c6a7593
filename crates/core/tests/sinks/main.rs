//! The sink contract: one suite run over both databases.
//!
//! Every test here is written once, as `async fn name(db: &Db)`, and
//! [`contract!`] makes it two tests, `name::sqlite` and `name::postgres`, each
//! on a fresh database (see `fixture`). Where the databases really differ —
//! exact `numeric` against SQLite's `REAL`, `timestamptz` against RFC 3339
//! text, an error's code — a test checks each its own way; what a writer
//! relies on (rows once, receipts, duplicates skipped, errors sorted into
//! transient and permanent) is asserted the same on both. Tests of one
//! database's own behaviour are in `sqlite_only` and `postgres_only`.

/// For each `name` (or `name(threads)`, on a multi-thread runtime), the
/// tests `name::sqlite` and `name::postgres` running `name(&db)`.
macro_rules! contract {
    ($($name:ident $(($threads:literal))?;)+) => {$(
        mod $name {
            contract!(@test $name, sqlite, Sqlite $(, $threads)?);
            contract!(@test $name, postgres, Postgres $(, $threads)?);
        }
    )+};
    (@test $name:ident, $test:ident, $kind:ident) => {
        #[tokio::test]
        async fn $test() {
            contract!(@body $name, $kind);
        }
    };
    (@test $name:ident, $test:ident, $kind:ident, $threads:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $test() {
            contract!(@body $name, $kind);
        }
    };
    (@body $name:ident, $kind:ident) => {
        let kind = crate::fixture::Kind::$kind;
        let Some(db) = crate::fixture::Db::fresh(kind).await else {
            return;
        };
        super::$name(&db).await;
        db.finish().await;
    };
}

mod contract;
mod fixture;
mod idempotency;
mod postgres_only;
mod rows;
mod sqlite_only;
mod tune;
