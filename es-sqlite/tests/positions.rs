//! Positions without AUTOINCREMENT (schema 2): strictly increasing, never
//! reused, never filled in late, and gapless, because events are never
//! deleted or changed (the schema's triggers refuse it) and each position
//! is one more than the largest, inside the single write transaction.
//! Tried on everything that undoes work inside the writer: a batch whose
//! commit fails, a request undone in its savepoint, conflicts and repeats,
//! restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Held, enqueue, event};
use es_core::blocking::block_on;
use es_core::{Error, EventStore, ExpectedVersion, NewEvent, StreamId, StreamWrite, Uuid};
use es_sqlite::SqliteStore;
use fail::FailScenario;

fn positions(store: &SqliteStore) -> Vec<u64> {
    let all = block_on(common::all_events(store));
    all.iter().map(|e| e.position).collect()
}

#[test]
fn events_can_be_neither_changed_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).unwrap();
    let stream = StreamId::new("pos-1").unwrap();
    block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for sql in [
        "DELETE FROM events WHERE position = 2",
        "DELETE FROM events",
        "UPDATE events SET payload = '{}' WHERE position = 1",
        "UPDATE events SET position = 9 WHERE position = 2",
    ] {
        let refused = conn.execute(sql, []).unwrap_err();
        assert!(
            refused.to_string().contains("events are append-only"),
            "{sql}: {refused}"
        );
    }
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(positions(&store), [1, 2]);
}

#[test]
fn positions_stay_strictly_increasing_and_gapless_through_every_undo() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let a = StreamId::new("pos-a").unwrap();
    let b = StreamId::new("pos-b").unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut remember = |r: es_core::AppendResult| {
        let (first, last) = (r.first_position.unwrap(), r.last_position.unwrap());
        acked.extend(first..=last);
    };
    {
        let store = SqliteStore::open(&db).unwrap();
        let in_a = Uuid::now_v7();
        remember(
            block_on(store.append(&a, ExpectedVersion::NoStream, vec![event(1).with_id(in_a)]))
                .unwrap(),
        );

        // A batch whose commit fails: its positions were never visible.
        let held = Held::new(&store);
        let doomed = enqueue(store.append(&a, ExpectedVersion::Exact(1), vec![event(2), event(3)]));
        fail::cfg(
            "es-sqlite::writer::before-commit",
            "1*off->1*return(no)->off",
        )
        .unwrap();
        remember(held.release().unwrap());
        assert!(block_on(doomed).is_err());

        // A request undone in its savepoint (its second write's event id is
        // stored in another stream), between two that commit, in one batch.
        let stored = Uuid::now_v7();
        remember(
            block_on(store.append(
                &b,
                ExpectedVersion::NoStream,
                vec![event(4).with_id(stored)],
            ))
            .unwrap(),
        );
        let held = Held::new(&store);
        let before = enqueue(store.append(&a, ExpectedVersion::Any, vec![event(5)]));
        let undone = enqueue(store.append_to_streams(vec![
            StreamWrite::new(a.clone(), ExpectedVersion::Any, vec![event(6)]),
            StreamWrite::new(
                b.clone(),
                ExpectedVersion::Any,
                vec![event(7).with_id(in_a)],
            ),
        ]));
        let conflict = enqueue(store.append(&b, ExpectedVersion::NoStream, vec![event(8)]));
        let after = enqueue(store.append(&b, ExpectedVersion::Exact(1), vec![event(9), event(10)]));
        remember(held.release().unwrap());
        remember(block_on(before).unwrap());
        let undone = block_on(undone);
        assert!(
            matches!(undone, Err(Error::DuplicateEvent { .. })),
            "{undone:?}"
        );
        assert!(matches!(block_on(conflict), Err(Error::Conflict(_))));
        remember(block_on(after).unwrap());
        // A repeat takes no position.
        let repeat = block_on(store.append(
            &b,
            ExpectedVersion::NoStream,
            vec![event(4).with_id(stored)],
        ));
        assert!(repeat.unwrap().repeated);
    }
    // After a restart, numbering goes on from the last.
    let store = SqliteStore::open(&db).unwrap();
    remember(block_on(store.append(&a, ExpectedVersion::Any, vec![event(11)])).unwrap());
    let stored = positions(&store);
    acked.sort_unstable();
    assert_eq!(
        stored, acked,
        "exactly the acknowledged positions are stored"
    );
    let dense: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(stored, dense, "strictly increasing, never reused, no gap");
    // The audit chain went on from the last event stored after each undo.
    let report = block_on(store.verify_chain()).unwrap();
    assert_eq!(report.events, stored.len() as u64);
    scenario.teardown();
}

#[test]
fn a_position_that_is_not_the_largest_yet_is_refused() {
    // Once the largest position is 2^63 - 1, SQLite picks a random free
    // one: the writer refuses it (a new event must come after every other).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let stream = StreamId::new("pos-1").unwrap();
    {
        let store = SqliteStore::open(&db).unwrap();
        block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event(1)])).unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let copied = conn
            .execute(
                "INSERT INTO events (position, stream_pk, version, event_id, recorded_at, occurred_at, \
                 name, schema_version, payload, metadata, checksum) \
                 SELECT 9223372036854775807, stream_pk, 2, randomblob(16), recorded_at, NULL, name, \
                 schema_version, payload, metadata, checksum FROM events WHERE position = 1",
                [],
            )
            .unwrap();
        assert_eq!(copied, 1);
    }
    let store = SqliteStore::options()
        .verify(es_sqlite::Verify::Off)
        .open(&db)
        .unwrap();
    let other = StreamId::new("pos-2").unwrap();
    let appended = block_on(store.append(
        &other,
        ExpectedVersion::NoStream,
        vec![NewEvent::new("race", "ran", 1, "{}")],
    ));
    match appended {
        Err(Error::Corrupt { detail }) => {
            assert!(detail.contains("positions have run out"), "{detail}");
        }
        other => panic!("expected the position to be refused, got {other:?}"),
    }
    assert_eq!(block_on(store.stream_version(&other)).unwrap(), 0);
}
