//! `ShardedStore` over PostgreSQL: the sharded conformance suite and model
//! check over two databases of one server, and over four schemas of one
//! database; and a live SQLite store moved to two PostgreSQL shards.

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
    schemas(4)
}

mod two_databases {
    es_core::sharded_store_conformance_tests!(super::two_databases());
}

mod four_schemas {
    es_core::sharded_store_conformance_tests!(super::four_schemas());
}

/// A live SQLite store moves to two PostgreSQL shards by copy: `reshard`
/// runs while a writer appends to the file, then once more after it
/// stops; every stream reads the same in the new store (ids, versions,
/// names, payloads, metadata), no event twice.
#[test]
fn a_live_sqlite_store_moves_to_two_postgres_shards() {
    use es_core::blocking::block_on;
    use es_core::shard::{ShardCheckpoints, reshard};
    use es_core::store::{Limits, next};
    use es_core::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let read = |store: &dyn Fn() -> es_core::EventStream| -> Vec<RecordedEvent> {
        block_on(async {
            let mut events = store();
            let mut out = Vec::new();
            while let Some(e) = next(&mut events).await {
                out.push(e.expect("reads"));
            }
            out
        })
    };
    let file = es_sqlite::SqliteStore::open_temporary().expect("a SQLite store");
    let from = ShardedStore::new(vec![file.clone()]).expect("one shard");
    let to = schemas(2);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) || n < 200 {
                let stream = StreamId::new(format!("ticket-{}", n % 23)).expect("an id");
                let event = NewEvent::new("ticket", "noted", 1, format!(r#"{{"n":{n}}}"#));
                block_on(file.append(&stream, ExpectedVersion::Any, vec![event])).expect("appends");
                n += 1;
            }
            n
        })
    };
    let mut progress = ShardCheckpoints::new(1);
    let mut copied = 0;
    for _ in 0..5 {
        copied += block_on(reshard(&from, &to, &mut progress, &Limits::default()))
            .expect("copies")
            .copied;
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("the writer");
    copied += block_on(reshard(&from, &to, &mut progress, &Limits::default()))
        .expect("copies the rest")
        .copied;
    assert_eq!(copied, written, "each event copied once");
    for i in 0..23 {
        let stream = StreamId::new(format!("ticket-{i}")).expect("an id");
        let a = read(&|| file.read_stream(&stream, es_core::ReadRange::all()));
        let b = read(&|| to.read_stream(&stream, es_core::ReadRange::all()));
        assert_eq!(a.len(), b.len(), "{stream}");
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(
                (a.event_id, a.version, &a.name, a.payload(), &a.metadata),
                (b.event_id, b.version, &b.name, b.payload(), &b.metadata)
            );
        }
    }
}

/// A sharded store over `n` fresh schemas of the test database.
fn schemas(n: usize) -> ShardedStore<PostgresStore> {
    let shards = (0..n)
        .map(|_| {
            common::options()
                .readers(1)
                .connect(&common::url())
                .expect("a shard opens")
        })
        .collect();
    ShardedStore::new(shards).expect("shards")
}
