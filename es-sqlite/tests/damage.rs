//! RELIABILITY T8 and issue 11: once any read or write of a store meets
//! damage in its file (`Error::Corrupt`), the store and every clone of it
//! refuse every write with `Error::WritesRefused` (appends, snapshots,
//! checkpoints, flushes), writing nothing, until the store is opened again;
//! reads go on. The damage is real: bytes of the closed file are changed,
//! as `corruption.rs` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use common::{collect_ok, event};
use es_core::store::next;
use es_core::{
    CheckpointStore, Error, EventStore, ExpectedVersion, NewEvent, ReadRange, Snapshot,
    SnapshotStore, StreamId, Timestamp,
};
use es_sqlite::{SqliteStore, Verify};

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

/// The payload of the event at `version` of `stream`: a marker found in
/// the file's bytes.
fn marked(stream: &str, version: u64) -> NewEvent {
    NewEvent::new(
        "marked",
        "noted",
        1,
        format!(r#"{{"marker":"marker-{stream}-{version}-QWERTYUIOP"}}"#),
    )
}

/// A closed store (its log moved into the file) of `streams`, each with
/// `events` marked events, appended one stream after another.
fn store_of(dir: &Path, streams: &[&str], events: u64) -> PathBuf {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    for id in streams {
        for version in 1..=events {
            es_core::blocking::block_on(store.append(
                &stream(id),
                ExpectedVersion::Exact(version - 1),
                vec![marked(id, version)],
            ))
            .unwrap();
        }
    }
    drop(store);
    assert!(
        !dir.join("events.db-wal").exists(),
        "a clean close leaves the log in the file"
    );
    db
}

/// Changes one letter of the payload of `stream`'s event at `version`,
/// in the file: its JSON stays valid, its checksum no longer holds.
fn damage_payload(db: &Path, stream: &str, version: u64) {
    let marker = format!("marker-{stream}-{version}-QWERTYUIOP");
    let mut bytes = std::fs::read(db).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the payload is in the file");
    bytes[at + marker.len() - 1] ^= 0x01;
    std::fs::write(db, bytes).unwrap();
}

/// Overwrites the first page of the b-tree named `name` with bytes no page
/// can start with.
fn damage_btree(db: &Path, name: &str) {
    let (page_size, root): (i64, i64) = {
        let conn = rusqlite::Connection::open(db).unwrap();
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        (page_size, root)
    };
    let mut bytes = std::fs::read(db).unwrap();
    let start = usize::try_from((root - 1) * page_size).unwrap();
    let end = start + usize::try_from(page_size).unwrap();
    bytes[start..end].fill(0xff);
    std::fs::write(db, bytes).unwrap();
}

fn snapshot(of: &str) -> Snapshot {
    Snapshot {
        stream_id: stream(of),
        aggregate_type: "marked".into(),
        version: 1,
        schema_version: 1,
        state: b"{}".to_vec(),
        taken_at: Timestamp::now(),
    }
}

/// Every kind of write of `store` is refused with the damage found, and
/// nothing of it is written.
async fn every_write_is_refused(store: &SqliteStore, found: &str) {
    let refused = |result: Result<(), Error>, what: &str| match result {
        Err(Error::WritesRefused { detail }) => assert_eq!(detail, found, "{what}"),
        other => panic!("{what}: expected the write to be refused, got {other:?}"),
    };
    let before = store.last_position().await.unwrap();
    refused(
        store
            .append(&stream("c"), ExpectedVersion::Any, vec![event(1)])
            .await
            .map(drop),
        "an append",
    );
    refused(
        store
            .append(&stream("new-1"), ExpectedVersion::NoStream, vec![event(2)])
            .await
            .map(drop),
        "an append creating a stream",
    );
    refused(store.save_snapshot(snapshot("a")).await, "a snapshot");
    refused(store.delete_snapshot(&stream("a")).await, "a deletion");
    refused(store.save_checkpoint("mailer", 3).await, "a checkpoint");
    store.queue_snapshot(snapshot("c"));
    refused(store.flush().await, "a flush");
    assert_eq!(store.last_position().await.unwrap(), before);
    assert_eq!(store.stream_version(&stream("new-1")).await.unwrap(), 0);
    assert_eq!(store.load_snapshot(&stream("c")).await.unwrap(), None);
    assert_eq!(store.load_checkpoint("mailer").await.unwrap(), None);
}

#[tokio::test]
async fn a_read_that_meets_damage_makes_every_clone_refuse_writes_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_of(dir.path(), &["a", "b", "c"], 5);
    damage_payload(&db, "b", 3);

    // The damage is in a payload: the file's structure is sound, so the
    // default check at open passes, and writes go on until a read meets it.
    let store = SqliteStore::open(&db).unwrap();
    let clone = store.clone();
    store
        .append(
            &stream("a"),
            ExpectedVersion::Exact(5),
            vec![marked("a", 6)],
        )
        .await
        .unwrap();
    assert_eq!(store.damage_found(), None);

    let mut read = store.read_stream(&stream("b"), ReadRange::all());
    let mut versions = Vec::new();
    let failure = loop {
        match next(&mut read).await {
            Some(Ok(e)) => versions.push(e.version),
            Some(Err(e)) => break e,
            None => panic!("the damaged event read back"),
        }
    };
    drop(read);
    assert_eq!(versions, [1, 2], "the events before the damage are served");
    let Error::Corrupt { detail } = failure else {
        panic!("expected Corrupt, got {failure:?}");
    };
    assert!(detail.contains("version 3 of stream `b`"), "{detail}");
    assert_eq!(clone.damage_found(), Some(detail.as_str()));

    every_write_is_refused(&clone, &detail).await;
    every_write_is_refused(&store, &detail).await;

    // Reads go on: the undamaged streams in full, the damaged one up to
    // the damage, each time.
    assert_eq!(
        collect_ok(clone.read_stream(&stream("a"), ReadRange::all()))
            .await
            .len(),
        6
    );
    assert_eq!(clone.stream_version(&stream("c")).await.unwrap(), 5);
    assert!(matches!(
        clone
            .fold_stream(&stream("b"), ReadRange::all(), |_| Ok(
                ControlFlow::Continue(())
            ))
            .await,
        Err(Error::Corrupt { .. })
    ));
    drop((store, clone));

    // Opened again, the store writes until a read meets the damage again.
    let reopened = SqliteStore::open(&db).unwrap();
    assert_eq!(reopened.damage_found(), None);
    reopened
        .append(
            &stream("c"),
            ExpectedVersion::Exact(5),
            vec![marked("c", 6)],
        )
        .await
        .unwrap();
    let read = reopened.read_all(1);
    let mut read = read;
    while let Some(Ok(_)) = next(&mut read).await {}
    drop(read);
    assert!(reopened.damage_found().is_some());
    assert!(matches!(
        reopened.save_checkpoint("mailer", 1).await,
        Err(Error::WritesRefused { .. })
    ));
}

/// A page of `$all` read on a reader thread (past the first 64 events),
/// and a fold on the caller's thread, record the damage they meet.
#[tokio::test]
async fn damage_met_on_a_reader_thread_or_in_a_fold_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_of(dir.path(), &["a", "b"], 100);
    damage_payload(&db, "b", 50); // position 150

    let store = SqliteStore::options().readers(1).open(&db).unwrap();
    let mut all = store.read_all(1);
    let mut read = 0;
    let failure = loop {
        match next(&mut all).await {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => break e,
            None => panic!("the damaged event read back"),
        }
    };
    drop(all);
    assert_eq!(read, 149);
    assert!(matches!(failure, Error::Corrupt { .. }), "{failure:?}");
    let found = store.damage_found().unwrap().to_owned();
    every_write_is_refused(&store, &found).await;
    drop(store);

    let store = SqliteStore::open(&db).unwrap();
    let folded = store
        .fold_stream(&stream("b"), ReadRange::all(), |_| {
            Ok(ControlFlow::Continue(()))
        })
        .await;
    assert!(matches!(folded, Err(Error::Corrupt { .. })), "{folded:?}");
    let found = store.damage_found().unwrap().to_owned();
    every_write_is_refused(&store, &found).await;
}

/// The writer itself meets damage: the index of event ids, which every
/// append reads and writes, is unreadable. The append fails with
/// `Corrupt`, and every later write, one that would not touch that index
/// too, is refused.
#[tokio::test]
async fn a_write_that_meets_damage_refuses_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_of(dir.path(), &["a", "b", "c"], 5);
    damage_btree(&db, "sqlite_autoindex_events_1");

    // The default check at open refuses such a file; without it, the
    // store opens and reads by position.
    assert!(matches!(
        SqliteStore::open(&db),
        Err(es_sqlite::OpenError::Corrupt { .. })
    ));
    let store = SqliteStore::options()
        .verify(Verify::Off)
        .open(&db)
        .unwrap();
    assert_eq!(store.damage_found(), None);
    let failed = store
        .append(
            &stream("a"),
            ExpectedVersion::Exact(5),
            vec![marked("a", 6)],
        )
        .await;
    let Err(Error::Corrupt { detail }) = failed else {
        panic!("expected Corrupt, got {failed:?}");
    };
    assert_eq!(store.damage_found(), Some(detail.as_str()));
    every_write_is_refused(&store, &detail).await;
    assert_eq!(collect_ok(store.read_all(1)).await.len(), 15);
}
