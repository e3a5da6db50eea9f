//! Projections: views of events built for reading (CQRS).
//!
//! A projection declares the events it handles (`#[derive(Projection)]` with
//! `#[projection(name = "...", events(A, B, ...))]`, over events of any
//! aggregates) and says how each one changes it, one impl per event, as an
//! aggregate does. It comes in two kinds:
//!
//! - **per-stream** projections, folded on demand from one stream with
//!   [`project`]: a state in memory, changed by [`Apply<E>`](crate::Apply)
//!   impls, the version counted by the framework (the seed's
//!   `LeadSearchModelProjection` for one lead);
//! - **read models**, fed from `$all` and checkpointed by a runner (the SQLite
//!   store's runs each event and the checkpoint in one transaction, so each
//!   event takes effect exactly once): the derive names the context a handler
//!   writes to (`#[projection(context = ...)]`, a SQLite connection for
//!   es-sqlite's read models), and each [`Handle<E, Cx>`] impl gets it with
//!   the event's whole envelope.
//!
//! Events a projection does not list are skipped without decoding their
//! payload: the stores filter them out by name. Event names are unique
//! within an aggregate type, not across them, so another aggregate's event
//! of a listed name would reach the projection too, and decode as the listed
//! type: `#[projection(aggregates(Lead, ...))]` restricts it to the streams
//! of the aggregate types it lists ([`Projection::AGGREGATES`]), and the
//! others' events are skipped undecoded as well ([`Projection::takes`]
//! decides).
//!
//! ```
//! use es_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Renamed { pub name: String }
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Called;
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "lead", events(Renamed, Called))]
//! pub struct Lead;
//! impl Apply<Renamed> for Lead { fn apply(&mut self, _: &Renamed) {} }
//! impl Apply<Called> for Lead { fn apply(&mut self, _: &Called) {} }
//!
//! /// A ticket has a `renamed` event of its own.
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! #[event(name = "renamed")]
//! pub struct TicketRenamed { pub name: String }
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "ticket", events(TicketRenamed))]
//! pub struct Ticket;
//! impl Apply<TicketRenamed> for Ticket { fn apply(&mut self, _: &TicketRenamed) {} }
//!
//! /// Every name a lead ever had.
//! #[derive(Projection, Default, Debug)]
//! #[projection(name = "lead-names", events(Renamed), aggregates(Lead))]
//! pub struct Names { all: Vec<String> }
//! impl Apply<Renamed> for Names {
//!     fn apply(&mut self, e: &Renamed) { self.all.push(e.name.clone()) }
//! }
//!
//! # es_core::blocking::block_on(async {
//! let store = InMemoryStore::new();
//! let leads = Repository::<Lead, _>::new(store.clone());
//! leads.execute("12", |_| Renamed { name: "Casey".into() }).await?;
//! leads.execute("12", |_| Called).await?;
//! leads.execute("12", |_| Renamed { name: "Casey D.".into() }).await?;
//! let names = es_core::projection::project::<Names, _>(&store, &leads.stream_id("12")?).await?;
//! assert_eq!(names.all, ["Casey", "Casey D."]);
//! assert_eq!(names.version, 3, "the stream's version: every event, listed or not");
//!
//! // A ticket's `renamed` is not a lead's: without `aggregates(Lead)` it would
//! // decode as a `Renamed`; with it, it is skipped undecoded.
//! let tickets = Repository::<Ticket, _>::new(store.clone());
//! tickets.execute("12", |_| TicketRenamed { name: "Printer jam".into() }).await?;
//! let names = es_core::projection::project::<Names, _>(&store, &tickets.stream_id("12")?).await?;
//! assert!(names.all.is_empty());
//! assert_eq!(names.version, 1);
//! assert!(Names::takes("lead", "renamed") && !Names::takes("ticket", "renamed"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::{ControlFlow, Deref, DerefMut};

use crate::aggregate::Apply;
use crate::envelope::Envelope;
use crate::error::{BoxError, Error, Result};
use crate::event::EventSet;
use crate::id::StreamId;
use crate::store::EventStore;
use crate::version::ReadRange;

/// A view of events built for reading: derive it with `#[derive(Projection)]`.
///
/// The attribute is `#[projection(name = "...", version = N, events(A, B,
/// ...), aggregates(X, Y, ...), context = Cx)]`: `name` defaults to the
/// kebab-case of the type (`LeadSearch`: `"lead-search"`), `version` to 1,
/// and the events may belong to different aggregates. `aggregates(Lead,
/// crm::Ticket)`, types implementing [`Aggregate`](crate::Aggregate), limits
/// it to the streams of those aggregate types
/// ([`AGGREGATES`](Projection::AGGREGATES)): event names are unique only
/// within an aggregate type, so without it another aggregate's event of a
/// listed name reaches the projection and decodes as the listed type. The
/// derive generates the event enum
/// (`<Type>Event`, with `From` for each event) and the dispatch: without
/// `context`, `Apply<<Type>Event>` to each [`Apply<E>`](crate::Apply) impl (a
/// per-stream projection, folded with [`project`]); with `context = Cx`,
/// [`Dispatch<Cx>`] to each [`Handle<E, Cx>`] impl (a read model, which a
/// runner feeds):
///
/// ```
/// use std::cell::RefCell;
///
/// use es_core::prelude::*;
/// use es_core::{BoxError, Dispatch, NewEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Renamed { pub name: String }
/// # #[derive(Aggregate, Default)]
/// # #[aggregate(name = "lead", events(Renamed))]
/// # pub struct Lead;
/// # impl Apply<Renamed> for Lead { fn apply(&mut self, _: &Renamed) {} }
///
/// /// Every rename of a lead, as a line written to the context.
/// #[derive(Projection, Default)]
/// #[projection(events(Renamed), aggregates(Lead), context = RefCell<Vec<String>>)]
/// pub struct RenameLog;
///
/// impl Handle<Renamed, RefCell<Vec<String>>> for RenameLog {
///     fn handle(&mut self, cx: &RefCell<Vec<String>>, e: &Envelope<Renamed>) -> Result<(), BoxError> {
///         cx.borrow_mut().push(format!("{} v{}: {}", e.stream_id, e.version, e.event.name));
///         Ok(())
///     }
/// }
///
/// # es_core::blocking::block_on(async {
/// let store = InMemoryStore::new();
/// let renamed = RenameLogEvent::from(Renamed { name: "Casey".into() });
/// let events = vec![NewEvent::encode("lead", &renamed, Metadata::new())?];
/// store.append(&StreamId::new("lead-12")?, ExpectedVersion::NoStream, events).await?;
/// // Another aggregate type's event of the same name, which is not a lead's.
/// let events = vec![NewEvent::encode("ticket", &renamed, Metadata::new())?];
/// store.append(&StreamId::new("ticket-3")?, ExpectedVersion::NoStream, events).await?;
///
/// // What a runner does with each event of `$all`:
/// let (lines, mut log) = (RefCell::new(Vec::new()), RenameLog);
/// let mut all = store.read_all(0);
/// while let Some(event) = es_core::store::next(&mut all).await {
///     let event = event?;
///     if RenameLog::takes(&event.aggregate_type, &event.name) {
///         log.dispatch(&lines, event.into_envelope()?)?;
///     }
/// }
/// assert_eq!(lines.into_inner(), ["lead-12 v1: Casey"]);
/// # Ok::<(), BoxError>(())
/// # })?;
/// # Ok::<(), BoxError>(())
/// ```
///
/// The name is stored (read model files, checkpoints, parked events are
/// kept under it), so it must not change; the version is the version of the
/// projection's logic and of its tables: raising it rebuilds a read model
/// from the first event, beside the old one, which serves until the new one
/// has caught up (see es-sqlite's read models).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection",
    label = "not a projection",
    note = "add `#[derive(Projection)]` and `#[projection(name = \"...\", events(...))]` to `{Self}`"
)]
pub trait Projection: Send + 'static {
    /// The events it handles: the enum `#[derive(Projection)]` generates
    /// (`<Type>Event`).
    type Event: EventSet;

    /// The stable name.
    const NAME: &'static str;

    /// The version of the projection's logic and shape (1 or more).
    const VERSION: u32 = 1;

    /// The aggregate types whose streams it takes events from (their
    /// [`Aggregate::NAME`](crate::Aggregate::NAME)s, which
    /// `#[projection(aggregates(Lead, ...))]` lists); empty, the default:
    /// any aggregate's events of the listed names.
    ///
    /// Event names are unique within an aggregate type, not across them, so
    /// a projection that lists no aggregates also takes another aggregate's
    /// event of a listed name, and decodes it as the listed type.
    const AGGREGATES: &'static [&'static str] = &[];

    /// Whether a stored event named `name` is one this projection lists,
    /// whatever aggregate type wrote it: [`AGGREGATES`](Self::AGGREGATES) is
    /// not consulted. [`takes`](Self::takes) decides on a stored event.
    fn handles(name: &str) -> bool {
        <Self::Event as EventSet>::EVENTS
            .iter()
            .any(|key| key.name == name)
    }

    /// Whether a stored event named `name`, in a stream of aggregate type
    /// `aggregate_type`, is one this projection takes: a name it
    /// [`handles`](Self::handles), from one of
    /// [`AGGREGATES`](Self::AGGREGATES) when it lists any. Those it does not
    /// take are skipped without decoding.
    fn takes(aggregate_type: &str, name: &str) -> bool {
        Self::handles(name)
            && (Self::AGGREGATES.is_empty() || Self::AGGREGATES.contains(&aggregate_type))
    }

    /// The names of the events it handles, in declaration order.
    fn event_names() -> Vec<&'static str> {
        <Self::Event as EventSet>::EVENTS
            .iter()
            .map(|key| key.name)
            .collect()
    }
}

/// How a read model handles one event it lists: `cx` is what it writes to
/// (for es-sqlite's read models, the connection of the read model's open
/// transaction), `event` the event with its whole envelope (stream,
/// aggregate id, version, position, times, metadata).
///
/// A handler that fails stops its read model at this event, with an error
/// naming the projection, the position, the stream and the version; it is
/// never skipped silently (unless the runner's policy parks it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` lists event `{E}` but does not say how it changes the read model",
    label = "missing `impl Handle<{E}, {Cx}> for {Self}`",
    note = "add `impl es_core::Handle<{E}, {Cx}> for {Self} {{ fn handle(&mut self, cx: &{Cx}, event: &es_core::Envelope<{E}>) -> Result<(), es_core::BoxError> {{ .. }} }}`"
)]
pub trait Handle<E, Cx: ?Sized> {
    /// Applies `event` to the read model.
    ///
    /// # Errors
    ///
    /// Whatever the handler reports: the runner stops (or parks the event).
    fn handle(&mut self, cx: &Cx, event: &Envelope<E>) -> Result<(), BoxError>;
}

/// A read model's whole dispatch: each event to the [`Handle<E, Cx>`] impl of
/// its type. `#[derive(Projection)]` with `#[projection(context = Cx)]`
/// generates it; a runner calls it.
pub trait Dispatch<Cx: ?Sized>: Projection {
    /// Hands `event` to the handler of its type.
    ///
    /// # Errors
    ///
    /// What the handler reports.
    fn dispatch(&mut self, cx: &Cx, event: Envelope<Self::Event>) -> Result<(), BoxError>;
}

/// A per-stream projection folded from one stream, with the stream's
/// version (every event counts, listed or not).
///
/// Dereferences to the projection, so `projected.names` reads its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected<P> {
    /// The folded projection.
    pub state: P,
    /// The version of the stream's last event (0: no events).
    pub version: u64,
}

impl<P> Deref for Projected<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.state
    }
}

impl<P> DerefMut for Projected<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.state
    }
}

/// Folds `P` over the events of `stream`, from its first event: events `P`
/// does not [take](Projection::takes) (names it does not list, or all of
/// them when the stream's aggregate type is not in
/// [`P::AGGREGATES`](Projection::AGGREGATES)) are skipped without decoding,
/// and still count in the version.
///
/// # Errors
///
/// [`Error::Decode`] for a listed event this program cannot decode;
/// [`Error::Corrupt`] for a stream whose versions jump; what the store fails
/// with.
pub async fn project<P, S>(store: &S, stream: &StreamId) -> Result<Projected<P>>
where
    P: Projection + Default + Apply<P::Event>,
    S: EventStore,
{
    project_until(store, stream, ReadRange::all()).await
}

/// [`project`] over the versions of `range` only (time travel by version:
/// `..=5` is the projection as it was at version 5).
///
/// # Errors
///
/// As [`project`].
pub async fn project_until<P, S>(
    store: &S,
    stream: &StreamId,
    range: ReadRange,
) -> Result<Projected<P>>
where
    P: Projection + Default + Apply<P::Event>,
    S: EventStore,
{
    let mut projected = Projected {
        state: P::default(),
        version: 0,
    };
    let range = ReadRange {
        start: 1,
        end: range.end,
    };
    let (state, version) = (&mut projected.state, &mut projected.version);
    store
        .fold_stream(stream, range, |e| {
            if version.checked_add(1) != Some(e.version) {
                return Err(Error::Corrupt {
                    detail: format!(
                        "stream `{stream}` jumps from version {version} to {}",
                        e.version
                    ),
                });
            }
            *version = e.version;
            // Through the raw upcasters first: what `P` takes is decided on
            // the events readers see, names and aggregate types included.
            e.for_each_upcast(|e| {
                if P::takes(e.aggregate_type, e.name) {
                    state.apply(&e.decode::<P::Event>()?);
                }
                Ok(())
            })?;
            Ok(ControlFlow::Continue(()))
        })
        .await?;
    Ok(projected)
}

/// Why a read model stopped: its handler failed on an event, or the event
/// could not be decoded. Names the projection, and where the event is.
#[derive(Debug, thiserror::Error)]
#[error(
    "projection `{projection}` stopped at position {position} (stream `{stream}`, version {version})"
)]
pub struct ProjectionError {
    /// The projection's name.
    pub projection: &'static str,
    /// The event's global position.
    pub position: u64,
    /// The event's stream.
    pub stream: StreamId,
    /// The event's version in its stream.
    pub version: u64,
    /// What went wrong.
    #[source]
    pub reason: StopReason,
}

/// What stopped a read model at an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopReason {
    /// The event's name is listed but its payload or version does not decode.
    #[error("the event does not decode")]
    Decode(#[source] crate::event::DecodeError),
    /// The handler refused the event.
    #[error("the handler failed")]
    Handler(#[source] BoxError),
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at position {} of {} ({} behind)",
            self.position,
            self.head,
            self.head.saturating_sub(self.position)
        )
    }
}

/// Where a read model is: what the runner reports, and what
/// [`tracing`](https://docs.rs/tracing) events carry.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// The position of the last event the read model has taken (its
    /// checkpoint; 0: none yet).
    pub position: u64,
    /// The store's last position when the runner last looked.
    pub head: u64,
    /// Events taken per second over the last batch.
    pub events_per_second: f64,
    /// How far behind the head the read model is in time: the age of the
    /// oldest event not yet taken, in microseconds (0 when caught up).
    pub lag_micros: i64,
}

impl Progress {
    /// How many events the read model is behind the head.
    pub fn lag_events(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }

    /// Whether it has taken every event up to the head.
    pub fn caught_up(&self) -> bool {
        self.position >= self.head
    }
}

/// Hands one stored event to a read model, as every runner does: through
/// the raw upcasters first (without allocating when none applies), then,
/// for each event it became that the model [takes](Projection::takes),
/// decoded and dispatched to its handler. `before` sees each decoded
/// event just before its handler (a runner notes there, say, that the
/// model took personal data). A handler's panic is its event's failure.
///
/// # Errors
///
/// [`StopReason::Decode`] for an event that does not decode (or upcast);
/// [`StopReason::Handler`] for what the handler, a panic, or `before`
/// reports.
pub fn feed<R, Cx>(
    model: &mut R,
    cx: &Cx,
    recorded: crate::RecordedEvent,
    mut before: impl FnMut(&crate::RecordedEvent) -> Result<(), BoxError>,
) -> Result<(), StopReason>
where
    R: Dispatch<Cx>,
    Cx: ?Sized,
{
    let seen = if crate::upcast::applies(
        &recorded.aggregate_type,
        &recorded.name,
        recorded.schema_version,
    ) {
        recorded.upcast().map_err(|e| match e {
            Error::Decode { source, .. } => StopReason::Decode(source),
            other => StopReason::Handler(other.into()),
        })?
    } else {
        vec![recorded]
    };
    for recorded in seen {
        if !R::takes(&recorded.aggregate_type, &recorded.name) {
            continue;
        }
        let decoded = <R::Event as EventSet>::decode(
            &recorded.name,
            recorded.schema_version,
            recorded.event.as_str(),
        )
        .map_err(StopReason::Decode)?;
        before(&recorded).map_err(StopReason::Handler)?;
        let envelope = recorded.with_event(decoded);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            model.dispatch(cx, envelope)
        }))
        .unwrap_or_else(|panic| Err(panicked(&*panic)))
        .map_err(StopReason::Handler)?;
    }
    Ok(())
}

/// A panic's payload as an error (`the handler panicked: ...`): what a
/// runner reports for a handler, or a hook, that panicked.
pub fn panicked(panic: &(dyn std::any::Any + Send)) -> BoxError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("the handler panicked: {message}").into()
}
