//! The cost of forgettable payloads: appending one event and loading a
//! 1,000-event stream, for an event without personal fields, and for one
//! whose author is a `Personal` field, without keys (stored marked) and
//! with keys (sealed and opened).
//!
//! `cargo bench -p es-sqlite --bench personal`
//!
//! Appends run with `Durability::Normal`, as in `hot_paths`, so the figures
//! show the cipher's cost rather than the disk's flush.

#![allow(missing_docs, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use es_core::NewEvent;
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::privacy::{KeyEncryptionKey, MemoryKeyStore};
use es_sqlite::{Durability, SqliteStore};
use serde::{Deserialize, Serialize};

const BODY: &str = "the printer on floor three jams on every A4 job since the update; reseating the tray did not help.";

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "message-added")]
pub struct Plain {
    pub body: String,
    pub by: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "personal-message-added")]
pub struct WithAuthor {
    pub body: String,
    pub by: Personal<String>,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "ticket", events(Plain, WithAuthor))]
pub struct Ticket {
    messages: u64,
}

impl Apply<Plain> for Ticket {
    fn apply(&mut self, _: &Plain) {
        self.messages += 1;
    }
}
impl Apply<WithAuthor> for Ticket {
    fn apply(&mut self, _: &WithAuthor) {
        self.messages += 1;
    }
}

/// The three cases: what is appended, and whether the store has keys.
const CASES: [(&str, bool, bool); 3] = [
    ("plain", false, false),
    ("personal_no_keys", true, false),
    ("personal_sealed", true, true),
];

fn store(keys: bool) -> SqliteStore {
    let options = SqliteStore::options().durability(Durability::Normal);
    let options = if keys {
        options.key_store(MemoryKeyStore::new(KeyEncryptionKey::generate()))
    } else {
        options
    };
    options.open_temporary().expect("store")
}

fn event(n: u64, personal: bool) -> NewEvent {
    let event = if personal {
        TicketEvent::from(WithAuthor {
            body: format!("{n}: {BODY}"),
            by: Personal::known("Ada Lovelace <ada@example.com>".into()),
        })
    } else {
        TicketEvent::from(Plain {
            body: format!("{n}: {BODY}"),
            by: "Ada Lovelace <ada@example.com>".into(),
        })
    };
    NewEvent::encode("ticket", &event, Metadata::default()).expect("encodes")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("personal_append");
    group.throughput(Throughput::Elements(1));
    for (name, personal, keys) in CASES {
        let store = store(keys);
        let stream = StreamId::new("ticket-bench").expect("id");
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    vec![event(n, personal)]
                },
                |events| {
                    block_on(store.append(&stream, ExpectedVersion::Any, events)).expect("appends")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    const EVENTS: u64 = 1_000;
    let mut group = c.benchmark_group("personal_load_1000");
    group.throughput(Throughput::Elements(EVENTS));
    for (name, personal, keys) in CASES {
        let store = store(keys);
        let stream = StreamId::new("ticket-long").expect("id");
        let events = (0..EVENTS).map(|n| event(n, personal)).collect();
        block_on(store.append(&stream, ExpectedVersion::NoStream, events)).expect("appends");
        let tickets = Repository::<Ticket, _>::new(store.clone());
        assert_eq!(
            block_on(tickets.load("long"))
                .expect("loads")
                .state
                .messages,
            EVENTS
        );
        group.bench_function(name, |b| {
            b.iter(|| block_on(tickets.load("long")).expect("loads"));
        });
    }
    group.finish();
}

criterion_group!(benches, append, load);
criterion_main!(benches);
