//! Inline read models: updated inside the append's transaction (read at
//! once, refused with the append, rolled back with a failed batch), created,
//! caught up and rebuilt at open.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/bank.rs"]
mod bank;

use bank::{Balances, REFUSED, balances, deposited, noted, taken, withdrawn};
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{BoxError, Error, NewEvent};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{OpenError, ReadModel, ReadModelError, SqliteStore};
use fail::FailScenario;

fn append(store: &SqliteStore, stream: &str, events: Vec<NewEvent>) -> es_core::Result<u64> {
    let stream = StreamId::new(stream).unwrap();
    block_on(store.append(&stream, ExpectedVersion::Any, events)).map(|done| done.version)
}

fn read(store: &SqliteStore) -> Vec<(String, i64, i64)> {
    store.query::<Balances, _>(balances).unwrap()
}

#[test]
fn an_append_is_read_at_once_and_a_refusal_refuses_the_append() {
    let store = SqliteStore::options()
        .inline(Balances { refuse: true })
        .open_temporary()
        .unwrap();
    append(&store, "a-1", vec![deposited(5), noted(), withdrawn(2)]).unwrap();
    assert_eq!(read(&store), [("a-1".to_string(), 3, 2)]);

    // A refused deposit refuses its whole append: the deposit before it
    // in the same append is not written either, nor taken.
    let refused = append(&store, "a-1", vec![deposited(1), deposited(REFUSED)]);
    let Err(Error::Projection(error)) = refused else {
        panic!("the append is refused: {refused:?}");
    };
    assert_eq!(
        (error.projection, error.stream.as_str(), error.version),
        ("balances", "a-1", 5)
    );
    assert_eq!(
        block_on(store.stream_version(&StreamId::new("a-1").unwrap())).unwrap(),
        3
    );
    assert_eq!(read(&store), [("a-1".to_string(), 3, 2)]);
    // The positions it took are free again: the next append takes them.
    append(&store, "a-2", vec![deposited(7)]).unwrap();
    assert_eq!(block_on(store.last_position()).unwrap(), 4);
    assert_eq!(store.query::<Balances, _>(taken).unwrap(), [1, 3, 4]);
    // And the audit chain goes on from the last event kept.
    assert_eq!(block_on(store.verify_chain()).unwrap().events, 4);
}

#[test]
fn a_refused_append_fails_alone_in_its_batch() {
    let store = SqliteStore::options()
        .inline(Balances { refuse: true })
        .open_temporary()
        .unwrap();
    // Many appends at once: the writer commits them in few batches; the
    // refused ones fail, every other one is written and taken.
    let streams: Vec<StreamId> = (0..200)
        .map(|i| StreamId::new(format!("a-{}", i % 10)).unwrap())
        .collect();
    let futures: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            let amount = if i % 7 == 0 { REFUSED } else { 1 };
            store.append(stream, ExpectedVersion::Any, vec![deposited(amount)])
        })
        .collect();
    let results = block_on(futures::future::join_all(futures));
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Projection(_))))
        .count();
    assert_eq!(refused, (0..200).filter(|i| i % 7 == 0).count());
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(Error::Projection(_))))
    );
    let total: i64 = read(&store).iter().map(|(_, balance, _)| balance).sum();
    assert_eq!(total, 200 - i64::try_from(refused).unwrap());
    assert_eq!(
        block_on(store.last_position()).unwrap(),
        200 - refused as u64
    );
    assert_eq!(
        store.query::<Balances, _>(taken).unwrap().len(),
        200 - refused
    );
    assert_eq!(
        block_on(store.verify_chain()).unwrap().events,
        200 - refused as u64
    );
}

#[test]
fn a_batch_that_fails_to_commit_leaves_the_model_as_it_was() {
    let scenario = FailScenario::setup();
    let store = SqliteStore::options()
        .inline(Balances::default())
        .open_temporary()
        .unwrap();
    append(&store, "a-1", vec![deposited(1)]).unwrap();
    fail::cfg("es-sqlite::writer::before-commit", "1*return(no)->off").unwrap();
    assert!(append(&store, "a-1", vec![deposited(10)]).is_err());
    assert_eq!(read(&store), [("a-1".to_string(), 1, 1)]);
    append(&store, "a-1", vec![deposited(100)]).unwrap();
    assert_eq!(read(&store), [("a-1".to_string(), 101, 2)]);
    scenario.teardown();
}

/// Version 2 of the balances model, inline: counts only, in other tables.
#[derive(Projection, Default)]
#[projection(name = "balances", version = 2, events(bank::Deposited), context = Connection)]
struct DepositCounts;

impl ReadModel for DepositCounts {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(
            "CREATE TABLE deposit_counts (account TEXT PRIMARY KEY, n INTEGER NOT NULL); \
             CREATE INDEX deposit_counts_n ON deposit_counts (n);",
        )
    }
}

impl Handle<bank::Deposited, Connection> for DepositCounts {
    fn handle(&mut self, db: &Connection, e: &Envelope<bank::Deposited>) -> Result<(), BoxError> {
        db.prepare_cached(
            "INSERT INTO deposit_counts VALUES (?1, 1) ON CONFLICT (account) DO UPDATE SET n = n + 1",
        )?
        .execute([e.stream_id.as_str()])?;
        Ok(())
    }
}

fn tables(path: &std::path::Path) -> Vec<String> {
    let db = Connection::open(path).unwrap();
    db.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn opening_creates_catches_up_and_rebuilds_on_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // Events appended before any inline model exists.
    {
        let store = SqliteStore::open(&path).unwrap();
        append(&store, "a-1", vec![deposited(5), withdrawn(1)]).unwrap();
        append(&store, "a-2", vec![deposited(2)]).unwrap();
    }
    // Registered: created and caught up at open.
    {
        let store = SqliteStore::options()
            .inline(Balances::default())
            .open(&path)
            .unwrap();
        assert_eq!(
            read(&store),
            [("a-1".to_string(), 4, 2), ("a-2".to_string(), 2, 1)]
        );
        append(&store, "a-2", vec![deposited(3)]).unwrap();
    }
    // Opened without it: appends go on, the model's tables stay behind.
    {
        let store = SqliteStore::open(&path).unwrap();
        append(&store, "a-1", vec![deposited(10)]).unwrap();
        assert!(matches!(
            store.query::<Balances, _>(balances),
            Err(ReadModelError::NotInline { name: "balances" })
        ));
    }
    // Registered again: caught up with what it missed, nothing twice.
    {
        let store = SqliteStore::options()
            .inline(Balances::default())
            .open(&path)
            .unwrap();
        assert_eq!(
            read(&store),
            [("a-1".to_string(), 14, 3), ("a-2".to_string(), 5, 2)]
        );
        assert_eq!(store.query::<Balances, _>(taken).unwrap(), [1, 2, 3, 4, 5]);
    }
    assert!(tables(&path).contains(&"balances".to_string()));
    // A new version: the old one's tables are dropped, the new one's built
    // from the first event.
    {
        let store = SqliteStore::options()
            .inline(DepositCounts)
            .open(&path)
            .unwrap();
        let counts: Vec<(String, i64)> = store
            .rows::<DepositCounts, _>("SELECT account, n FROM deposit_counts ORDER BY account", [])
            .unwrap();
        assert_eq!(counts, [("a-1".to_string(), 2), ("a-2".to_string(), 2)]);
        assert!(matches!(
            store.query::<Balances, _>(balances),
            Err(ReadModelError::NotInline { .. })
        ));
    }
    let left = tables(&path);
    assert!(
        !left.contains(&"balances".to_string()) && !left.contains(&"taken".to_string()),
        "{left:?}"
    );
    assert!(left.contains(&"deposit_counts_n".to_string()), "{left:?}");
}

#[test]
fn a_model_that_cannot_be_brought_up_to_date_keeps_the_store_closed() {
    #[derive(Projection, Default)]
    #[projection(name = "broken", events(bank::Deposited), context = Connection)]
    struct Broken;
    impl ReadModel for Broken {
        fn create(db: &Connection) -> rusqlite::Result<()> {
            db.execute_batch("CREATE TABLE events (x INTEGER)")
        }
    }
    impl Handle<bank::Deposited, Connection> for Broken {
        fn handle(
            &mut self,
            _: &Connection,
            _: &Envelope<bank::Deposited>,
        ) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        append(&store, "a-1", vec![deposited(REFUSED)]).unwrap();
    }
    let opened = SqliteStore::options().inline(Broken).open(&path);
    assert!(
        matches!(&opened, Err(OpenError::InlineReadModel { name: "broken", detail, .. }) if detail.contains("already exists")),
        "{opened:?}"
    );
    // A handler that refuses a stored event: the catch-up stops there.
    let opened = SqliteStore::options()
        .inline(Balances { refuse: true })
        .open(&path);
    let Err(error) = opened else {
        panic!("the store does not open")
    };
    assert!(error.to_string().contains("`balances`"), "{error}");
    assert!(error.to_string().contains("position 1"), "{error}");
    // The file opens without them, and the model, once it takes the
    // event, goes on from where it stopped.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(block_on(store.last_position()).unwrap(), 1);
    drop(store);
    let store = SqliteStore::options()
        .inline(Balances::default())
        .open(&path)
        .unwrap();
    assert_eq!(read(&store), [("a-1".to_string(), REFUSED, 1)]);
}
