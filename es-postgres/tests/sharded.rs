//! `ShardedStore` over PostgreSQL: the sharded conformance suite and model
//! check over two databases of one server, and over four schemas of one
//! database.

#![allow(clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use es_core::ShardedStore;
use es_postgres::PostgresStore;

/// The URLs of databases `es_shard_0` and `es_shard_1`, made once.
fn databases() -> &'static [String; 2] {
    static DATABASES: OnceLock<[String; 2]> = OnceLock::new();
    DATABASES.get_or_init(|| {
        let url = common::url();
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
        let config: postgres::Config = url.parse().expect("a URL");
        let user = config.get_user().unwrap_or("postgres").to_owned();
        let host = "127.0.0.1";
        let port = config.get_ports().first().copied().unwrap_or(5432);
        [0, 1].map(|i| {
            let name = format!("es_shard_{i}");
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .expect("reads the catalog")
                .is_some();
            if !exists {
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("creates a database");
            }
            format!("postgresql://{user}@{host}:{port}/{name}")
        })
    })
}

fn two_databases() -> ShardedStore<PostgresStore> {
    let schema = common::fresh_schema();
    let shards = databases()
        .iter()
        .map(|url| {
            PostgresStore::options()
                .schema(schema.clone())
                .readers(1)
                .connect(url)
                .expect("a shard opens")
        })
        .collect();
    ShardedStore::new(shards).expect("shards")
}

fn four_schemas() -> ShardedStore<PostgresStore> {
    let shards = (0..4)
        .map(|_| {
            common::options()
                .readers(1)
                .connect(&common::url())
                .expect("a shard opens")
        })
        .collect();
    ShardedStore::new(shards).expect("shards")
}

mod two_databases {
    es_core::sharded_store_conformance_tests!(super::two_databases());
}

mod four_schemas {
    es_core::sharded_store_conformance_tests!(super::four_schemas());
}
