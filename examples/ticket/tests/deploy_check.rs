//! The deploy check: a database written by a newer build (this test plays
//! it, with an event type the ticket program does not know) makes the
//! program refuse to start, naming the event, and leaves the file as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{Metadata, NewEvent};
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

/// What the newer build added to tickets.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-archived", version = 1)]
struct TicketArchived {
    shelf: String,
}

fn digest(path: &std::path::Path) -> (u64, u32) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, crc32fast::hash(&bytes))
}

#[test]
fn a_store_written_by_a_newer_build_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    {
        let store = SqliteStore::open(&db).unwrap();
        let tickets = es_core::blocking::Repository::<ticket::Ticket, _>::new(store.clone());
        tickets
            .execute("1", |t| t.open("printer", "ada@example.com"))
            .unwrap();
        let payload = serde_json::to_string(&TicketArchived { shelf: "B".into() }).unwrap();
        let archived = NewEvent::new(
            "ticket",
            TicketArchived::NAME,
            TicketArchived::VERSION,
            payload,
        )
        .with_metadata(Metadata::new().actor("a newer build"));
        let stream = StreamId::new("ticket-1").unwrap();
        block_on(store.append(&stream, ExpectedVersion::Exact(1), vec![archived])).unwrap();
    }
    let before = digest(&db);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticket"))
        .args(["--db"])
        .arg(&db)
        .args(["open", "2", "--title", "fax", "--email", "bob@example.com"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the program refuses to start: {stderr}"
    );
    assert!(
        stderr.contains("`ticket-archived` version 1 of aggregate `ticket` (1 stored)"),
        "{stderr}"
    );
    assert_eq!(digest(&db), before, "nothing was written to the file");
    assert!(!dir.path().join("tickets.db-wal").exists());
    let store = SqliteStore::open(&db).unwrap();
    let two = StreamId::new("ticket-2").unwrap();
    assert_eq!(block_on(store.stream_version(&two)).unwrap(), 0);
}
