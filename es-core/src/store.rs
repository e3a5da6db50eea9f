//! The event store: the append-only log every other part is built on.
//!
//! [`EventStore`] is what a backend implements (the embedded SQLite store in
//! `es-sqlite`, the [`InMemoryStore`](crate::InMemoryStore) here); the
//! [`Repository`](crate::Repository) is what applications use.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::Poll;

use futures_core::Stream;
use uuid::Uuid;

use crate::envelope::{EventRef, NewEvent, RecordedEvent};
use crate::error::{Conflict, Error, LimitError, Result};
use crate::id::StreamId;
use crate::version::{ExpectedVersion, ReadRange};

pub mod memory;
pub mod watch;

/// A stream of stored events, in version order (one stream) or position order
/// (`$all`). Items are produced as they are read: folding a stream of a
/// million events holds one event (or one small batch) at a time.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent>> + Send + 'static>>;

/// Takes the next event of an [`EventStream`] without needing
/// `futures::StreamExt`.
pub async fn next(stream: &mut EventStream) -> Option<Result<RecordedEvent>> {
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

/// An empty [`EventStream`], or one that yields a single error.
pub fn stream_of(result: Option<Error>) -> EventStream {
    let mut item = result.map(Err);
    Box::pin(futures_stream(move || Poll::Ready(item.take())))
}

fn futures_stream<F>(f: F) -> impl Stream<Item = Result<RecordedEvent>> + Send
where
    F: FnMut() -> Poll<Option<Result<RecordedEvent>>> + Send + Unpin,
{
    struct FromFn<F>(F);
    impl<F> Stream for FromFn<F>
    where
        F: FnMut() -> Poll<Option<Result<RecordedEvent>>> + Unpin,
    {
        type Item = Result<RecordedEvent>;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Self::Item>> {
            (self.0)()
        }
    }
    FromFn(f)
}

/// Events to append to one stream, with the writer's expectation of its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWrite {
    /// The stream.
    pub stream: StreamId,
    /// The expected version.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamWrite {
    /// A write of `events` to `stream` expecting `expected`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        StreamWrite {
            stream,
            expected,
            events,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream.
    pub stream_id: StreamId,
    /// The version of the stream's last event of this append (for an empty
    /// append: the stream's current version).
    pub version: u64,
    /// Position of the first appended event; `None` for an empty append.
    pub first_position: Option<u64>,
    /// Position of the last appended event; `None` for an empty append.
    pub last_position: Option<u64>,
    /// Whether the events were already stored by an earlier identical append,
    /// and nothing new was written.
    pub repeated: bool,
}

/// An append-only event store.
///
/// # Contract
///
/// Every implementation passes `es_core::testing::conformance` (run it with
/// one line, see [`store_conformance_tests!`](crate::store_conformance_tests)).
///
/// - **Versions** are 1-based and contiguous per stream; a stream's version
///   is its number of events (0: no stream).
/// - **Positions** order every event of the store (`$all`), are strictly
///   increasing in commit order and are never filled in late: once a reader
///   has seen position `p`, no event below `p` appears later.
/// - **Appends are atomic**: all events of one
///   [`append_to_streams`](EventStore::append_to_streams) call, over every
///   stream it names, are stored together or not at all.
/// - **Optimistic concurrency**: an append whose [`ExpectedVersion`] does
///   not hold fails with [`Error::Conflict`] carrying the actual version,
///   and writes nothing. Of concurrent appends at one expected version,
///   exactly one wins.
/// - **Idempotency by event id**: event ids are unique in the whole store.
///   When every id of an append is already stored, in order, as consecutive
///   versions of the same stream, the append is a *repeat*: it succeeds with
///   the original versions and positions and `repeated: true`, writing
///   nothing. With `Exact(n)`/`NoStream` the stored run must start at
///   `n + 1` (else: a conflict when the version moved, or
///   [`Error::DuplicateEvent`]); with `Any`/`StreamExists` it may start
///   anywhere. Any other overlap with stored ids is [`Error::DuplicateEvent`].
///   This is KurrentDB's "strong" idempotency for every expected version; see
///   [`decide_append`].
/// - **Empty appends** check the expected version and write nothing.
/// - **Inputs** over [`Limits`] fail with [`Error::Limit`] and write nothing.
pub trait EventStore: Send + Sync + 'static {
    /// Appends to several streams atomically, each with its own expected
    /// version. A stream may appear only once.
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send;

    /// Appends `events` to `stream` if its version is as `expected`.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult>> + Send {
        let write = StreamWrite::new(stream.clone(), expected, events);
        let appended = self.append_to_streams(vec![write]);
        async move {
            let mut results = appended.await?;
            results.pop().ok_or_else(|| Error::Corrupt {
                detail: "store returned no result for an append".to_owned(),
            })
        }
    }

    /// Reads the events of `stream` whose versions are in `range`, in version order.
    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream;

    /// Calls `fold` with each event of `stream` whose version is in `range`,
    /// in version order, until it returns `ControlFlow::Break` or an error
    /// (which is returned).
    ///
    /// This is how the repository rebuilds state. The default reads through
    /// [`read_stream`](EventStore::read_stream); a store can serve it
    /// without allocating per event, as `es-sqlite` does by decoding straight
    /// from its row buffers.
    fn fold_stream<F>(
        &self,
        stream: &StreamId,
        range: ReadRange,
        mut fold: F,
    ) -> impl Future<Output = Result<()>> + Send
    where
        F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>> + Send,
    {
        let mut events = self.read_stream(stream, range);
        async move {
            while let Some(event) = next(&mut events).await {
                if fold(EventRef::from(&event?))?.is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    /// Reads every event of the store from global position `from` (inclusive;
    /// 0 or 1 both mean the beginning), in position order.
    fn read_all(&self, from: u64) -> EventStream;

    /// The version of `stream`: its number of events, 0 when it does not exist.
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send;

    /// The position of the last stored event, 0 for an empty store.
    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send;

    /// A [`Watch`](watch::Watch) that wakes when events are committed, by
    /// this process, after it was made.
    fn watch(&self) -> watch::Watch;
}

/// Where an event id of an append is already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAt {
    /// The stream holding it.
    pub stream: StreamId,
    /// Its version there.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}

/// What a store must do with one stream write, given what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendDecision {
    /// Store the events after version `current`.
    Write,
    /// The events are already stored: answer with the original run,
    /// versions `first_version..=last_version` at positions
    /// `first_position..=last_position`.
    Repeat {
        /// The version of the first event.
        first_version: u64,
        /// The version of the last event.
        last_version: u64,
        /// The position of the first event.
        first_position: u64,
        /// The position of the last event.
        last_position: u64,
    },
}

/// The shared append rule every store applies, so all stores agree on every
/// case of the idempotency table (see [`EventStore`]).
///
/// `current` is the stream's version; `found[i]` is where the id of event `i`
/// is already stored, if anywhere.
pub fn decide_append(
    write: &StreamWrite,
    current: u64,
    found: &[Option<StoredAt>],
) -> Result<AppendDecision> {
    let conflict = || -> Error {
        Conflict {
            stream: write.stream.clone(),
            expected: write.expected,
            actual: current,
        }
        .into()
    };
    let Some((index, first_found)) = found
        .iter()
        .enumerate()
        .find_map(|(i, f)| Some((i, f.as_ref()?)))
    else {
        // Nothing stored yet: the ordinary optimistic-concurrency check.
        return if write.expected.accepts(current) {
            Ok(AppendDecision::Write)
        } else {
            Err(conflict())
        };
    };
    let duplicate = || Error::DuplicateEvent {
        event_id: write.events.get(index).map_or(Uuid::nil(), |e| e.event_id),
        stream: first_found.stream.clone(),
        version: first_found.version,
    };
    let pinned = write.expected.pinned();
    // Every id stored as one run of this stream: a repeat, as long as a
    // pinned expected version points at the same place.
    if let Some(run) = repeated_run(&write.stream, found) {
        return match pinned {
            Some(p) if run.first_version() != p + 1 => Err(if write.expected.accepts(current) {
                duplicate()
            } else {
                conflict()
            }),
            _ => Ok(run),
        };
    }
    // A partial overlap. When it starts where a pinned version says the
    // append goes, it is a retry whose events differ from the original
    // (KurrentDB's "corrupted idempotency"); otherwise report the version
    // mismatch first, as a plain append would.
    let retry_of_other = index == 0
        && pinned
            .is_some_and(|p| first_found.stream == write.stream && first_found.version == p + 1);
    if !retry_of_other && !write.expected.accepts(current) {
        Err(conflict())
    } else {
        Err(duplicate())
    }
}

/// `Some(Repeat)` when every id is stored, in order, as consecutive versions of `stream`.
fn repeated_run(stream: &StreamId, found: &[Option<StoredAt>]) -> Option<AppendDecision> {
    let first = found.first()?.as_ref()?;
    let last = found.last()?.as_ref()?;
    let contiguous = found.iter().enumerate().all(|(i, at)| {
        at.as_ref()
            .is_some_and(|at| &at.stream == stream && at.version == first.version + i as u64)
    });
    contiguous.then_some(AppendDecision::Repeat {
        first_version: first.version,
        last_version: last.version,
        first_position: first.position,
        last_position: last.position,
    })
}

impl AppendDecision {
    /// The answer to `write` when nothing is to be written: the original
    /// result of a repeat, or the stream's version for an empty append.
    /// `None` when the events must be written after version `current`.
    pub fn settled(&self, write: &StreamWrite, current: u64) -> Option<AppendResult> {
        match *self {
            AppendDecision::Repeat {
                last_version,
                first_position,
                last_position,
                ..
            } => Some(AppendResult {
                stream_id: write.stream.clone(),
                version: last_version,
                first_position: Some(first_position),
                last_position: Some(last_position),
                repeated: true,
            }),
            AppendDecision::Write if write.events.is_empty() => Some(AppendResult {
                stream_id: write.stream.clone(),
                version: current,
                first_position: None,
                last_position: None,
                repeated: false,
            }),
            AppendDecision::Write => None,
        }
    }

    fn first_version(&self) -> u64 {
        match self {
            AppendDecision::Write => 0,
            AppendDecision::Repeat { first_version, .. } => *first_version,
        }
    }
}

/// The deepest nesting of metadata `extra` values: with the metadata object
/// and the map around them, what a JSON reader with the usual limit of 128
/// levels reads back.
pub const MAX_METADATA_DEPTH: usize = 100;

/// The nesting depth of the deepest `extra` value when it is over `limit`.
/// Walks without recursion, so a hostile value cannot exhaust the stack.
fn metadata_depth(metadata: &crate::Metadata, limit: usize) -> Option<usize> {
    let mut stack: Vec<(&serde_json::Value, usize)> =
        metadata.extra.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > limit {
            return Some(depth);
        }
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    None
}

/// Size limits a store enforces before writing anything (RELIABILITY S2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one event, in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Largest metadata of one event, serialized, in bytes (default 64 KiB).
    pub max_metadata_bytes: usize,
    /// Most events in one append, over all its streams (default 1,000).
    pub max_events_per_append: usize,
    /// Most payload and metadata bytes in one append (default 16 MiB).
    pub max_append_bytes: usize,
    /// Longest event or aggregate name, in bytes (default 128).
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1 << 20,
            max_metadata_bytes: 64 << 10,
            max_events_per_append: 1_000,
            max_append_bytes: 16 << 20,
            max_name_bytes: 128,
        }
    }
}

impl Limits {
    /// Checks an append against the limits and the shape rules every store
    /// shares: names non-empty without control characters, payloads UTF-8,
    /// one aggregate type per stream write, each stream at most once.
    pub fn check(&self, writes: &[StreamWrite]) -> Result<()> {
        let over = |what, size: usize, limit: usize| {
            if size > limit {
                Err(Error::Limit(LimitError { what, size, limit }))
            } else {
                Ok(())
            }
        };
        let events: usize = writes.iter().map(|w| w.events.len()).sum();
        over("events in one append", events, self.max_events_per_append)?;
        let mut total = 0usize;
        let mut ids = std::collections::HashSet::with_capacity(events);
        for (i, write) in writes.iter().enumerate() {
            if writes[..i].iter().any(|w| w.stream == write.stream) {
                return Err(Error::InvalidEvent {
                    name: write.stream.to_string(),
                    reason: "the same stream appears twice in one append",
                });
            }
            for event in &write.events {
                if !ids.insert(event.event_id) {
                    return Err(Error::InvalidEvent {
                        name: event.name.to_string(),
                        reason: "the same event id appears twice in one append",
                    });
                }
                self.check_name(&event.name)?;
                self.check_name(&event.aggregate_type)?;
                if event.aggregate_type != write.events[0].aggregate_type {
                    return Err(Error::InvalidEvent {
                        name: event.name.to_string(),
                        reason: "events of one stream write must share one aggregate type",
                    });
                }
                over(
                    "event payload bytes",
                    event.payload.len(),
                    self.max_payload_bytes,
                )?;
                if std::str::from_utf8(&event.payload).is_err() {
                    return Err(Error::InvalidEvent {
                        name: event.name.to_string(),
                        reason: "payload is not UTF-8 text",
                    });
                }
                if let Some(depth) = metadata_depth(&event.metadata, MAX_METADATA_DEPTH) {
                    return Err(Error::Limit(LimitError {
                        what: "levels of nesting in event metadata",
                        size: depth,
                        limit: MAX_METADATA_DEPTH,
                    }));
                }
                let meta = event.metadata.json_len();
                over("event metadata bytes", meta, self.max_metadata_bytes)?;
                total += event.payload.len() + meta;
            }
        }
        over("bytes in one append", total, self.max_append_bytes)
    }

    fn check_name(&self, name: &str) -> Result<()> {
        let reason = if name.is_empty() {
            "name is empty"
        } else if name.len() > self.max_name_bytes {
            "name is longer than the limit"
        } else if name.chars().any(char::is_control) {
            "name contains a control character"
        } else {
            return Ok(());
        };
        Err(Error::InvalidEvent {
            name: name.to_owned(),
            reason,
        })
    }
}
