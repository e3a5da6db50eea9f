//! `ticket verify`, the replay check: clean on what this build wrote; on a
//! file with an event a newer build wrote, a payload that no longer
//! matches, and a snapshot that disagrees with its events, it lists each
//! with its stream and version, exits with 1, and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{NewEvent, Snapshot};
use es_sqlite::SqliteStore;

fn verify(db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticket"))
        .arg("--db")
        .arg(db)
        .arg("verify")
        .output()
        .unwrap()
}

fn digest(path: &Path) -> (u64, u32) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, crc32fast::hash(&bytes))
}

/// Two tickets as this build writes them.
fn tickets(db: &Path) -> SqliteStore {
    let store = SqliteStore::open(db).unwrap();
    let tickets = es_core::blocking::Repository::<ticket::Ticket, _>::new(store.clone());
    for id in ["1", "2"] {
        tickets
            .execute(id, |t| t.open("printer", "ada@example.com"))
            .unwrap();
        tickets
            .execute(id, |t| t.add_message("it is on fire", "customer"))
            .unwrap();
    }
    store
}

#[test]
fn a_store_this_build_wrote_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    drop(tickets(&db));
    let out = verify(&db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "2 streams, 4 events and 0 snapshots replayed: no findings\n"
    );
}

#[test]
fn each_problem_is_listed_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    {
        let store = tickets(&db);
        let one = StreamId::new("ticket-1").unwrap();
        let two = StreamId::new("ticket-2").unwrap();
        let newer = NewEvent::new("ticket", "ticket-archived", 1, r#"{"shelf":"B"}"#);
        block_on(store.append(&one, ExpectedVersion::Exact(2), vec![newer])).unwrap();
        let garbled = NewEvent::new("ticket", "message-added", 1, r#"{"body":7}"#);
        block_on(store.append(&two, ExpectedVersion::Exact(2), vec![garbled])).unwrap();
        // A snapshot of ticket 2 at version 1 that says it has 5 messages.
        let state = serde_json::json!({
            "status": "Open", "title": "printer", "escalated": false,
            "messages": 5, "customer_waiting": false,
        });
        block_on(store.save_snapshot(Snapshot {
            stream_id: two,
            aggregate_type: "ticket".into(),
            version: 1,
            schema_version: 1,
            state: serde_json::to_vec(&state).unwrap(),
            taken_at: Timestamp::now(),
        }))
        .unwrap();
    }
    let before = digest(&db);
    let out = verify(&db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The README shows this output.
    assert_eq!(
        stdout,
        "2 streams, 6 events and 1 snapshot replayed: 3 findings\n  \
         ticket-1 version 3: `ticket-archived` version 1 does not decode: \
         unknown event `ticket-archived` (schema version 1)\n  \
         ticket-2 version 1: the snapshot differs from the events: \
         `/messages`: snapshot 5, events 0\n  \
         ticket-2 version 3: `message-added` version 1 does not decode: \
         payload of event `message-added` version 1 does not match its type: \
         invalid type: integer `7`, expected a string at line 1 column 9\n"
    );
    assert!(
        stderr.contains("the replay check found 3 problems"),
        "{stderr}"
    );
    assert_eq!(digest(&db), before, "nothing was written to the file");
}
