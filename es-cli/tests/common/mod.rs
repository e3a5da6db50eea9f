//! What the inspector's tests share: a store of the Ticket example,
//! every event of a file, and the text of an `es` run's output.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // a test fails by panicking; not every test uses all

use std::path::{Path, PathBuf};
use std::process::Output;

use es_core::blocking::{Repository, block_on};
use es_core::store::next;
use es_core::{EventStore, Metadata, RecordedEvent};
use es_sqlite::SqliteStore;
use ticket::{AgentId, Reason, Ticket};

/// A store with three tickets, one escalated and one closed (8 events).
pub(crate) fn tickets(dir: &Path) -> PathBuf {
    let path = dir.join("tickets.db");
    let store = SqliteStore::open(&path).unwrap();
    let tickets = Repository::<Ticket, _>::new(store);
    for id in ["t-1", "t-2", "t-3"] {
        tickets
            .execute(id, |t| t.open("printer", "ada@example.com"))
            .unwrap();
        tickets
            .execute(id, |t| t.add_message("it smokes", "customer"))
            .unwrap();
    }
    tickets
        .command("t-2")
        .metadata(Metadata::new().actor("agent-7").reason("waited 3 days"))
        .execute(|t| t.escalate(Reason("waited".into()), AgentId("agent-7".into())))
        .unwrap();
    tickets.execute("t-3", |t| t.close("fixed")).unwrap();
    path
}

/// Every event of the file at `path`, read through a read-only store.
pub(crate) fn all(path: &Path) -> Vec<RecordedEvent> {
    let store = SqliteStore::options().read_only().open(path).unwrap();
    let mut events = store.read_all(1);
    let mut all = Vec::new();
    while let Some(event) = block_on(next(&mut events)) {
        all.push(event.unwrap());
    }
    all
}

/// What a run printed on its standard output.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// What a run printed on its standard error.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}
