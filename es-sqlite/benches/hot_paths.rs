//! Criterion benchmarks of the hot paths: encoding and decoding events,
//! appending one event, folding a stream through the repository, and
//! verifying the audit chain.
//!
//! `cargo bench -p es-sqlite --bench hot_paths`
//!
//! Appends run with `Durability::Normal` so the figures show the store's own
//! cost rather than the disk's flush; `es-workloads` measures with flushes.

#![allow(missing_docs, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use es_core::blocking::block_on;
use es_core::prelude::*;
use es_core::{NewEvent, ReadRange};
use es_sqlite::{Durability, SqliteStore};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "message-added")]
pub struct MessageAdded {
    pub body: String,
    pub by: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-opened")]
pub struct TicketOpened {
    pub title: String,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "ticket", events(TicketOpened, MessageAdded))]
pub struct Ticket {
    messages: u64,
}

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

impl Apply<MessageAdded> for Ticket {
    fn apply(&mut self, _: &MessageAdded) {
        self.messages += 1;
    }
}

fn message(n: u64) -> TicketEvent {
    TicketEvent::from(MessageAdded {
        body: format!(
            "{n}: the printer on floor three jams on every A4 job since the update; reseating the tray did not help."
        ),
        by: "agent-42".into(),
    })
}

fn codec(c: &mut Criterion) {
    let event = message(7);
    let payload = event.encode().expect("encodes");
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| event.encode().expect("encodes")));
    group.bench_function("decode", |b| {
        b.iter(|| TicketEvent::decode("message-added", 1, payload.as_str()).expect("decodes"));
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let store = SqliteStore::options()
        .durability(Durability::Normal)
        .open_temporary()
        .expect("store");
    let stream = StreamId::new("ticket-bench").expect("id");
    let mut n = 0;
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_event", |b| {
        b.iter_batched(
            || {
                n += 1;
                vec![NewEvent::encode("ticket", &message(n), Metadata::default()).expect("encodes")]
            },
            |events| {
                block_on(store.append(&stream, ExpectedVersion::Any, events)).expect("appends")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn fold(c: &mut Criterion) {
    const EVENTS: u64 = 1_000;
    let store = SqliteStore::options()
        .durability(Durability::Normal)
        .open_temporary()
        .expect("store");
    let stream = StreamId::new("ticket-long").expect("id");
    let opened = TicketEvent::from(TicketOpened {
        title: "long".into(),
    });
    let mut events =
        vec![NewEvent::encode("ticket", &opened, Metadata::default()).expect("encodes")];
    events.extend(
        (1..EVENTS).map(|n| {
            NewEvent::encode("ticket", &message(n), Metadata::default()).expect("encodes")
        }),
    );
    block_on(store.append(&stream, ExpectedVersion::NoStream, events)).expect("appends");
    let tickets = Repository::<Ticket, _>::new(store.clone());

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("repository_load_1000", |b| {
        b.iter(|| block_on(tickets.load("long")).expect("loads"));
    });
    group.bench_function("read_stream_1000", |b| {
        b.iter(|| {
            block_on(async {
                let mut read = store.read_stream(&stream, ReadRange::all());
                let mut n = 0;
                while let Some(e) = es_core::store::next(&mut read).await {
                    e.expect("reads");
                    n += 1;
                }
                n
            })
        });
    });
    group.finish();
}

fn audit_chain(c: &mut Criterion) {
    const EVENTS: u64 = 10_000;
    let store = SqliteStore::options()
        .durability(Durability::Normal)
        .open_temporary()
        .expect("store");
    let stream = StreamId::new("ticket-audited").expect("id");
    for chunk in 0..EVENTS / 1_000 {
        let events = (0..1_000)
            .map(|n| {
                NewEvent::encode("ticket", &message(chunk * 1_000 + n), Metadata::default())
                    .expect("encodes")
            })
            .collect();
        block_on(store.append(&stream, ExpectedVersion::Exact(chunk * 1_000), events))
            .expect("appends");
    }
    let mut group = c.benchmark_group("audit_chain");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("verify_chain_10000", |b| {
        b.iter(|| block_on(store.verify_chain()).expect("verifies"));
    });
    group.finish();
}

criterion_group!(benches, codec, append, fold, audit_chain);
criterion_main!(benches);
