//! Every answer of the writer is given after the batch it depends on has
//! committed, and only then (DESIGN "Event store"; the foundation review's
//! first finding):
//!
//! - after a `Conflict { actual }`, a read from another connection sees the
//!   stream at `actual` or later, every time;
//! - when a batch's commit fails, every request of it gets the batch's
//!   error, the refused ones too: nobody is told of a conflict with events
//!   that were never stored;
//! - a panic inside a batch fails that batch with a typed error, and the
//!   writer goes on: the requests queued behind it are answered; should the
//!   writer stop, every later request is answered `Closed`.
//!
//! The faults come from the writer's failpoints (the `fail` crate, compiled
//! in for these tests only). `fail`'s registry is global to the process, so
//! each test holds a `FailScenario`, which runs them one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Held, enqueue};

use es_core::blocking::block_on;
use es_core::{Error, EventStore, ExpectedVersion, StreamId};
use es_sqlite::{SqliteStore, WriterPanic};
use fail::FailScenario;

use common::event;

/// The version of `stream` read by a plain SQLite connection: another
/// reader, with its own view of the file.
fn version_seen_by(conn: &rusqlite::Connection, stream: &str) -> u64 {
    conn.query_row(
        "SELECT coalesce(max(e.version), 0) FROM events e JOIN streams s USING (stream_pk) \
         WHERE s.stream_id = ?1",
        [stream],
        |r| r.get::<_, i64>(0),
    )
    .map(i64::unsigned_abs)
    .unwrap()
}

const WRITERS: u64 = 8;
const RACES: u64 = 1_000;

#[test]
fn after_a_conflict_its_actual_version_is_readable_at_once() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let store = SqliteStore::open(&db).unwrap();
    let races = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, db) = (store.clone(), db.clone());
            let (races, violations) = (races.clone(), violations.clone());
            std::thread::spawn(move || {
                let other = rusqlite::Connection::open(&db).unwrap();
                let stream = StreamId::new("race-1").unwrap();
                let mut n = 0;
                while races.load(Ordering::SeqCst) < RACES {
                    n += 1;
                    assert!(n < 100_000, "writer {w}: too few races");
                    let at = block_on(store.stream_version(&stream)).unwrap();
                    let appended = block_on(store.append(
                        &stream,
                        ExpectedVersion::Exact(at),
                        vec![event(w * 1_000_000 + n)],
                    ));
                    match appended {
                        Ok(_) => {}
                        Err(Error::Conflict(conflict)) => {
                            races.fetch_add(1, Ordering::SeqCst);
                            let seen = version_seen_by(&other, "race-1");
                            if seen < conflict.actual {
                                violations.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(other) => panic!("writer {w}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let (races, violations) = (
        races.load(Ordering::SeqCst),
        violations.load(Ordering::SeqCst),
    );
    eprintln!(
        "{races} conflicts, {violations} reported a version another reader could not see yet"
    );
    assert!(races >= RACES);
    assert_eq!(violations, 0);
    scenario.teardown();
}

#[test]
fn a_batch_whose_commit_fails_reports_no_conflict_against_its_own_events() {
    let scenario = FailScenario::setup();
    let store = SqliteStore::open_temporary().unwrap();
    let stream = StreamId::new("race-1").unwrap();
    let held = Held::new(&store);
    // Two requests for version 1 of one stream, in one batch: the second
    // conflicts with the first inside the batch, which then fails to commit.
    let racers: Vec<_> = (1..=2)
        .map(|n| enqueue(store.append(&stream, ExpectedVersion::NoStream, vec![event(n)])))
        .collect();
    // The held batch commits; the next one (the racers') fails.
    fail::cfg(
        "es-sqlite::writer::before-commit",
        "1*off->1*return(the disk caught fire)->off",
    )
    .unwrap();
    held.release().unwrap();
    for racer in racers {
        match block_on(racer) {
            Err(Error::Backend(source)) => {
                assert_eq!(source.to_string(), "the disk caught fire");
            }
            other => panic!("expected the batch's error, got {other:?}"),
        }
    }
    assert_eq!(block_on(store.stream_version(&stream)).unwrap(), 0);
    // Sent again, outside the failed batch: one wins, the other conflicts
    // with what is stored.
    let first = block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(1)]));
    let second = block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(2)]));
    assert_eq!(first.unwrap().version, 1);
    assert!(matches!(second, Err(Error::Conflict(c)) if c.actual == 1));
    scenario.teardown();
}

#[test]
fn a_panic_in_a_batch_fails_that_batch_and_the_writer_goes_on() {
    let scenario = FailScenario::setup();
    let store = SqliteStore::open_temporary().unwrap();
    let stream = StreamId::new("panic-1").unwrap();
    // The held batch panics in its request; the request queued behind it,
    // in the next batch, is answered.
    let held = Held::new(&store);
    let behind = enqueue(store.append(&stream, ExpectedVersion::NoStream, vec![event(2)]));
    fail::cfg(
        "es-sqlite::writer::request",
        "1*panic(a bug in the writer)->off",
    )
    .unwrap();
    match held.release() {
        Err(Error::Backend(source)) => {
            let panic = source
                .downcast_ref::<es_core::store::backend::SharedError>()
                .and_then(|shared| match shared.error() {
                    Error::Backend(inner) => inner.downcast_ref::<WriterPanic>(),
                    _ => None,
                });
            assert!(panic.is_some(), "{source:?}");
            assert_eq!(
                source.to_string(),
                "the store's writer failed while writing this batch, and wrote nothing of it: a bug in the writer"
            );
        }
        other => panic!("expected the writer's panic, got {other:?}"),
    }
    // Nothing of the panicked batch was written; the request behind it was.
    assert_eq!(block_on(behind).unwrap().version, 1);
    assert_eq!(
        block_on(store.stream_version(&StreamId::new("first-1").unwrap())).unwrap(),
        0
    );
    let later = block_on(store.append(&stream, ExpectedVersion::Exact(1), vec![event(3)]));
    assert_eq!(later.unwrap().version, 2);
    scenario.teardown();
}

#[test]
fn a_request_that_cannot_be_undone_fails_its_whole_batch() {
    let scenario = FailScenario::setup();
    let store = SqliteStore::open_temporary().unwrap();
    let a = StreamId::new("undo-a").unwrap();
    let b = StreamId::new("undo-b").unwrap();
    let stored = es_core::Uuid::now_v7();
    block_on(store.append(
        &b,
        ExpectedVersion::NoStream,
        vec![event(0).with_id(stored)],
    ))
    .unwrap();
    // In one batch: a good request, then one of two statements whose
    // second event's id is stored (so it is undone in its savepoint), and
    // the undo fails.
    let held = Held::new(&store);
    let good = enqueue(store.append(&a, ExpectedVersion::NoStream, vec![event(1)]));
    let undone = enqueue(store.append(
        &a,
        ExpectedVersion::Any,
        vec![event(2), event(3).with_id(stored)],
    ));
    fail::cfg("es-sqlite::append::undo", "1*return(the undo failed)->off").unwrap();
    held.release().unwrap();
    for answer in [block_on(good), block_on(undone)] {
        match answer {
            Err(Error::Backend(source)) => assert_eq!(source.to_string(), "the undo failed"),
            other => panic!("expected the batch's error, got {other:?}"),
        }
    }
    // Nothing of that batch was written: not the good request, not the
    // first event of the one that could not be undone.
    assert_eq!(block_on(store.stream_version(&a)).unwrap(), 0);
    scenario.teardown();
}

#[test]
fn a_stopped_writer_answers_every_request_closed() {
    let scenario = FailScenario::setup();
    let store = SqliteStore::open_temporary().unwrap();
    let stream = StreamId::new("stop-1").unwrap();
    block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(1)])).unwrap();
    // A panic outside any batch stops the writer's loop.
    fail::cfg("es-sqlite::writer::between-batches", "1*panic(stop)->off").unwrap();
    let stopped = block_on(store.append(&stream, ExpectedVersion::Exact(1), vec![event(2)]));
    assert!(matches!(stopped, Err(Error::Closed)), "{stopped:?}");
    // Every later request is answered, not left waiting.
    for n in 3..10 {
        let later = block_on(store.append(&stream, ExpectedVersion::Any, vec![event(n)]));
        assert!(matches!(later, Err(Error::Closed)), "{later:?}");
    }
    // Reads still work.
    assert_eq!(block_on(store.stream_version(&stream)).unwrap(), 1);
    scenario.teardown();
}
