//! Evolution tools: split a stream, merge streams, copy a stream through a
//! transform. Old events are never rewritten: they are copied into new
//! streams, and each old stream gets one marker at its end saying where its
//! events are now.
//!
//! One [`Migration`] does all three: it reads its source streams in the
//! order of their global positions, asks a route which new stream each
//! event goes to ([`split`](Migration::split): any of several, or none;
//! [`merge`](Migration::merge) and [`copy`](Migration::copy): the one
//! target), and a [`transform`](Migration::transform) what to write there
//! (zero or more events: renamed, reshaped, of another aggregate type), then
//! appends the copies and, last, the markers.
//!
//! ```
//! use es_core::evolution::{EventCopy, Migration};
//! use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId};
//!
//! # pollster::block_on(async {
//! let store = InMemoryStore::new();
//! let lead = StreamId::new("lead-12")?;
//! store.append(&lead, ExpectedVersion::NoStream, vec![
//!     NewEvent::new("lead", "lead-initialized", 1, r#"{"name":"Casey"}"#),
//!     NewEvent::new("lead", "order-submitted", 1, r#"{"total":30}"#),
//!     NewEvent::new("lead", "contacted", 1, "{}"),
//! ]).await?;
//!
//! // Orders go to a stream of their own, of a new aggregate type.
//! let done = Migration::split(lead.clone(), |e| {
//!     let to = if e.name.starts_with("order-") { "order-12" } else { "contact-12" };
//!     Ok(Some(StreamId::new(to)?))
//! })
//! .transform(|e| {
//!     let copy = EventCopy::of(e);
//!     Ok(vec![if e.name.starts_with("order-") { copy.with_aggregate_type("order") } else { copy }])
//! })
//! .run(&store)
//! .await?;
//!
//! assert_eq!(done.targets, [StreamId::new("contact-12")?, StreamId::new("order-12")?]);
//! assert_eq!(store.stream_version(&StreamId::new("contact-12")?).await?, 2);
//! // The old stream keeps its three events, and ends with the marker.
//! assert_eq!(store.stream_version(&lead).await?, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # What a migration writes
//!
//! - **Copies**: each keeps the source event's `occurred_at` and metadata
//!   (actor, command, reason, correlation, ...), and records where it came
//!   from in `metadata.extra["copied_from"]` ([`CopiedFrom`]). A copy of a
//!   copy records its immediate source, whose own `copied_from` goes on.
//! - **Markers**: one event named [`MOVED`] (`es.stream-moved`) at the end
//!   of each source, of the source's aggregate type, whose payload lists
//!   the new streams: `{"to":["contact-12","order-12"]}` (in the order they
//!   got their first copy), and which carries the migration's
//!   [`metadata`](Migration::metadata). The markers of a merge are appended
//!   in one atomic append: either every source is marked or none is.
//! - **Nothing else**: the old events stay as they were.
//!
//! Names starting with `$` break the [name rule](crate::name), so the
//! marker's name is `es.stream-moved`; names starting with `es.` are
//! reserved for the framework's own events.
//!
//! A [`Repository`](crate::Repository) never folds a marker: loading or
//! commanding a moved stream reports [`Error::Moved`] naming the new
//! streams, or, with [`MovedPolicy::Follow`] and a stream moved to one
//! other, loads and commands that one instead. The store itself does not
//! refuse appends after a marker: to it, the marker is an event like any
//! other.
//!
//! # Crashes and re-runs
//!
//! Run a migration again after it stopped midway (a crash, a kill, a full
//! disk), as often as needed: it writes what is missing and nothing twice,
//! and the result is what one uninterrupted run writes.
//!
//! - A copy's id is derived from the source event's id, the target stream
//!   and the copy's place among that event's copies ([`copy_id`]: a UUID
//!   v5), so a re-run makes the same events with the same ids.
//! - Copies are appended in chunks ([`chunk_size`](Migration::chunk_size)),
//!   all the targets of a chunk in one atomic append, each at the exact
//!   version the migration expects: a stream is never written past a
//!   version it did not expect.
//! - A re-run finds each target's version, checks the copies stored there
//!   against the ones it makes (same id, name, schema version and payload;
//!   otherwise [`MigrationError::TargetDiverged`]) and skips them. Should a
//!   stale run append copies that are already stored, the store answers the
//!   same ids at the same versions as a repeat (see [`EventStore`]'s
//!   idempotency), and any other overlap as [`Error::DuplicateEvent`]: never
//!   a second copy.
//! - The markers come last, at the exact versions of the sources as read.
//!   When a writer appended to a source meanwhile, the marker append is a
//!   conflict: the migration copies the new events too and marks again. A
//!   source already marked with the same new streams is left as it is.
//!
//! Copies and markers are ordinary events: read models over `$all` see
//! them too (the markers only by name, which no projection lists unless it
//! asks for [`MOVED`]).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{EventRef, NewEvent, RecordedEvent};
use crate::error::{BoxError, Error, Result, stream_list};
use crate::event::{EncodeError, EventSet};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::payload::Payload;
use crate::store::{EventStore, StreamWrite, next};
use crate::time::Timestamp;
use crate::version::{ExpectedVersion, ReadRange};

/// The name of the marker a migration appends at the end of each stream it
/// moved. Its payload lists the new streams: `{"to":["order-12"]}`.
pub const MOVED: &str = "es.stream-moved";

/// The key of [`Metadata::extra`] under which a copy records its source
/// (see [`CopiedFrom`]).
pub const COPIED_FROM: &str = "copied_from";

/// The namespace of the UUID v5 ids of copies and markers ([`copy_id`],
/// [`marker_id`]). Part of the stored format: it never changes.
pub const COPY_NAMESPACE: Uuid = Uuid::from_u128(0x0be6_9dbe_b1e0_42f6_88ca_7e0b_84de_e61a);

/// What a [`Repository`](crate::Repository) does with a stream that a
/// migration moved (one that ends with a [`MOVED`] marker); set with
/// [`Repository::with_moved`](crate::Repository::with_moved).
///
/// Either way the marker never reaches the aggregate's `Apply` code or its
/// decoding. A look back to a version or a time before the move reads the
/// old stream as it was then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MovedPolicy {
    /// Loads and commands fail with [`Error::Moved`], naming the new
    /// streams (the default): the caller decides where to go.
    #[default]
    Report,
    /// A stream moved to exactly one other is loaded and commanded there
    /// instead (and so on, when that one moved too); a stream split into
    /// several, or into none, is still [`Error::Moved`].
    Follow,
}

/// The streams a [`MOVED`] marker points to; `None` for any other event.
///
/// ```
/// # use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, ReadRange, StreamId};
/// # use es_core::evolution::{moved_to, Migration};
/// # pollster::block_on(async {
/// # let store = InMemoryStore::new();
/// # let old = StreamId::new("lead-12")?;
/// # store.append(&old, ExpectedVersion::NoStream, vec![NewEvent::new("lead", "contacted", 1, "{}")]).await?;
/// Migration::copy(old.clone(), StreamId::new("lead-LD12")?).run(&store).await?;
/// let mut events = store.read_stream(&old, ReadRange::from(2..=2));
/// let marker = es_core::store::next(&mut events).await.unwrap()?;
/// assert_eq!(moved_to(&marker.as_event_ref())?, Some(vec![StreamId::new("lead-LD12")?]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # Errors
///
/// [`Error::Corrupt`] for a marker whose payload is not a list of stream ids.
pub fn moved_to(event: &EventRef<'_>) -> Result<Option<Vec<StreamId>>> {
    if event.name != MOVED {
        return Ok(None);
    }
    match serde_json::from_str::<Marker>(event.payload) {
        Ok(marker) => Ok(Some(marker.to)),
        Err(error) => Err(Error::Corrupt {
            detail: format!(
                "the `{MOVED}` marker at version {} of stream `{}` does not list stream ids: {error}",
                event.version, event.stream_id
            ),
        }),
    }
}

/// [`Error::Moved`] when `event` is a marker: what a repository checks
/// before it decodes an event.
pub(crate) fn check_moved(event: &EventRef<'_>) -> Result<()> {
    match moved_to(event)? {
        Some(to) => Err(Error::Moved {
            stream: event.stream_id.clone(),
            to,
        }),
        None => Ok(()),
    }
}

/// The payload of a [`MOVED`] marker.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    to: Vec<StreamId>,
}

/// Where a copied event came from: recorded by a [`Migration`] in the
/// copy's `metadata.extra["copied_from"]` as
/// `{"event_id":"…","stream":"lead-12","version":3,"position":17,"recorded_at":"…"}`.
///
/// ```
/// # use es_core::{EventStore, ExpectedVersion, InMemoryStore, Metadata, NewEvent, ReadRange, StreamId};
/// # use es_core::evolution::{CopiedFrom, Migration};
/// # pollster::block_on(async {
/// # let store = InMemoryStore::new();
/// let old = StreamId::new("lead-12")?;
/// let contacted = NewEvent::new("lead", "contacted", 1, "{}")
///     .with_metadata(Metadata::new().actor("agent-7"));
/// store.append(&old, ExpectedVersion::NoStream, vec![contacted.clone()]).await?;
/// Migration::copy(old.clone(), StreamId::new("lead-LD12")?).run(&store).await?;
///
/// let mut events = store.read_stream(&StreamId::new("lead-LD12")?, ReadRange::all());
/// let copy = es_core::store::next(&mut events).await.unwrap()?;
/// let from = CopiedFrom::of(&copy.metadata).unwrap();
/// assert_eq!((from.event_id, from.stream, from.version), (contacted.event_id, old, 1));
/// assert_eq!(copy.metadata.actor.as_deref(), Some("agent-7"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedFrom {
    /// The source event's id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream: StreamId,
    /// Its version there.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// When the store recorded it (the copy is recorded when it is copied).
    pub recorded_at: Timestamp,
}

impl CopiedFrom {
    /// The provenance of `source`.
    pub fn source(source: &RecordedEvent) -> Self {
        CopiedFrom {
            event_id: source.event_id,
            stream: source.stream_id.clone(),
            version: source.version,
            position: source.position,
            recorded_at: source.recorded_at,
        }
    }

    /// The provenance recorded in `metadata`; `None` for an event that is
    /// not a copy (or whose `copied_from` holds something else).
    pub fn of(metadata: &Metadata) -> Option<Self> {
        serde_json::from_value(metadata.extra.get(COPIED_FROM)?.clone()).ok()
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event_id": self.event_id,
            "stream": self.stream.as_str(),
            "version": self.version,
            "position": self.position,
            "recorded_at": self.recorded_at.to_string(),
        })
    }
}

/// The id of copy number `index` (0 for the first) that a migration makes
/// of the event `source` in stream `target`: the UUID v5, in
/// [`COPY_NAMESPACE`], of the bytes `1`, the source id's 16 bytes, `index`
/// as 4 big-endian bytes and the target's UTF-8 text. Part of the stored
/// format: it never changes.
///
/// The same source event copied to two streams gets two ids; the same
/// migration run twice makes the same ids, which is how a re-run knows its
/// earlier copies.
pub fn copy_id(source: Uuid, target: &StreamId, index: u32) -> Uuid {
    let target = target.as_str().as_bytes();
    let mut name = Vec::with_capacity(21 + target.len());
    name.push(1);
    name.extend_from_slice(source.as_bytes());
    name.extend_from_slice(&index.to_be_bytes());
    name.extend_from_slice(target);
    Uuid::new_v5(&COPY_NAMESPACE, &name)
}

/// The id of the [`MOVED`] marker at version `version` of stream `source`:
/// the UUID v5, in [`COPY_NAMESPACE`], of the bytes `2`, `version` as 8
/// big-endian bytes and the stream's UTF-8 text.
pub fn marker_id(source: &StreamId, version: u64) -> Uuid {
    let stream = source.as_str().as_bytes();
    let mut name = Vec::with_capacity(9 + stream.len());
    name.push(2);
    name.extend_from_slice(&version.to_be_bytes());
    name.extend_from_slice(stream);
    Uuid::new_v5(&COPY_NAMESPACE, &name)
}

/// One event a [`transform`](Migration::transform) makes of a source event:
/// what the copy is (aggregate type, name, schema version, payload). Its
/// id, `occurred_at` and metadata come from the source event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCopy {
    /// The aggregate type of the target stream.
    pub aggregate_type: Cow<'static, str>,
    /// The event's name.
    pub name: Cow<'static, str>,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload.
    pub payload: Payload,
}

impl EventCopy {
    /// A copy of `source` as it is: what a migration without a transform
    /// writes.
    pub fn of(source: &RecordedEvent) -> Self {
        EventCopy {
            aggregate_type: Cow::Owned(source.aggregate_type.to_string()),
            name: Cow::Owned(source.name.clone()),
            schema_version: source.schema_version,
            payload: source.event.clone(),
        }
    }

    /// A copy made of these parts.
    pub fn new(
        aggregate_type: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: impl Into<Payload>,
    ) -> Self {
        EventCopy {
            aggregate_type: aggregate_type.into(),
            name: name.into(),
            schema_version,
            payload: payload.into(),
        }
    }

    /// A copy holding a typed event of aggregate type `aggregate_type`.
    ///
    /// # Errors
    ///
    /// When the event does not serialize.
    pub fn encode<E: EventSet>(
        aggregate_type: &'static str,
        event: &E,
    ) -> Result<Self, EncodeError> {
        Ok(EventCopy {
            aggregate_type: Cow::Borrowed(aggregate_type),
            name: Cow::Borrowed(event.name()),
            schema_version: event.version(),
            payload: event.encode()?,
        })
    }

    /// Sets the aggregate type.
    #[must_use]
    pub fn with_aggregate_type(mut self, aggregate_type: impl Into<Cow<'static, str>>) -> Self {
        self.aggregate_type = aggregate_type.into();
        self
    }

    /// Sets the name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the schema version.
    #[must_use]
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: impl Into<Payload>) -> Self {
        self.payload = payload.into();
        self
    }
}

/// Why a [`Migration`] stopped. Whatever it wrote before stays, and a
/// re-run goes on from there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The store failed, or refused an append (a [`Conflict`](crate::Conflict)
    /// on a target: another writer wrote there).
    #[error(transparent)]
    Store(#[from] Error),
    /// The plan is not one a migration can run: no source, a source named
    /// twice, an event routed to a source.
    #[error("invalid migration: {reason}{}", stream_named(.stream.as_ref()))]
    Invalid {
        /// The stream concerned, if one is.
        stream: Option<StreamId>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A source stream has no events (a stream id mistyped?).
    #[error("the source stream `{stream}` has no events")]
    EmptySource {
        /// The source.
        stream: StreamId,
    },
    /// The route or the transform failed on a source event.
    #[error("the migration's route or transform failed on version {version} of stream `{stream}`")]
    Function {
        /// The source event's stream.
        stream: StreamId,
        /// Its version.
        version: u64,
        /// What the function returned.
        #[source]
        source: BoxError,
    },
    /// A source already moved, to other streams than this migration's (or
    /// was appended to after its marker).
    #[error("stream `{stream}` has already moved, to {}", stream_list(.to))]
    AlreadyMoved {
        /// The source.
        stream: StreamId,
        /// Where its marker says it moved.
        to: Vec<StreamId>,
    },
    /// A target holds, at `version`, an event other than the copy this
    /// migration makes there: the target held events of its own before the
    /// first run, or the route or transform changed between runs.
    #[error(
        "the target stream `{stream}` holds event {event_id} at version {version}, which is not this migration's copy"
    )]
    TargetDiverged {
        /// The target.
        stream: StreamId,
        /// The version.
        version: u64,
        /// The id of the event stored there.
        event_id: Uuid,
    },
}

/// What a [`Migration::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The new streams, in the order they got their first copy: what the
    /// markers list.
    pub targets: Vec<StreamId>,
    /// Source events read (markers not counted).
    pub read: u64,
    /// Source events the route dropped.
    pub dropped: u64,
    /// Copies this run appended.
    pub written: u64,
    /// Copies an earlier run had stored, checked and skipped.
    pub found: u64,
    /// Whether this run appended the markers (`false` when an earlier run
    /// had).
    pub marked: bool,
}

type Route<'f> = Box<dyn FnMut(&RecordedEvent) -> Result<Option<StreamId>, BoxError> + Send + 'f>;
type Transform<'f> = Box<dyn FnMut(&RecordedEvent) -> Result<Vec<EventCopy>, BoxError> + Send + 'f>;

/// A copy of streams into new streams: a split, a merge or a copy, with an
/// optional transform. Build it, then [`run`](Migration::run) it on any
/// [`EventStore`]; see the [module docs](self) for what it writes.
///
/// ```
/// use es_core::evolution::Migration;
/// use es_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamId};
///
/// # pollster::block_on(async {
/// let store = InMemoryStore::new();
/// let (home, work) = (StreamId::new("cart-home")?, StreamId::new("cart-work")?);
/// store.append(&home, ExpectedVersion::NoStream, vec![NewEvent::new("cart", "item-added", 1, "{}")]).await?;
/// store.append(&work, ExpectedVersion::NoStream, vec![NewEvent::new("cart", "item-added", 1, "{}")]).await?;
/// store.append(&home, ExpectedVersion::Exact(1), vec![NewEvent::new("cart", "item-removed", 1, "{}")]).await?;
///
/// // Both carts become one, in the order the events were stored.
/// let done = Migration::merge([home, work], StreamId::new("cart-ada")?).run(&store).await?;
/// assert_eq!((done.written, done.marked), (3, true));
///
/// // Running it again finds everything done.
/// let again = Migration::merge([StreamId::new("cart-home")?, StreamId::new("cart-work")?], StreamId::new("cart-ada")?)
///     .run(&store)
///     .await?;
/// assert_eq!((again.written, again.found, again.marked), (0, 3, false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Migration<'f> {
    sources: Vec<StreamId>,
    route: Route<'f>,
    transform: Option<Transform<'f>>,
    chunk_events: usize,
    chunk_bytes: usize,
    metadata: Metadata,
}

impl fmt::Debug for Migration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("sources", &self.sources)
            .field("transform", &self.transform.is_some())
            .field("chunk_events", &self.chunk_events)
            .field("chunk_bytes", &self.chunk_bytes)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// How many source or target events a migration reads at a time.
const PAGE: u64 = 256;

impl<'f> Migration<'f> {
    /// Copies per append by default.
    pub const DEFAULT_CHUNK_EVENTS: usize = 500;
    /// Payload and metadata bytes per append by default (a chunk holds at
    /// least one event, whatever its size).
    pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

    fn with_route(sources: Vec<StreamId>, route: Route<'f>) -> Self {
        Migration {
            sources,
            route,
            transform: None,
            chunk_events: Self::DEFAULT_CHUNK_EVENTS,
            chunk_bytes: Self::DEFAULT_CHUNK_BYTES,
            metadata: Metadata::default(),
        }
    }

    /// Splits `source`: `route` names the new stream each event goes to,
    /// or `None` to leave it out of every new stream.
    pub fn split(
        source: StreamId,
        route: impl FnMut(&RecordedEvent) -> Result<Option<StreamId>, BoxError> + Send + 'f,
    ) -> Self {
        Self::with_route(vec![source], Box::new(route))
    }

    /// Merges `sources` into `target`, ordered by global position: the
    /// order in which the store recorded their events.
    pub fn merge(sources: impl IntoIterator<Item = StreamId>, target: StreamId) -> Self {
        let sources = sources.into_iter().collect();
        Self::with_route(sources, Box::new(move |_| Ok(Some(target.clone()))))
    }

    /// Copies `source` into `target`: a move, to a new stream id; with a
    /// [`transform`](Migration::transform), a copy-transform.
    pub fn copy(source: StreamId, target: StreamId) -> Self {
        Self::merge([source], target)
    }

    /// Makes the events written to a target from each routed source event:
    /// zero or more (by default the event as it is, [`EventCopy::of`]).
    /// Every copy written to one stream must be of one aggregate type.
    ///
    /// ```
    /// # use es_core::evolution::{EventCopy, Migration};
    /// # use es_core::StreamId;
    /// # let (old, new) = (StreamId::new("lead-12").unwrap(), StreamId::new("customer-12").unwrap());
    /// // lead-* streams become customer-* streams; `phone` is now `phone_number`.
    /// let migration = Migration::copy(old, new).transform(|e| {
    ///     let mut json = e.payload().to_json()?;
    ///     if let Some(phone) = json.as_object_mut().and_then(|o| o.remove("phone")) {
    ///         json["phone_number"] = phone;
    ///     }
    ///     Ok(vec![EventCopy::of(e).with_aggregate_type("customer").with_payload(json.to_string())])
    /// });
    /// ```
    #[must_use]
    pub fn transform(
        mut self,
        transform: impl FnMut(&RecordedEvent) -> Result<Vec<EventCopy>, BoxError> + Send + 'f,
    ) -> Self {
        self.transform = Some(Box::new(transform));
        self
    }

    /// Sets the most copies per append (default
    /// [`DEFAULT_CHUNK_EVENTS`](Migration::DEFAULT_CHUNK_EVENTS); at least
    /// 1). Keep it under the store's [`Limits`](crate::Limits).
    #[must_use]
    pub fn chunk_size(mut self, events: usize) -> Self {
        self.chunk_events = events.max(1);
        self
    }

    /// Sets the most payload and metadata bytes per append (default
    /// [`DEFAULT_CHUNK_BYTES`](Migration::DEFAULT_CHUNK_BYTES)).
    #[must_use]
    pub fn chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes;
        self
    }

    /// Records `metadata` (who ran the migration, and why) with the markers.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The source streams.
    pub fn sources(&self) -> &[StreamId] {
        &self.sources
    }

    /// Copies what is not copied yet, then marks the sources; see the
    /// [module docs](self). Run it again after any failure: it goes on
    /// where the last run stopped.
    ///
    /// # Errors
    ///
    /// [`MigrationError::Invalid`] or [`MigrationError::EmptySource`] before
    /// anything is written; [`MigrationError::Function`] when the route or
    /// transform fails; [`MigrationError::AlreadyMoved`] or
    /// [`MigrationError::TargetDiverged`] when sources or targets hold what
    /// another migration wrote; [`MigrationError::Store`] with what the
    /// store failed with ([`Error::Limit`] for a chunk over its limits).
    pub async fn run<S: EventStore>(&mut self, store: &S) -> Result<Migrated, MigrationError> {
        self.check_plan()?;
        let mut sources = Vec::with_capacity(self.sources.len());
        // A source that ends with a marker was moved: by an earlier run of
        // this migration, which then wrote every copy, or by another one.
        // Either way this run writes no copy.
        let mut moved = None;
        for stream in &self.sources {
            let version = store.stream_version(stream).await?;
            if version == 0 {
                return Err(MigrationError::EmptySource {
                    stream: stream.clone(),
                });
            }
            let last = read_page(store, stream, ReadRange::from(version..=version)).await?;
            if let Some(to) = last
                .front()
                .map(|e| moved_to(&e.as_event_ref()))
                .transpose()?
            {
                moved = moved.or(to.map(|to| (stream.clone(), to)));
            }
            sources.push(Source::new(stream.clone()));
        }
        let mut targets = Targets::default();
        let mut chunk = Chunk::default();
        let mut report = Migrated {
            targets: Vec::new(),
            read: 0,
            dropped: 0,
            written: 0,
            found: 0,
            marked: false,
        };
        loop {
            // Every event up to `head` is readable now, and none below it
            // appears later: copying up to it keeps the copies in position
            // order across rounds.
            let head = store.last_position().await?;
            for source in &mut sources {
                source.drained = false;
            }
            while let Some((at, event)) = next_source_event(store, &mut sources, head).await? {
                if let Some(to) = &sources[at].moved {
                    return Err(MigrationError::AlreadyMoved {
                        stream: sources[at].stream.clone(),
                        to: to.clone(),
                    });
                }
                if let Some(to) = moved_to(&event.as_event_ref())? {
                    sources[at].moved = Some(to);
                    continue;
                }
                report.read += 1;
                let into = Copied {
                    targets: &mut targets,
                    chunk: &mut chunk,
                    report: &mut report,
                    moved: moved.as_ref(),
                };
                self.copy_event(store, &event, into).await?;
            }
            chunk.flush(store, &mut targets, &mut report).await?;
            targets.check_no_more(store).await?;
            report.targets = targets.written();
            let mut markers = Vec::new();
            for source in &sources {
                match &source.moved {
                    Some(to) if same_streams(to, &report.targets) => {}
                    Some(to) => {
                        return Err(MigrationError::AlreadyMoved {
                            stream: source.stream.clone(),
                            to: to.clone(),
                        });
                    }
                    None => markers.push(source.marker(&report.targets, &self.metadata)),
                }
            }
            if markers.is_empty() {
                return Ok(report);
            }
            match store.append_to_streams(markers).await {
                Ok(_) => {
                    report.marked = true;
                    return Ok(report);
                }
                // A writer appended to a source since it was read (or
                // another run marked it): copy what is new, then mark again.
                Err(Error::Conflict(conflict)) => {
                    tracing::debug!(stream = %conflict.stream, "a source moved on while it was copied; copying its new events");
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn check_plan(&self) -> Result<(), MigrationError> {
        if self.sources.is_empty() {
            return Err(MigrationError::Invalid {
                stream: None,
                reason: "a migration needs at least one source",
            });
        }
        for (i, stream) in self.sources.iter().enumerate() {
            if self.sources[..i].contains(stream) {
                return Err(MigrationError::Invalid {
                    stream: Some(stream.clone()),
                    reason: "a source is named twice",
                });
            }
        }
        Ok(())
    }

    /// Routes and transforms one source event, and checks or queues its
    /// copies.
    async fn copy_event<S: EventStore>(
        &mut self,
        store: &S,
        event: &RecordedEvent,
        into: Copied<'_>,
    ) -> Result<(), MigrationError> {
        let Copied {
            targets,
            chunk,
            report,
            moved,
        } = into;
        let failed = |source: BoxError| MigrationError::Function {
            stream: event.stream_id.clone(),
            version: event.version,
            source,
        };
        let Some(target) = (self.route)(event).map_err(failed)? else {
            report.dropped += 1;
            return Ok(());
        };
        if self.sources.contains(&target) {
            return Err(MigrationError::Invalid {
                stream: Some(target),
                reason: "an event is routed to a source stream",
            });
        }
        let copies = match &mut self.transform {
            Some(transform) => transform(event).map_err(failed)?,
            None => vec![EventCopy::of(event)],
        };
        if copies.is_empty() {
            return Ok(());
        }
        let at = targets.find(store, target).await?;
        for (index, copy) in copies.into_iter().enumerate() {
            let index = u32::try_from(index).map_err(|e| failed(e.into()))?;
            let copy = copy_of(event, &targets.all[at].stream, index, copy);
            let target = &mut targets.all[at];
            target.planned += 1;
            if target.planned <= target.stored {
                target.check(store, &copy).await?;
                report.found += 1;
            } else if let Some((stream, to)) = moved {
                return Err(MigrationError::AlreadyMoved {
                    stream: stream.clone(),
                    to: to.clone(),
                });
            } else {
                chunk.push(at, copy);
                if chunk.is_full(self.chunk_events, self.chunk_bytes) {
                    chunk.flush(store, targets, report).await?;
                }
            }
        }
        Ok(())
    }
}

/// Where the copies of a run go, and what it found.
struct Copied<'a> {
    targets: &'a mut Targets,
    chunk: &'a mut Chunk,
    report: &'a mut Migrated,
    /// A source that was moved before this run, and where to.
    moved: Option<&'a (StreamId, Vec<StreamId>)>,
}

/// The copy of `source` made from `copy`, as copy number `index` in `target`.
fn copy_of(source: &RecordedEvent, target: &StreamId, index: u32, copy: EventCopy) -> NewEvent {
    let mut metadata = source.metadata.clone();
    metadata
        .extra
        .insert(COPIED_FROM.to_owned(), CopiedFrom::source(source).to_json());
    NewEvent {
        event_id: copy_id(source.event_id, target, index),
        aggregate_type: copy.aggregate_type,
        name: copy.name,
        schema_version: copy.schema_version,
        payload: copy.payload,
        occurred_at: Some(source.occurred_at),
        metadata,
    }
}

/// ` (`stream`)` for an error message, or nothing.
fn stream_named(stream: Option<&StreamId>) -> String {
    stream.map_or_else(String::new, |s| format!(" (`{s}`)"))
}

fn same_streams(a: &[StreamId], b: &[StreamId]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Reads `range` of `stream` whole (a page: never a stream left open).
async fn read_page<S: EventStore>(
    store: &S,
    stream: &StreamId,
    range: ReadRange,
) -> Result<VecDeque<RecordedEvent>> {
    let mut events = store.read_stream(stream, range);
    let mut page = VecDeque::new();
    while let Some(event) = next(&mut events).await {
        page.push_back(event?);
    }
    Ok(page)
}

/// A source stream, read a page at a time.
struct Source {
    stream: StreamId,
    /// Read, not yet taken.
    page: VecDeque<RecordedEvent>,
    /// The version of the last event taken.
    taken: u64,
    /// The aggregate type of its events.
    aggregate_type: Option<String>,
    /// The last page read came back short: nothing more this round.
    drained: bool,
    /// Where its marker says it moved, once read.
    moved: Option<Vec<StreamId>>,
}

impl Source {
    fn new(stream: StreamId) -> Self {
        Source {
            stream,
            page: VecDeque::new(),
            taken: 0,
            aggregate_type: None,
            drained: false,
            moved: None,
        }
    }

    /// The position of the next event, if it is at or below `head`.
    async fn next_position<S: EventStore>(&mut self, store: &S, head: u64) -> Result<Option<u64>> {
        if self.page.is_empty() && !self.drained {
            let start = self.taken.saturating_add(1);
            let end = start.saturating_add(PAGE - 1);
            self.page = read_page(store, &self.stream, ReadRange::from(start..=end)).await?;
            self.drained = (self.page.len() as u64) < PAGE;
        }
        Ok(self.page.front().map(|e| e.position).filter(|&p| p <= head))
    }

    fn take(&mut self) -> Option<RecordedEvent> {
        let event = self.page.pop_front()?;
        self.taken = event.version;
        if self.aggregate_type.is_none() {
            self.aggregate_type = Some(event.aggregate_type.to_string());
        }
        Some(event)
    }

    /// The marker naming `to`, after the last event taken.
    fn marker(&self, to: &[StreamId], metadata: &Metadata) -> StreamWrite {
        let payload = serde_json::json!({ "to": to }).to_string();
        let aggregate_type = self.aggregate_type.clone().unwrap_or_default();
        let marker = NewEvent::new(aggregate_type, MOVED, 1, payload)
            .with_id(marker_id(&self.stream, self.taken.saturating_add(1)))
            .with_metadata(metadata.clone());
        StreamWrite::new(
            self.stream.clone(),
            ExpectedVersion::Exact(self.taken),
            vec![marker],
        )
    }
}

/// The next event of all sources in position order, up to `head`, and the
/// index of its source.
async fn next_source_event<S: EventStore>(
    store: &S,
    sources: &mut [Source],
    head: u64,
) -> Result<Option<(usize, RecordedEvent)>> {
    let mut first: Option<(usize, u64)> = None;
    for (i, source) in sources.iter_mut().enumerate() {
        if let Some(position) = source.next_position(store, head).await?
            && first.is_none_or(|(_, p)| position < p)
        {
            first = Some((i, position));
        }
    }
    Ok(first.and_then(|(i, _)| Some((i, sources[i].take()?))))
}

/// A target stream, as this run knows it.
struct Target {
    stream: StreamId,
    /// Its version when this run first routed an event to it: the copies
    /// an earlier run stored.
    stored: u64,
    /// The copies this run has made for it so far.
    planned: u64,
    /// Its version: `stored`, plus what this run appended.
    version: u64,
    /// Stored copies read, not yet checked.
    page: VecDeque<RecordedEvent>,
}

impl Target {
    /// Checks that the stored copy at version `planned` is `copy`.
    async fn check<S: EventStore>(
        &mut self,
        store: &S,
        copy: &NewEvent,
    ) -> Result<(), MigrationError> {
        if self.page.is_empty() {
            let end = self.stored.min(self.planned.saturating_add(PAGE - 1));
            self.page = read_page(store, &self.stream, ReadRange::from(self.planned..=end)).await?;
        }
        let diverged = |version, event_id| MigrationError::TargetDiverged {
            stream: self.stream.clone(),
            version,
            event_id,
        };
        let Some(stored) = self.page.pop_front() else {
            return Err(diverged(self.planned, Uuid::nil()));
        };
        let same = stored.version == self.planned
            && stored.event_id == copy.event_id
            && stored.name == copy.name
            && stored.schema_version == copy.schema_version
            && stored.event == copy.payload
            && *stored.aggregate_type == *copy.aggregate_type;
        if same {
            Ok(())
        } else {
            Err(diverged(stored.version, stored.event_id))
        }
    }
}

/// The targets of a run, in the order they were first routed to.
#[derive(Default)]
struct Targets {
    all: Vec<Target>,
    index: HashMap<StreamId, usize>,
}

impl Targets {
    /// The index of `stream`, read from the store when it is new to this run.
    async fn find<S: EventStore>(&mut self, store: &S, stream: StreamId) -> Result<usize> {
        if let Some(&at) = self.index.get(&stream) {
            return Ok(at);
        }
        let stored = store.stream_version(&stream).await?;
        self.index.insert(stream.clone(), self.all.len());
        self.all.push(Target {
            stream,
            stored,
            planned: 0,
            version: stored,
            page: VecDeque::new(),
        });
        Ok(self.all.len() - 1)
    }

    /// Checks that no target holds more than this run's copies.
    async fn check_no_more<S: EventStore>(&self, store: &S) -> Result<(), MigrationError> {
        for target in &self.all {
            if target.stored > target.planned {
                let version = target.planned + 1;
                let page =
                    read_page(store, &target.stream, ReadRange::from(version..=version)).await?;
                return Err(MigrationError::TargetDiverged {
                    stream: target.stream.clone(),
                    version,
                    event_id: page.front().map_or(Uuid::nil(), |e| e.event_id),
                });
            }
        }
        Ok(())
    }

    /// The targets that get copies.
    fn written(&self) -> Vec<StreamId> {
        self.all
            .iter()
            .filter(|t| t.planned > 0)
            .map(|t| t.stream.clone())
            .collect()
    }
}

/// Copies waiting to be appended, in the order they were made.
#[derive(Default)]
struct Chunk {
    copies: Vec<(usize, NewEvent)>,
    bytes: usize,
}

impl Chunk {
    fn push(&mut self, target: usize, copy: NewEvent) {
        let metadata = copy.metadata.to_json().map_or(0, |m| m.len());
        self.bytes = self
            .bytes
            .saturating_add(copy.payload.len().saturating_add(metadata));
        self.copies.push((target, copy));
    }

    fn is_full(&self, events: usize, bytes: usize) -> bool {
        self.copies.len() >= events || self.bytes >= bytes
    }

    /// Appends the copies, every target at its exact version, in one
    /// atomic append.
    async fn flush<S: EventStore>(
        &mut self,
        store: &S,
        targets: &mut Targets,
        report: &mut Migrated,
    ) -> Result<(), MigrationError> {
        if self.copies.is_empty() {
            return Ok(());
        }
        let mut writes: Vec<(usize, StreamWrite)> = Vec::new();
        let mut write_of: HashMap<usize, usize> = HashMap::new();
        let count = self.copies.len() as u64;
        for (target, copy) in self.copies.drain(..) {
            let at = *write_of.entry(target).or_insert_with(|| {
                let t = &targets.all[target];
                let expected = ExpectedVersion::Exact(t.version);
                writes.push((
                    target,
                    StreamWrite::new(t.stream.clone(), expected, Vec::new()),
                ));
                writes.len() - 1
            });
            writes[at].1.events.push(copy);
        }
        self.bytes = 0;
        let lengths: Vec<(usize, u64)> = writes
            .iter()
            .map(|(target, write)| (*target, write.events.len() as u64))
            .collect();
        store
            .append_to_streams(writes.into_iter().map(|(_, write)| write).collect())
            .await?;
        for (target, length) in lengths {
            targets.all[target].version += length;
        }
        report.written += count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ids_are_stable() {
        // Stored format: these values must never change.
        let source = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let target = StreamId::new("order-12").unwrap();
        assert_eq!(
            copy_id(source, &target, 0).to_string(),
            "e82d0f8a-814b-54ef-b37d-64951a6a50d7"
        );
        assert_eq!(
            copy_id(source, &target, 1).to_string(),
            "81668c28-7ee9-5fad-87f3-f074e2cb6c5f"
        );
        assert_eq!(
            marker_id(&StreamId::new("lead-12").unwrap(), 4).to_string(),
            "5af94f17-941a-5455-b773-bad207438f35"
        );
        let other = StreamId::new("contact-12").unwrap();
        assert_ne!(copy_id(source, &target, 0), copy_id(source, &other, 0));
        assert_eq!(copy_id(source, &target, 0).get_version_num(), 5);
    }
}
