//! What the tests share: the server to test against, and a fresh store.
//!
//! The tests need a PostgreSQL server: `ES_POSTGRES_URL` names it.
//! `scripts/with-postgres` starts one of its own and sets it:
//!
//! ```text
//! scripts/with-postgres cargo test -p es-postgres
//! ```
//!
//! Each store is made in a schema of its own (`t_` and a fresh UUID), so
//! tests run in parallel on one database and never see each other's
//! events. The schemas are left behind: the server of `with-postgres` is
//! removed whole when the command ends.

#![allow(dead_code, clippy::expect_used, unreachable_pub)]

pub mod check;

use es_postgres::{PostgresOptions, PostgresStore};

/// The server's URL, or a failure that says how to get one.
pub fn url() -> String {
    std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ES_POSTGRES_URL is not set: run the tests with a server of their own, \
             `scripts/with-postgres cargo test -p es-postgres` (or `.ci/run`)"
        )
    })
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", es_core::Uuid::now_v7().simple())
}

/// Options for a store in a fresh schema, polling quickly.
pub fn options() -> PostgresOptions {
    PostgresStore::options()
        .schema(fresh_schema())
        .readers(2)
        .poll_interval(std::time::Duration::from_millis(50))
}

/// A store in a fresh schema.
pub fn store() -> PostgresStore {
    options()
        .connect(&url())
        .expect("the test server accepts a new store")
}

/// Every event of `store`'s `$all` from `from`.
pub fn read_all(store: &PostgresStore, from: u64) -> Vec<es_core::RecordedEvent> {
    use es_core::EventStore;
    es_core::blocking::block_on(async {
        let mut events = store.read_all(from);
        let mut all = Vec::new();
        while let Some(e) = es_core::store::next(&mut events).await {
            all.push(e.expect("reads"));
        }
        all
    })
}
