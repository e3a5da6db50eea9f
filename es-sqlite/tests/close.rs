//! A clean close leaves a complete `.db` file: when the last handle of a
//! store (and the last stream read from it) is dropped, queued writes are
//! committed, the readers close, and the writer, as the last connection,
//! moves the write-ahead log into the database file; SQLite then removes
//! the `-wal` file. Copying the `.db` file alone is then a complete copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::event;
use es_core::blocking::block_on;
use es_core::store::next;
use es_core::{CheckpointStore, EventStore, ExpectedVersion, SnapshotStore, StreamId};
use es_sqlite::SqliteStore;

fn log_exists(db: &Path) -> bool {
    db.with_file_name("events.db-wal").exists()
}

#[test]
fn every_clean_close_leaves_no_log_and_the_db_file_alone_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let stream = StreamId::new("close-1").unwrap();
    let mut stored = 0;
    for round in 0..20 {
        let store = SqliteStore::open(&db).unwrap();
        // Reads on the caller's thread and on reader threads, folds, writes
        // of every kind, and a snapshot queued without waiting.
        for n in 0..50 {
            let appended = block_on(store.append(
                &stream,
                ExpectedVersion::Exact(stored),
                vec![event(round * 100 + n)],
            ));
            stored = appended.unwrap().version;
        }
        assert_eq!(block_on(common::all_events(&store)).len() as u64, stored);
        block_on(store.save_checkpoint("p", stored)).unwrap();
        store.queue_snapshot(es_core::Snapshot {
            stream_id: stream.clone(),
            aggregate_type: "race".into(),
            version: stored,
            schema_version: 1,
            state: b"{}".to_vec(),
            taken_at: es_core::Timestamp::now(),
        });
        let clone = store.clone();
        drop(store);
        assert!(log_exists(&db), "a clone keeps the store open");
        drop(clone);
        assert!(
            !log_exists(&db),
            "round {round}: the log is gone after a clean close"
        );

        // The .db file alone: everything is in it, the queued snapshot too.
        let copy = tempfile::tempdir().unwrap();
        let copied = copy.path().join("events.db");
        std::fs::copy(&db, &copied).unwrap();
        let store = SqliteStore::open(&copied).unwrap();
        assert_eq!(block_on(common::all_events(&store)).len() as u64, stored);
        assert_eq!(block_on(store.load_checkpoint("p")).unwrap(), Some(stored));
        let snapshot = block_on(store.load_snapshot(&stream)).unwrap().unwrap();
        assert_eq!(snapshot.version, stored);
    }
}

#[test]
fn a_stream_keeps_its_store_open_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("close-1").unwrap();
    let events: Vec<_> = (0..2_000).map(event).collect();
    for chunk in events.chunks(500) {
        block_on(store.append(&stream, ExpectedVersion::Any, chunk.to_vec())).unwrap();
    }
    // Past the first page, a stream reads on reader threads: they stay
    // open while it does, though every handle of the store is gone.
    let mut all = store.read_all(0);
    drop(store);
    let mut n = 0;
    while let Some(e) = block_on(next(&mut all)) {
        e.unwrap();
        n += 1;
    }
    assert_eq!(n, 2_000);
    assert!(log_exists(&db));
    drop(all);
    assert!(!log_exists(&db), "the last stream closed the store");
}
