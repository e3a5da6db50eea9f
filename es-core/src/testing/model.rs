//! The model check: a store against a trivial in-test model, over random
//! sequences of appends (fresh and repeated), reads and lookups.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::envelope::NewEvent;
use crate::error::Error;
use crate::id::StreamId;
use crate::shard::encode_position;
use crate::store::{AppendResult, EventStore, next};
use crate::testing::conformance::Layout;
use crate::version::{ExpectedVersion, ReadRange};

const STREAMS: usize = 3;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The model's current version plus this offset (-1, 0 or 1).
    Relative(i8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        events: usize,
    },
    /// Send an earlier append again, exactly as it was sent.
    Repeat {
        earlier: usize,
    },
    ReadStream {
        stream: usize,
        start: u64,
        len: Option<u64>,
    },
    ReadAll {
        from: u64,
    },
    Version {
        stream: usize,
    },
    LastPosition,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (-1i8..=1).prop_map(Expect::Relative),
    ];
    prop_oneof![
        4 => (0..STREAMS, expect, 0..4usize).prop_map(|(stream, expect, events)| Op::Append { stream, expect, events }),
        2 => (0..64usize).prop_map(|earlier| Op::Repeat { earlier }),
        2 => (0..STREAMS, 0..8u64, proptest::option::of(0..6u64)).prop_map(|(stream, start, len)| Op::ReadStream { stream, start, len }),
        1 => (0..24u64).prop_map(|from| Op::ReadAll { from }),
        1 => (0..STREAMS).prop_map(|stream| Op::Version { stream }),
        1 => Just(Op::LastPosition),
    ]
}

/// What the model says an append returns.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ok {
        version: u64,
        first: Option<u64>,
        last: Option<u64>,
        repeated: bool,
    },
    Conflict {
        actual: u64,
    },
}

impl Answer {
    fn of(result: &Result<AppendResult, Error>) -> Option<Answer> {
        match result {
            Ok(r) => Some(Answer::Ok {
                version: r.version,
                first: r.first_position,
                last: r.last_position,
                repeated: r.repeated,
            }),
            Err(Error::Conflict(c)) => Some(Answer::Conflict { actual: c.actual }),
            Err(_) => None,
        }
    }
}

struct Model {
    /// Per stream: (event id, position) by version - 1.
    streams: HashMap<usize, Vec<(uuid::Uuid, u64)>>,
    /// Every event: (stream, version, id, position), in append order.
    all: Vec<(usize, u64, uuid::Uuid, u64)>,
    /// The shard of each stream.
    shard: Vec<usize>,
    /// Events per shard.
    counts: Vec<u64>,
}

impl Model {
    fn new(layout: Layout, ids: &[StreamId]) -> Self {
        Model {
            streams: HashMap::new(),
            all: Vec::new(),
            shard: ids.iter().map(|s| layout.shard_of(s)).collect(),
            counts: vec![0; layout.shards()],
        }
    }

    /// The position of the next event of `stream`.
    fn next_position(&mut self, stream: usize) -> u64 {
        let shard = self.shard[stream];
        self.counts[shard] += 1;
        encode_position(shard, self.counts[shard], self.counts.len())
            .expect("model positions are small")
    }

    fn last_position(&self) -> u64 {
        self.all.iter().map(|e| e.3).max().unwrap_or(0)
    }

    fn version(&self, stream: usize) -> u64 {
        self.streams.get(&stream).map_or(0, |s| s.len() as u64)
    }

    fn append(&mut self, stream: usize, expected: ExpectedVersion, events: &[NewEvent]) -> Answer {
        let current = self.version(stream);
        if !expected.accepts(current) {
            return Answer::Conflict { actual: current };
        }
        if events.is_empty() {
            return Answer::Ok {
                version: current,
                first: None,
                last: None,
                repeated: false,
            };
        }
        let mut given = Vec::with_capacity(events.len());
        for e in events {
            let position = self.next_position(stream);
            let entry = self.streams.entry(stream).or_default();
            entry.push((e.event_id, position));
            let version = entry.len() as u64;
            self.all.push((stream, version, e.event_id, position));
            given.push(position);
        }
        Answer::Ok {
            version: self.version(stream),
            first: given.first().copied(),
            last: given.last().copied(),
            repeated: false,
        }
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn collect(mut events: crate::EventStream) -> Vec<(String, u64, u64, uuid::Uuid)> {
    block(async {
        let mut out = Vec::new();
        while let Some(e) = next(&mut events).await {
            let e = e.expect("reads succeed");
            out.push((e.stream_id.to_string(), e.version, e.position, e.event_id));
        }
        out
    })
}

fn run_ops<S: EventStore>(layout: Layout, store: &S, ops: &[Op]) -> Result<(), TestCaseError> {
    let ids: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new(format!("model-{i}")).expect("valid stream id"))
        .collect();
    let mut model = Model::new(layout, &ids);
    // Every append sent, with the model's answer to it.
    let mut sent: Vec<(usize, ExpectedVersion, Vec<NewEvent>, Answer)> = Vec::new();
    for op in ops {
        match op {
            Op::Append {
                stream,
                expect,
                events,
            } => {
                let current = model.version(*stream);
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::StreamExists => ExpectedVersion::StreamExists,
                    Expect::Relative(d) => {
                        ExpectedVersion::Exact(current.saturating_add_signed(i64::from(*d)))
                    }
                };
                let batch: Vec<NewEvent> = (0..*events)
                    .map(|n| super::conformance::event("m", n as u64))
                    .collect();
                let want = model.append(*stream, expected, &batch);
                let got = block(store.append(&ids[*stream], expected, batch.clone()));
                prop_assert_eq!(Answer::of(&got), Some(want.clone()), "append {:?}", op);
                sent.push((*stream, expected, batch, want));
            }
            Op::Repeat { earlier } => {
                let Some((stream, expected, batch, first)) = sent.get(*earlier).cloned() else {
                    continue;
                };
                let want = match first {
                    // A stored, non-empty append repeats with its original result.
                    Answer::Ok {
                        version,
                        first: Some(f),
                        last,
                        ..
                    } => Answer::Ok {
                        version,
                        first: Some(f),
                        last,
                        repeated: true,
                    },
                    // A refused or empty one never stored its ids: it is a fresh append.
                    _ => model.append(stream, expected, &batch),
                };
                let got = block(store.append(&ids[stream], expected, batch.clone()));
                prop_assert_eq!(
                    Answer::of(&got),
                    Some(want.clone()),
                    "repeat of append {}",
                    earlier
                );
                // When the repeat wrote the events (the first attempt had
                // not), its answer is now the one a later repeat returns.
                if let Answer::Ok {
                    first: Some(_),
                    repeated: false,
                    ..
                } = want
                {
                    sent[*earlier].3 = want;
                }
            }
            Op::ReadStream { stream, start, len } => {
                let range = ReadRange {
                    start: *start,
                    end: len.map(|l| start + l),
                };
                let want: Vec<_> = model
                    .streams
                    .get(stream)
                    .map(|events| {
                        events
                            .iter()
                            .enumerate()
                            .map(|(i, (id, pos))| {
                                (ids[*stream].to_string(), i as u64 + 1, *pos, *id)
                            })
                            .filter(|(_, v, _, _)| range.contains(*v))
                            .collect()
                    })
                    .unwrap_or_default();
                prop_assert_eq!(
                    collect(store.read_stream(&ids[*stream], range)),
                    want,
                    "read {:?}",
                    op
                );
            }
            Op::ReadAll { from } => {
                let mut want: Vec<_> = model
                    .all
                    .iter()
                    .map(|(s, v, id, p)| (ids[*s].to_string(), *v, *p, *id))
                    .filter(|(_, _, p, _)| *p >= *from)
                    .collect();
                want.sort_unstable_by_key(|e| e.2);
                prop_assert_eq!(collect(store.read_all(*from)), want, "read_all {:?}", op);
            }
            Op::Version { stream } => {
                let got = block(store.stream_version(&ids[*stream])).expect("version");
                prop_assert_eq!(got, model.version(*stream));
            }
            Op::LastPosition => {
                let got = block(store.last_position()).expect("last position");
                prop_assert_eq!(got, model.last_position());
            }
        }
    }
    Ok(())
}

/// Runs random operation sequences against a fresh store from `make` and the
/// model; panics with the smallest failing sequence found.
///
/// # Panics
///
/// When the store and the model disagree.
pub fn model_check<S: EventStore>(make: impl Fn() -> S) {
    model_check_in(Layout::single(), make);
}

/// [`model_check`] of a store of `layout` (a
/// [`ShardedStore`](crate::ShardedStore)'s: [`Layout::of`]), whose
/// positions the model numbers as the layout does.
///
/// # Panics
///
/// When the store and the model disagree.
pub fn model_check_in<S: EventStore>(layout: Layout, make: impl Fn() -> S) {
    let cases = std::env::var("ES_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        run_ops(layout, &make(), &ops)
    });
    if let Err(e) = result {
        panic!("store diverges from the model: {e}");
    }
}
