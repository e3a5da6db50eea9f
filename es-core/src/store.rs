//! The event store: the append-only log every other part is built on.
//!
//! [`EventStore`] is what a backend implements (the embedded SQLite store in
//! `es-sqlite`, the [`InMemoryStore`](crate::InMemoryStore) here); the
//! [`Repository`](crate::Repository) is what applications use. What only
//! store implementations need (the shared append rules, the commit
//! notifier) is in [`backend`].

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;

use futures_core::Stream;
use uuid::Uuid;

use crate::envelope::{EventRef, NewEvent, RecordedEvent};
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::version::{ExpectedVersion, ReadRange};

pub mod backend;
pub mod memory;
mod watch;

pub use watch::Watch;

/// A stream of stored events, in version order (one stream) or position order
/// (`$all`). Items are produced as they are read: folding a stream of a
/// million events holds one event (or one small batch) at a time.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent>> + Send + 'static>>;

/// Takes the next event of an [`EventStream`] without needing
/// `futures::StreamExt`.
pub async fn next(stream: &mut EventStream) -> Option<Result<RecordedEvent>> {
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
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
///   stream it names, are stored together or not at all. When writes of
///   one call are refused, the error is the first refused write's, in the
///   order given.
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
///   anywhere. Any other overlap with stored ids is [`Error::DuplicateEvent`]
///   when the expected version holds, or when the append's first id is
///   stored just after the version it pins (a retry with other events);
///   otherwise the version is reported first, as a conflict.
///   This is KurrentDB's "strong" idempotency for every expected version; see
///   [`backend::decide_append`].
/// - **Empty appends** check the expected version and write nothing.
/// - **Inputs** over [`Limits`] fail with [`Error::Limit`], names that break
///   the [name rule](crate::name) with [`Error::InvalidName`]; either writes
///   nothing.
/// - **Answers after commit**: a result, a conflict included, is given only
///   once the transaction it depends on has committed, so what it reports is
///   readable at once by any reader (the conflict's `actual` version too).
///
/// A [`ShardedStore`](crate::ShardedStore) of more than one shard keeps
/// every promise of one stream, and the others per shard: its positions
/// and its `$all` are each shard's, merged; its atomic appends are of one
/// shard; its event ids are unique per shard (see [`shard`](crate::shard)
/// and [`sharded_store_conformance_tests!`](crate::sharded_store_conformance_tests)).
pub trait EventStore: Send + Sync + 'static {
    /// Appends to several streams atomically, each with its own expected
    /// version. A stream may appear only once.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when an expected version does not hold;
    /// [`Error::DuplicateEvent`] for an event id stored elsewhere;
    /// [`Error::Limit`], [`Error::InvalidName`], [`Error::InvalidEvent`] or
    /// [`Error::AggregateMismatch`] for an append that breaks the rules;
    /// [`Error::CrossShard`] from a [`ShardedStore`](crate::ShardedStore)
    /// for an append whose streams are in more than one shard;
    /// [`Error::StorageFull`], [`Error::Busy`], [`Error::ReadOnly`],
    /// [`Error::Io`], [`Error::SyncFailed`], [`Error::WritesRefused`],
    /// [`Error::Corrupt`], [`Error::Closed`] or [`Error::Backend`] when the
    /// store cannot write. Nothing of a failed append is stored, except
    /// after [`Error::SyncFailed`], when it may be.
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send;

    /// Appends `events` to `stream` if its version is as `expected`.
    ///
    /// # Errors
    ///
    /// As [`append_to_streams`](EventStore::append_to_streams).
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
    /// # Errors
    ///
    /// What `fold` returns, or what reading fails with ([`Error::Corrupt`]
    /// for a damaged event, ...).
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
                if fold(event?.as_event_ref())?.is_break() {
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
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send;

    /// The position of the last stored event, 0 for an empty store.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send;

    /// A [`Watch`] that wakes when events are committed, by this process,
    /// after it was made.
    fn watch(&self) -> Watch;

    /// The stored event with id `event_id`, wherever it is: `None` when
    /// the store holds no such event. Event ids are unique in the store, so
    /// there is at most one.
    ///
    /// This is how a [`Repository`](crate::Repository) finds an earlier
    /// execution of a command with a command id (see
    /// [`Command::command_id`](crate::Command::command_id)). The default
    /// scans `$all` ([`read_all`](EventStore::read_all)) until it finds the
    /// event; a store should look it up by its index instead (es-sqlite and
    /// the in-memory store do).
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId, Uuid};
    ///
    /// # pollster::block_on(async {
    /// let store = InMemoryStore::new();
    /// let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
    /// let id = opened.event_id;
    /// store.append(&StreamId::new("ticket-1")?, ExpectedVersion::NoStream, vec![opened]).await?;
    ///
    /// let found = store.find_event(id).await?.expect("stored");
    /// assert_eq!((found.stream_id.as_str(), found.version, found.position), ("ticket-1", 1, 1));
    /// assert!(store.find_event(Uuid::now_v7()).await?.is_none());
    /// # Ok::<(), es_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        let mut events = self.read_all(1);
        async move {
            while let Some(event) = next(&mut events).await {
                let event = event?;
                if event.event_id == event_id {
                    return Ok(Some(event));
                }
            }
            Ok(None)
        }
    }

    /// Every event of the business transaction `correlation_id`, in
    /// position order: the events whose
    /// [`Metadata::correlation_id`](crate::Metadata::correlation_id) is
    /// `correlation_id`, and the event whose own id it is (the root of a
    /// transaction records no correlation id: see
    /// [`Envelope::correlation`](crate::Envelope::correlation)). What
    /// [`audit::trail_of`](crate::audit::trail_of) reads.
    ///
    /// The default filters [`read_all`](EventStore::read_all): a scan of
    /// the whole log, one event at a time. es-sqlite filters in its query
    /// instead, so the events of other transactions are never decoded.
    fn read_correlated(&self, correlation_id: Uuid) -> EventStream {
        Box::pin(Correlated {
            events: self.read_all(1),
            correlation_id,
        })
    }

    /// Every (aggregate type, name, schema version) stored, with how many
    /// events have it, sorted: what a deploy check
    /// ([`registry::check_store`](crate::registry::check_store)) compares
    /// with what a program decodes.
    ///
    /// The default reads every event through [`read_all`](EventStore::read_all);
    /// a store should keep a summary instead (es-sqlite and the in-memory
    /// store do), so the check reads no payload.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn event_types(&self) -> impl Future<Output = Result<Vec<StoredEventType>>> + Send {
        let mut events = self.read_all(1);
        async move {
            let mut counts = std::collections::BTreeMap::<(String, String, u32), u64>::new();
            while let Some(event) = next(&mut events).await {
                let event = event?;
                *counts
                    .entry((
                        event.aggregate_type.to_string(),
                        event.name,
                        event.schema_version,
                    ))
                    .or_default() += 1;
            }
            Ok(StoredEventType::from_counts(counts))
        }
    }
}

/// The default [`EventStore::read_correlated`]: `$all`, filtered.
struct Correlated {
    events: EventStream,
    correlation_id: Uuid,
}

impl Stream for Correlated {
    type Item = Result<RecordedEvent>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            match self.events.as_mut().poll_next(cx) {
                std::task::Poll::Ready(Some(Ok(event)))
                    if event.correlation() != self.correlation_id => {}
                other => return other,
            }
        }
    }
}

/// One kind of event a store holds, and how many ([`EventStore::event_types`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredEventType {
    /// The aggregate type of the streams holding them.
    pub aggregate_type: String,
    /// Their name.
    pub name: String,
    /// Their stored schema version.
    pub schema_version: u32,
    /// How many events have this (aggregate type, name, schema version).
    pub count: u64,
}

impl StoredEventType {
    /// The list of a tally, sorted by key.
    pub fn from_counts(
        counts: impl IntoIterator<Item = ((String, String, u32), u64)>,
    ) -> Vec<StoredEventType> {
        let mut types: Vec<StoredEventType> = counts
            .into_iter()
            .map(
                |((aggregate_type, name, schema_version), count)| StoredEventType {
                    aggregate_type,
                    name,
                    schema_version,
                    count,
                },
            )
            .collect();
        types.sort();
        types
    }
}

impl std::fmt::Display for StoredEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` version {} of aggregate `{}` ({} stored)",
            self.name, self.schema_version, self.aggregate_type, self.count
        )
    }
}

/// Size limits a store enforces before writing anything (RELIABILITY S2).
///
/// Names have a fixed rule instead (see [`name`](crate::name)): they are
/// part of the stored format, not a setting.
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1 << 20,
            max_metadata_bytes: 64 << 10,
            max_events_per_append: 1_000,
            max_append_bytes: 16 << 20,
        }
    }
}
