//! The audit chain (schema 5): every stored event's hash chains the one
//! before it, so a row edited, deleted, inserted or moved with raw SQL (the
//! append-only triggers dropped first, as an attacker would) is found at
//! its position by `verify_chain`; a head kept elsewhere catches a chain
//! rewritten from the changed event on.
//!
//! - RELIABILITY T8: an edited payload byte, resealed so that its row
//!   checksum holds and reads see nothing wrong, is found by the chain.
//! - The stored hashes are the format the docs give, recomputed here from
//!   the file with raw SQL and SHA-256 without the store's code.
//! - A clean store verifies through group commits, savepoint undos,
//!   conflicts, repeats, a failed commit and two writer connections on one
//!   file (as two processes); `processes.rs` checks two real processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Held, drop_append_only_triggers, enqueue, reseal};
use es_core::blocking::block_on;
use es_core::{
    Error, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, StreamWrite, Uuid,
};
use es_sqlite::{ChainError, ChainHash, ChainHead, SqliteStore, Tamper};
use fail::FailScenario;

const EVENTS: u64 = 12;

/// Failpoints are global to the process: every test holds the scenario's
/// lock, so that one test's failpoint never fails another's append.
fn serial() -> FailScenario<'static> {
    FailScenario::setup()
}

/// `EVENTS` events over three streams, one append each: position `p` holds
/// `{"n":p}`; some have metadata, position 2 a business time.
fn written(db: &Path) {
    let store = SqliteStore::open(db).unwrap();
    for p in 1..=EVENTS {
        let stream = StreamId::new(["a", "b", "c"][(p % 3) as usize]).unwrap();
        let mut event = NewEvent::new("race", "ran", 1, format!(r#"{{"n":{p}}}"#));
        if p % 4 == 0 || p == 1 {
            event = event.with_metadata(Metadata::new().actor(format!("agent-{p}")));
        }
        if p == 2 {
            event = event.with_occurred_at("2020-01-01T00:00:00Z".parse().unwrap());
        }
        let done = block_on(store.append(&stream, ExpectedVersion::Any, vec![event])).unwrap();
        assert_eq!(done.last_position, Some(p));
    }
}

/// A written store, changed by `sql` on a raw connection without the
/// append-only triggers.
fn tampered(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    drop_append_only_triggers(&conn);
    conn.execute_batch(sql).unwrap();
    (dir, db)
}

/// Where and how the chain breaks.
fn broken(db: &Path) -> (u64, Tamper) {
    let store = SqliteStore::open(db).unwrap();
    match block_on(store.verify_chain()) {
        Err(ChainError::Broken { position, tamper }) => (position, tamper),
        other => panic!("the chain should break: {other:?}"),
    }
}

fn verified(store: &SqliteStore) -> u64 {
    let report = block_on(store.verify_chain()).unwrap();
    assert_eq!(report.head, block_on(store.head()).unwrap());
    report.events
}

#[test]
fn the_stored_hashes_are_the_documented_format() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let store = SqliteStore::open(&db).unwrap();
    // Unicode, an empty payload string, a batch of several events, a new
    // stream in an atomic append of two.
    let unicode = StreamId::new("tïcket-✓").unwrap();
    block_on(store.append(
        &unicode,
        ExpectedVersion::NoStream,
        vec![
            NewEvent::new("ticket", "opened", 3, r#"{"title":"ü"}"#)
                .with_metadata(Metadata::new().reason("naïve ✓")),
            NewEvent::new("ticket", "noted", 1, r#""""#),
        ],
    ))
    .unwrap();
    block_on(store.append_to_streams(vec![
        StreamWrite::new(
            StreamId::new("d").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("lead", "made", 1, "{}")],
        ),
        StreamWrite::new(
            StreamId::new("a").unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new("race", "ran", 2, "[]")],
        ),
    ]))
    .unwrap();
    assert_eq!(verified(&store), EVENTS + 4);
    drop(store);
    assert_eq!(common::assert_chain_recomputes(&db) as u64, EVENTS + 4);
}

#[test]
fn an_empty_store_verifies_to_the_genesis_head() {
    let _serial = serial();
    let store = SqliteStore::open_temporary().unwrap();
    let report = block_on(store.verify_chain()).unwrap();
    assert_eq!((report.events, report.head), (0, ChainHead::GENESIS));
    assert_eq!(block_on(store.head()).unwrap(), ChainHead::GENESIS);
    assert_eq!(
        report.to_string(),
        format!("0 events verified, head 0:{}", "0".repeat(64))
    );
    block_on(store.verify_chain_to(ChainHead::GENESIS)).unwrap();
}

#[test]
fn t8_an_edited_payload_byte_is_found_at_its_position() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        drop_append_only_triggers(&conn);
        // `{"n":7}` becomes `{"n":9}`: one byte; the row's checksum is
        // computed again, as whoever edits it on purpose would.
        conn.execute(
            "UPDATE events SET payload = '{\"n\":9}' WHERE position = 7",
            [],
        )
        .unwrap();
        reseal(&conn, 7);
    }
    let store = SqliteStore::open(&db).unwrap();
    let all = block_on(common::all_events(&store));
    assert_eq!(
        all[6].payload().as_str(),
        r#"{"n":9}"#,
        "reads see nothing wrong"
    );
    drop(store);
    assert_eq!(broken(&db), (7, Tamper::Edited));
}

#[test]
fn edited_metadata_is_found_at_its_position() {
    let _serial = serial();
    let (_dir, db) =
        tampered("UPDATE events SET metadata = '{\"actor\":\"mallory\"}' WHERE position = 4");
    assert_eq!(broken(&db), (4, Tamper::Edited));
}

#[test]
fn metadata_removed_or_a_business_time_changed_is_found() {
    let _serial = serial();
    let (_dir, db) = tampered("UPDATE events SET metadata = NULL WHERE position = 8");
    assert_eq!(broken(&db), (8, Tamper::Edited));
    let (_dir, db) = tampered("UPDATE events SET occurred_at = occurred_at + 1 WHERE position = 2");
    assert_eq!(broken(&db), (2, Tamper::Edited));
    let (_dir, db) = tampered("UPDATE events SET recorded_at = recorded_at - 1 WHERE position = 1");
    assert_eq!(broken(&db), (1, Tamper::Edited));
}

#[test]
fn an_edited_hash_is_found_at_its_position() {
    let _serial = serial();
    let (_dir, db) = tampered("UPDATE events SET hash = randomblob(32) WHERE position = 5");
    assert_eq!(broken(&db), (5, Tamper::Edited));
}

#[test]
fn a_renamed_stream_is_found_at_its_first_event() {
    let _serial = serial();
    // Stream `c` holds positions 2, 5, 8, 11: its id is in their hashes.
    let (_dir, db) = tampered("UPDATE streams SET stream_id = 'z' WHERE stream_id = 'c'");
    assert_eq!(broken(&db), (2, Tamper::Edited));
    // An event moved into another stream.
    let (_dir, db) = tampered(
        "UPDATE events SET stream_pk = (SELECT stream_pk FROM streams WHERE stream_id = 'a'), \
         version = 99 WHERE position = 5",
    );
    assert_eq!(broken(&db), (5, Tamper::Edited));
}

#[test]
fn a_deleted_row_is_found_at_its_position() {
    let _serial = serial();
    let (_dir, db) = tampered("DELETE FROM events WHERE position = 6");
    assert_eq!(broken(&db), (6, Tamper::Missing { count: 1 }));
    let (_dir, db) = tampered("DELETE FROM events WHERE position IN (3, 4)");
    assert_eq!(broken(&db), (3, Tamper::Missing { count: 2 }));
    // The first event too.
    let (_dir, db) = tampered("DELETE FROM events WHERE position = 1");
    assert_eq!(broken(&db), (1, Tamper::Missing { count: 1 }));
}

#[test]
fn a_deleted_row_with_the_later_ones_renumbered_is_found() {
    let _serial = serial();
    let (_dir, db) = tampered(
        "DELETE FROM events WHERE position = 6; \
         UPDATE events SET position = -position WHERE position > 6; \
         UPDATE events SET position = -position - 1 WHERE position < 0;",
    );
    assert_eq!(broken(&db), (6, Tamper::Missing { count: 1 }));
}

/// Moves the events at `from` and after one position up, and puts a new
/// event at `from` in a new stream, with `hash`.
fn insert_at(from: i64, hash: &str) -> String {
    format!(
        "UPDATE events SET position = -position WHERE position >= {from}; \
         UPDATE events SET position = 1 - position WHERE position < 0; \
         INSERT INTO streams (stream_id, aggregate_type) VALUES ('forged', 'race'); \
         INSERT INTO events (position, stream_pk, version, event_id, recorded_at, occurred_at, name, \
                             schema_version, payload, metadata, checksum, hash) \
         SELECT {from}, (SELECT stream_pk FROM streams WHERE stream_id = 'forged'), 1, \
                x'0123456789abcdef0123456789abcdef', recorded_at, NULL, name, schema_version, \
                '{{\"n\":99}}', NULL, 0, {hash} FROM events WHERE position = {from} - 1;"
    )
}

#[test]
fn an_inserted_row_is_found_at_its_position() {
    let _serial = serial();
    // With the hash of the event before it, copied.
    let (_dir, db) = tampered(&insert_at(5, "hash"));
    assert_eq!(broken(&db), (5, Tamper::Inserted));
}

#[test]
fn an_inserted_row_hashed_to_fit_is_found_at_its_position() {
    let _serial = serial();
    // Whoever inserts it computes its hash by the documented format, so it
    // verifies; the event after it does not, as it was written here.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    drop_append_only_triggers(&conn);
    conn.execute_batch(&insert_at(5, "zeroblob(32)")).unwrap();
    let (previous, recorded_at): (Vec<u8>, i64) = conn
        .query_row(
            "SELECT hash, recorded_at FROM events WHERE position = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let fitted = common::chain_hash(
        &previous.try_into().unwrap(),
        5,
        "forged",
        1,
        &0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128.to_be_bytes(),
        "race",
        "ran",
        1,
        recorded_at,
        None,
        None,
        r#"{"n":99}"#,
    );
    conn.execute(
        "UPDATE events SET hash = ?1 WHERE position = 5",
        [fitted.as_slice()],
    )
    .unwrap();
    drop(conn);
    assert_eq!(broken(&db), (5, Tamper::Inserted));
}

/// Swaps everything but the position (the hash too) between two rows.
fn swap(a: i64, b: i64) -> String {
    let columns = "stream_pk, version, event_id, recorded_at, occurred_at, name, schema_version, \
                   payload, metadata, checksum, hash";
    format!(
        "CREATE TEMP TABLE swapped AS SELECT position, {columns} FROM events WHERE position IN ({a}, {b}); \
         DELETE FROM events WHERE position IN ({a}, {b}); \
         INSERT INTO events (position, {columns}) \
         SELECT CASE position WHEN {a} THEN {b} ELSE {a} END, {columns} FROM temp.swapped;"
    )
}

#[test]
fn swapped_rows_are_found_as_reordered() {
    let _serial = serial();
    let (_dir, db) = tampered(&swap(3, 9));
    assert_eq!(broken(&db), (3, Tamper::Reordered { found_at: 9 }));
    let (_dir, db) = tampered(&swap(4, 5));
    assert_eq!(broken(&db), (4, Tamper::Reordered { found_at: 5 }));
    // Only the contents swapped, each row keeping its hash: two edits.
    let (_dir, db) = tampered(
        "CREATE TEMP TABLE p AS SELECT position, payload FROM events WHERE position IN (3, 9); \
         UPDATE events SET payload = (SELECT payload FROM temp.p WHERE p.position = 12 - events.position) \
         WHERE position IN (3, 9);",
    );
    assert_eq!(broken(&db), (3, Tamper::Edited));
}

#[test]
fn an_edited_last_event_is_found_but_not_told_apart() {
    let _serial = serial();
    let (_dir, db) = tampered(&format!(
        "UPDATE events SET payload = '{{}}' WHERE position = {EVENTS}"
    ));
    assert_eq!(broken(&db), (EVENTS, Tamper::Unchained));
}

#[test]
fn a_clean_store_verifies_through_batches_undos_conflicts_and_other_connections() {
    let scenario = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    // A second store on the file: another writer connection, whose commits
    // the first store's writer must see before it chains (as another
    // process's).
    let other = SqliteStore::open(&db).unwrap();
    let a = StreamId::new("a").unwrap();
    let b = StreamId::new("b").unwrap();
    let kept = Uuid::now_v7();
    block_on(store.append(
        &a,
        ExpectedVersion::NoStream,
        vec![common::event(1).with_id(kept)],
    ))
    .unwrap();
    for round in 0..20 {
        let (one, two) = if round % 2 == 0 {
            (&store, &other)
        } else {
            (&other, &store)
        };
        block_on(one.append(&a, ExpectedVersion::Any, vec![common::event(round)])).unwrap();
        block_on(two.append(
            &b,
            ExpectedVersion::Any,
            vec![common::event(round), common::event(round + 1)],
        ))
        .unwrap();
    }
    assert_eq!(verified(&store), 61);

    // One batch: appends, a request undone in its savepoint (its second
    // write repeats an id stored elsewhere), a conflict, a repeat.
    let held = Held::new(&store);
    let first = enqueue(store.append(&a, ExpectedVersion::Any, vec![common::event(2)]));
    let undone = enqueue(store.append_to_streams(vec![
        StreamWrite::new(a.clone(), ExpectedVersion::Any, vec![common::event(3)]),
        StreamWrite::new(
            b.clone(),
            ExpectedVersion::Any,
            vec![common::event(4).with_id(kept)],
        ),
    ]));
    let conflict = enqueue(store.append(&b, ExpectedVersion::NoStream, vec![common::event(5)]));
    let repeat = enqueue(store.append(
        &a,
        ExpectedVersion::NoStream,
        vec![common::event(1).with_id(kept)],
    ));
    let last = enqueue(store.append(
        &b,
        ExpectedVersion::Any,
        vec![common::event(6), common::event(7)],
    ));
    held.release().unwrap();
    block_on(first).unwrap();
    assert!(matches!(
        block_on(undone),
        Err(Error::DuplicateEvent { .. })
    ));
    assert!(matches!(block_on(conflict), Err(Error::Conflict(_))));
    assert!(block_on(repeat).unwrap().repeated);
    block_on(last).unwrap();

    // A batch whose commit fails, then the other connection appends, then
    // this one again.
    fail::cfg("es-sqlite::writer::before-commit", "1*return(no)->off").unwrap();
    assert!(block_on(store.append(&a, ExpectedVersion::Any, vec![common::event(8)])).is_err());
    block_on(other.append(&b, ExpectedVersion::Any, vec![common::event(9)])).unwrap();
    block_on(store.append(&a, ExpectedVersion::Any, vec![common::event(10)])).unwrap();
    // Many appends at once, over both connections: group commits.
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let (via, stream) = if i % 3 == 0 {
                (&other, &a)
            } else {
                (&store, &b)
            };
            via.append(stream, ExpectedVersion::Any, vec![common::event(i)])
        })
        .collect();
    for done in block_on(futures::future::join_all(appends)) {
        done.unwrap();
    }
    let last = block_on(store.last_position()).unwrap();
    // The held request and the batch's three events, two single appends,
    // the 200.
    assert_eq!(last, 61 + 4 + 2 + 200);
    assert_eq!(verified(&store), last);
    drop((store, other));
    assert_eq!(common::assert_chain_recomputes(&db) as u64, last);
    scenario.teardown();
}

#[test]
fn a_kept_head_verifies_after_more_appends_and_fails_after_an_edit_before_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let store = SqliteStore::open(&db).unwrap();
    let kept = block_on(store.head()).unwrap();
    assert_eq!(kept.position, EVENTS);
    let stream = StreamId::new("a").unwrap();
    for n in 0..5 {
        block_on(store.append(&stream, ExpectedVersion::Any, vec![common::event(n)])).unwrap();
    }
    let to = block_on(store.verify_chain_to(kept)).unwrap();
    assert_eq!((to.events, to.head), (EVENTS, kept));
    let from = block_on(store.verify_chain_from(kept)).unwrap();
    assert_eq!(from.events, 5);
    assert_eq!(from.head, block_on(store.head()).unwrap());
    // A head that was never this store's.
    let foreign = ChainHead {
        position: 3,
        hash: ChainHash([7; 32]),
    };
    assert!(matches!(
        block_on(store.verify_chain_to(foreign)),
        Err(ChainError::HeadMismatch { expected, .. }) if expected == foreign
    ));
    drop(store);

    let conn = rusqlite::Connection::open(&db).unwrap();
    drop_append_only_triggers(&conn);
    conn.execute("UPDATE events SET payload = '{}' WHERE position = 3", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    let to = block_on(store.verify_chain_to(kept));
    assert!(
        matches!(
            to,
            Err(ChainError::Broken {
                position: 3,
                tamper: Tamper::Edited
            })
        ),
        "{to:?}"
    );
    // Only the events after the head are checked from it: an edit before
    // it is for `verify_chain_to`.
    assert_eq!(block_on(store.verify_chain_from(kept)).unwrap().events, 5);
}

#[test]
fn a_rewritten_chain_verifies_alone_but_not_against_a_kept_head() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let kept = block_on(SqliteStore::open(&db).unwrap().head()).unwrap();
    // Whoever can write the file edits an event and computes every hash
    // again from it on: the chain alone cannot tell.
    let conn = rusqlite::Connection::open(&db).unwrap();
    drop_append_only_triggers(&conn);
    conn.execute("UPDATE events SET payload = '{}' WHERE position = 3", [])
        .unwrap();
    // Each recomputed hash chains from the stored one before it: store the
    // first that differs, and recompute, until none does.
    while let Some((position, _, recomputed)) = common::recompute_chain(&conn)
        .into_iter()
        .find(|(_, stored, recomputed)| stored.as_slice() != recomputed.as_slice())
    {
        conn.execute(
            "UPDATE events SET hash = ?1 WHERE position = ?2",
            rusqlite::params![recomputed.as_slice(), position],
        )
        .unwrap();
    }
    drop(conn);
    assert_eq!(common::assert_chain_recomputes(&db) as u64, EVENTS);
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(verified(&store), EVENTS);
    let to = block_on(store.verify_chain_to(kept));
    let Err(ChainError::HeadMismatch { expected, found }) = to else {
        panic!("the kept head catches the rewrite: {to:?}");
    };
    assert_eq!(expected, kept);
    assert_eq!(found, block_on(store.head()).unwrap().hash);
    assert!(matches!(
        block_on(store.verify_chain_from(kept)),
        Err(ChainError::HeadMismatch { .. })
    ));
}

#[test]
fn events_deleted_from_the_end_are_found_against_a_kept_head() {
    let _serial = serial();
    let (_dir, db) = tampered("DELETE FROM events WHERE position > 9");
    let store = SqliteStore::open(&db).unwrap();
    // Alone, a shorter chain verifies: deleting the last events leaves no
    // trace but the head.
    assert_eq!(verified(&store), 9);
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    written(&db);
    let store = SqliteStore::open(&db).unwrap();
    let kept = block_on(store.head()).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    drop_append_only_triggers(&conn);
    conn.execute("DELETE FROM events WHERE position > 9", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    assert!(matches!(
        block_on(store.verify_chain_to(kept)),
        Err(ChainError::Broken {
            position: 10,
            tamper: Tamper::Missing { count: 3 }
        })
    ));
    assert!(matches!(
        block_on(store.verify_chain_from(kept)),
        Err(ChainError::Broken {
            position: EVENTS,
            tamper: Tamper::Missing { count: 1 }
        })
    ));
}

#[test]
fn errors_name_the_position_and_what_is_wrong() {
    let _serial = serial();
    let (_dir, db) = tampered("DELETE FROM events WHERE position = 6");
    let store = SqliteStore::open(&db).unwrap();
    let error = block_on(store.verify_chain()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the audit chain breaks at position 6: an event is missing (deleted)"
    );
}
