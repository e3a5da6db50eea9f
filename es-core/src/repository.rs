//! [`Repository`]: load an aggregate, decide, append with optimistic concurrency.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{ControlFlow, Deref, DerefMut};
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::audit::command_event_id;
use crate::cache::StateCache;
use crate::diff::StateDiff;
use crate::envelope::{Decoded, Envelope, EventRef, NewEvent, RecordedEvent};
use crate::error::{Conflict, Error, Result};
use crate::event::IntoEvents;
use crate::evolution::{MovedPolicy, check_moved};
use crate::gate::Gates;
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::{AppendResult, EventStore, next};
use crate::time::{AsOf, Timestamp};
use crate::trail::Trail;
use crate::version::{ExpectedVersion, ReadRange};

mod conflict;
mod many;

pub use conflict::CommandConflict;

/// What to do when another writer appended to the stream between our load
/// and our append.
///
/// Either way the other writer's events are read (exactly those after the
/// version our decision saw) and folded into the state, and the number of
/// appends is bounded by [`Repository::with_retries`]: when the last one
/// still conflicts, the command fails with [`ExecuteError::Conflict`],
/// which lists the events it raced against. [`Executed`] says how it went
/// (`attempts`, `reruns`, [`reruns_avoided`](Executed::reruns_avoided)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Run the decision again on the state with their events folded in
    /// (the default, always correct).
    #[default]
    Rerun,
    /// Ask the aggregate, with [`Aggregate::conflicts`]`(ours, theirs)`,
    /// whether our new events really conflict with the events appended
    /// since our decision ran: when they do not, append ours after theirs
    /// without running the decision again (the "advanced optimistic
    /// concurrency" of the seeds); when they do, run it again on the fresh
    /// state, as `Rerun` does. Kept events that meet another conflict are
    /// judged again against everything since the decision, not only the
    /// latest events. Each append counts against the retries, whether
    /// or not the decision ran again.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// pub struct Noted { pub text: String }
    ///
    /// #[derive(Aggregate, Default, Debug)]
    /// #[aggregate(name = "notebook", events(Noted), conflicts = Notebook::conflicts_with)]
    /// pub struct Notebook { notes: u32 }
    /// # impl Apply<Noted> for Notebook { fn apply(&mut self, _: &Noted) { self.notes += 1 } }
    ///
    /// impl Notebook {
    ///     /// Notes never conflict with notes.
    ///     fn conflicts_with(_ours: &[NotebookEvent], _theirs: &[NotebookEvent]) -> bool {
    ///         false
    ///     }
    /// }
    ///
    /// # pollster::block_on(async {
    /// let store = InMemoryStore::new();
    /// let notebooks = Repository::<Notebook, _>::new(store.clone())
    ///     .with_conflict_policy(ConflictPolicy::CheckConflicts);
    /// let elsewhere = Repository::<Notebook, _>::new(store);
    /// let done = notebooks
    ///     .execute("n-1", |_| {
    ///         // Another writer appends while this decision runs.
    ///         pollster::block_on(elsewhere.execute("n-1", |_| Noted { text: "theirs".into() }))
    ///             .unwrap();
    ///         Noted { text: "ours".into() }
    ///     })
    ///     .await?;
    /// // Appended after theirs, the decision not run again.
    /// assert_eq!((done.version, done.attempts, done.reruns), (2, 2, 0));
    /// assert_eq!(done.reruns_avoided(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    CheckConflicts,
}

/// An aggregate's state at a version.
///
/// Dereferences to the state, so `loaded.status` reads the aggregate's field.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The version of the last event folded in (0: no events).
    pub version: u64,
}

impl<A> Loaded<A> {
    /// Whether the stream has any event.
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

impl<A> Deref for Loaded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

impl<A> DerefMut for Loaded<A> {
    fn deref_mut(&mut self) -> &mut A {
        &mut self.state
    }
}

/// What [`Repository::execute`] did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The stream's version after the append.
    pub version: u64,
    /// The events appended (empty when the decision returned none).
    pub events: Vec<A::Event>,
    /// The global position of the last appended event.
    pub position: Option<u64>,
    /// How many appends were attempted (1 without conflicts). Under
    /// [`ConflictPolicy::CheckConflicts`] an attempt may reuse the events
    /// of the previous one without running the decision again. 0 for a
    /// repeat: nothing was appended.
    pub attempts: u32,
    /// Whether this was a repeat of a command already executed: one with
    /// a [command id](Command::command_id) whose events the stream
    /// already held. Nothing was appended then, and the rest is the first
    /// execution's outcome: its events (as stored, decoded now), the
    /// stream's version and the global position after them, and the state
    /// they left.
    pub repeated: bool,
    /// How many times the decision ran again on fresh state after a
    /// conflict (0 without conflicts). Of the `attempts - 1` conflicts,
    /// [`reruns_avoided`](Executed::reruns_avoided) were settled by
    /// [`Aggregate::conflicts`] without running the decision again.
    pub reruns: u32,
}

impl<A: Aggregate> Executed<A> {
    /// How many conflicts the command met on its way (`attempts - 1`).
    pub fn conflicts(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// How many of those conflicts the aggregate judged harmless, so that
    /// its events were appended after the other writer's without running
    /// the decision again ([`ConflictPolicy::CheckConflicts`]; always 0
    /// under [`ConflictPolicy::Rerun`]).
    pub fn reruns_avoided(&self) -> u32 {
        self.conflicts().saturating_sub(self.reruns)
    }
}

/// Why [`Repository::execute`] did not append.
///
/// The decision's refusal is [`Rejected`](ExecuteError::Rejected); running
/// out of retries on conflicts is [`Conflict`](ExecuteError::Conflict),
/// with the events other writers appended meanwhile; every other failure
/// is an [`Error`] in [`Store`](ExecuteError::Store): the store's, and the
/// framework's own checks of the request (an invalid stream id, a
/// compensation target the stream does not hold).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision refused the command.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// The retries ran out on conflicts: what the store reported last, and
    /// the events appended meanwhile (see [`CommandConflict`]).
    #[error(transparent)]
    Conflict(Box<CommandConflict>),
    /// Loading, appending or decoding failed, or the request was invalid.
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E> ExecuteError<E> {
    /// The conflict the store reported, when retries ran out on one.
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            ExecuteError::Conflict(c) => Some(&c.conflict),
            ExecuteError::Store(Error::Conflict(c)) => Some(c),
            _ => None,
        }
    }

    /// The conflict with the events appended meanwhile, when retries ran
    /// out on one.
    pub fn as_command_conflict(&self) -> Option<&CommandConflict> {
        match self {
            ExecuteError::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// The rejection, when the decision refused the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            ExecuteError::Rejected(e) => Some(e),
            ExecuteError::Conflict(_) | ExecuteError::Store(_) => None,
        }
    }
}

impl<E> From<Conflict> for ExecuteError<E> {
    fn from(c: Conflict) -> Self {
        ExecuteError::Store(Error::Conflict(c))
    }
}

/// Loads aggregates from a store and appends the events their decisions
/// return, guarded by optimistic concurrency.
///
/// The stream of aggregate `A` with id `id` is `"{A::NAME}-{id}"`; ids are
/// anything that implements `Display` (a `String`, `&str`, a `Uuid`, your own
/// id type).
///
/// ```
/// use es_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// pub struct Deposited { pub amount: u64 }
///
/// #[derive(Aggregate, Default, Debug)]
/// #[aggregate(name = "account", events(Deposited))]
/// pub struct Account { balance: u64 }
///
/// impl Apply<Deposited> for Account {
///     fn apply(&mut self, e: &Deposited) { self.balance += e.amount }
/// }
///
/// impl Account {
///     fn deposit(&self, amount: u64) -> Result<Deposited, &'static str> {
///         if amount == 0 { return Err("nothing to deposit") }
///         Ok(Deposited { amount })
///     }
/// }
///
/// # pollster::block_on(async {
/// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
/// accounts.execute("a-1", |a| a.deposit(5)).await?;
/// accounts.execute("a-1", |a| a.deposit(7)).await?;
/// let now = accounts.load("a-1").await?;
/// assert_eq!((now.balance, now.version), (12, 2));
/// assert_eq!(accounts.load_at("a-1", 1).await?.balance, 5);
///
/// let refused = accounts.execute("a-1", |a| a.deposit(0)).await;
/// assert!(matches!(refused, Err(ExecuteError::Rejected("nothing to deposit"))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # How a load reads
///
/// Every load (`load`, `load_at`, `load_as_of`, the load of `execute`) is
/// one plan: what to fold up to (the latest event, a version, a time),
/// then where to start, chosen once: a cached state (with
/// [`with_cache`](Repository::with_cache)), else the latest usable snapshot,
/// else the first event. A look back in time starts from the first event
/// (neither clock is assumed to only move forward, so nothing before the
/// end of the stream can be skipped).
pub struct Repository<A, S> {
    store: S,
    retries: u32,
    policy: ConflictPolicy,
    snapshots: bool,
    cache: Option<Arc<StateCache<A>>>,
    gates: Option<Arc<Gates>>,
    moved: MovedPolicy,
    aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            retries: self.retries,
            policy: self.policy,
            snapshots: self.snapshots,
            cache: self.cache.clone(),
            gates: self.gates.clone(),
            moved: self.moved,
            aggregate: PhantomData,
        }
    }
}

impl<A, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("retries", &self.retries)
            .field("policy", &self.policy)
            .field("snapshots", &self.snapshots)
            .field("cache", &self.cache.as_ref().map(|c| c.capacity()))
            .field("serialized_commands", &self.gates.is_some())
            .field("moved", &self.moved)
            .finish()
    }
}

impl<A, S> Repository<A, S>
where
    A: Aggregate + Clone,
    S: EventStore + SnapshotStore,
{
    /// Keeps the latest state of up to `capacity` aggregates in memory
    /// (default: none), shared by the clones of this repository. Loading a
    /// cached aggregate folds only the events appended since, by this
    /// process or any other, so answers are the same as without the cache;
    /// a hot aggregate is just not replayed on every command.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(StateCache::new(capacity, A::clone)));
        self
    }
}

/// What a load folds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Every event.
    Latest,
    /// The events up to this version.
    Version(u64),
    /// The events that count as of this time, wherever they are.
    AsOf(AsOf),
}

impl Target {
    /// The last version worth reading, when the target bounds it.
    fn end(self) -> Option<u64> {
        match self {
            Target::Version(v) => Some(v),
            Target::Latest | Target::AsOf(_) => None,
        }
    }
}

/// Where a fold began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The first event: no usable snapshot or cached state.
    Events,
    /// The stored snapshot at this version.
    Snapshot(u64),
    /// The cached state at this version.
    Cache(u64),
}

impl Origin {
    /// Whether a load that began here and reached `version` is due a new
    /// snapshot, taken every `every` versions: with no usable snapshot
    /// (none, or one stale, foreign, past the end of its stream), once the
    /// stream is that long; from a snapshot, `every` past it; from the
    /// cache (the stored snapshot's version is not known then), when the
    /// fold crossed a multiple of `every`.
    fn snapshot_due(self, version: u64, every: u64) -> bool {
        let every = every.max(1);
        match self {
            Origin::Events => version >= every,
            Origin::Snapshot(at) => version >= at.saturating_add(every),
            Origin::Cache(at) => crossed(at, version, every),
        }
    }
}

/// Whether going from version `from` to `to` crossed a multiple of `every`:
/// when a command's append is due a snapshot. (A command does not take one
/// for lack of a usable one: the snapshot the previous command queued may
/// not be stored yet, and a command would otherwise take one every time
/// until it is.)
fn crossed(from: u64, to: u64, every: u64) -> bool {
    let every = every.max(1);
    to / every > from / every
}

/// A folded state, its version, and where the fold began.
struct Folded<A> {
    state: A,
    version: u64,
    origin: Origin,
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// Retries on conflict by default (so a decision runs at most 4 times).
    pub const DEFAULT_RETRIES: u32 = 3;

    /// A repository over `store`.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            retries: Self::DEFAULT_RETRIES,
            policy: ConflictPolicy::Rerun,
            snapshots: true,
            cache: None,
            gates: Some(Arc::default()),
            moved: MovedPolicy::Report,
            aggregate: PhantomData,
        }
    }

    /// Sets how many times a conflicting command is retried before the
    /// conflict is returned.
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the [`ConflictPolicy`].
    #[must_use]
    pub fn with_conflict_policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether to read and take snapshots when the aggregate declares them
    /// (default `true`). Without, every load replays the whole stream: the
    /// answers are the same.
    #[must_use]
    pub fn with_snapshots(mut self, snapshots: bool) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Whether commands on one aggregate, through this repository and its
    /// clones, run one at a time (default `true`): they then queue instead
    /// of racing, so they never conflict with each other, and a hot
    /// aggregate does not run its commands out of retries. Conflicts with
    /// writers outside (other processes, other repositories) are still
    /// resolved by the [`ConflictPolicy`].
    ///
    /// With `false`, commands race and conflicts between them are retried.
    /// Either way the answers are the same; only throughput and the number
    /// of retries differ. A decision must not run a command on its own
    /// aggregate through the blocking facade (it would wait for itself).
    #[must_use]
    pub fn with_serialized_commands(mut self, serialized: bool) -> Self {
        self.gates = serialized.then(Arc::default);
        self
    }

    /// What to do with a stream that a [migration](crate::evolution) moved
    /// (default [`MovedPolicy::Report`]: [`Error::Moved`]); with
    /// [`MovedPolicy::Follow`], a stream moved to one other is loaded and
    /// commanded there.
    #[must_use]
    pub fn with_moved(mut self, policy: MovedPolicy) -> Self {
        self.moved = policy;
        self
    }

    /// How many aggregate states the cache holds now (0 without a cache;
    /// see [`with_cache`](Repository::with_cache)).
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate with id `id`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamId`] when `id` is empty, holds a control
    /// character, or makes the stream id too long.
    pub fn stream_id<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<StreamId> {
        Ok(StreamId::for_aggregate(A::NAME, &id.to_string())?)
    }

    /// The current state and version (the default state at version 0 when
    /// the stream does not exist).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamId`] for a bad id; [`Error::Decode`] for an event
    /// this program cannot decode; [`Error::AggregateMismatch`] for a stream of
    /// another aggregate type; [`Error::Moved`] for a stream a migration moved
    /// (see [`with_moved`](Repository::with_moved)); what the store fails with.
    pub async fn load<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let (stream, folded) = self
            .following(
                stream,
                |s| async move { self.fold(&s, Target::Latest).await },
            )
            .await?;
        let due = A::SNAPSHOT.is_some_and(|p| folded.origin.snapshot_due(folded.version, p.every));
        self.after_fold(&stream, &folded, due);
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// The state as it was at `version` (the current state when the stream
    /// is shorter).
    ///
    /// # Errors
    ///
    /// As [`load`](Repository::load).
    pub async fn load_at<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        version: u64,
    ) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let (_, folded) = self
            .following(stream, |s| async move {
                self.fold(&s, Target::Version(version)).await
            })
            .await?;
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// The state as of a time: the fold of every event that counts as of it
    /// ([`AsOf::Recorded`], what the store had recorded by then, the default
    /// for a bare [`Timestamp`]; or [`AsOf::Occurred`], what had happened by
    /// then). The version is that of the last event that counts.
    ///
    /// # Errors
    ///
    /// As [`load`](Repository::load).
    pub async fn load_as_of<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        at: impl Into<AsOf>,
    ) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let at = at.into();
        let (_, folded) = self
            .following(
                stream,
                |s| async move { self.fold(&s, Target::AsOf(at)).await },
            )
            .await?;
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// Every event of the aggregate with its envelope: who, when, what, why.
    ///
    /// An event this program cannot decode (written by a newer program, or
    /// of a type since removed) is kept as [`Decoded::Undecodable`] with its
    /// stored payload, so the rest of the trail is still shown.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStreamId`] for a bad id; [`Error::AggregateMismatch`]
    /// for a stream of another aggregate type; [`Error::Moved`] as for
    /// [`load`](Repository::load); what the store fails with.
    pub async fn history<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
    ) -> Result<Vec<Envelope<Decoded<A::Event>>>> {
        let stream = self.stream_id(id)?;
        let (_, trail) = self
            .following(stream, |s| async move {
                self.stream_history(&s, ReadRange::all()).await
            })
            .await?;
        Ok(trail)
    }

    /// The events of [`history`](Repository::history) whose versions are
    /// in `versions` (`3..=6`, `3..`, `..=6`, `..`): what happened between
    /// two versions. A range past the end of the stream gives what is
    /// there, possibly nothing.
    ///
    /// An event that a raw upcaster splits shows as several entries of its
    /// stored version, as in `history`. [`Trail::new`] makes a
    /// [`Trail`] of the range; a compensation of an event before the range
    /// then corrects nothing in it (see [`Trail`]).
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "account", events(Deposited))]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// for amount in 1..=8 {
    ///     accounts.execute("a-1", |_| Deposited { amount }).await?;
    /// }
    /// let between = accounts.history_between("a-1", 3..=6).await?;
    /// let versions: Vec<u64> = between.iter().map(|e| e.version).collect();
    /// assert_eq!(versions, [3, 4, 5, 6]);
    /// assert_eq!(accounts.history_between("a-1", 7..).await?.len(), 2);
    /// assert!(accounts.history_between("a-1", 9..=12).await?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`history`](Repository::history).
    pub async fn history_between<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        versions: impl Into<ReadRange>,
    ) -> Result<Vec<Envelope<Decoded<A::Event>>>> {
        let stream = self.stream_id(id)?;
        let range = versions.into();
        let (_, trail) = self
            .following(
                stream,
                |s| async move { self.stream_history(&s, range).await },
            )
            .await?;
        Ok(trail)
    }

    /// How the state changed from version `from` to version `to`: each
    /// place of the state (serialized to JSON) that differs between
    /// [`load_at(id, from)`](Repository::load_at) and `load_at(id, to)`, as
    /// a JSON pointer with the value at each version (see
    /// [`diff`](crate::diff)). A version past the end of the stream reads
    /// as the current state; the versions actually compared are in the
    /// answer.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// #[derive(Aggregate, Default, Debug, Serialize)]
    /// #[aggregate(name = "account", events(Deposited))]
    /// pub struct Account { balance: u64, deposits: u32 }
    /// # impl Apply<Deposited> for Account {
    /// #     fn apply(&mut self, e: &Deposited) { self.balance += e.amount; self.deposits += 1 }
    /// # }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// for amount in [5, 7, 9] {
    ///     accounts.execute("a-1", |_| Deposited { amount }).await?;
    /// }
    /// let diff = accounts.diff("a-1", 1, 3).await?;
    /// let changes: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
    /// assert_eq!(changes, ["/balance: 5 -> 21", "/deposits: 1 -> 3"]);
    /// assert!(accounts.diff("a-1", 3, 3).await?.changes.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`load_at`](Repository::load_at); [`Error::Encode`] when the
    /// state does not serialize to JSON.
    pub async fn diff<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        from: u64,
        to: u64,
    ) -> Result<StateDiff>
    where
        A: serde::Serialize,
    {
        let old = self.load_at(id, from).await?;
        let new = self.load_at(id, to).await?;
        let changes = crate::diff::diff_serialized(&old.state, &new.state).map_err(|source| {
            crate::EncodeError {
                name: A::NAME,
                source,
            }
        })?;
        Ok(StateDiff {
            from: old.version,
            to: new.version,
            changes,
        })
    }

    /// The audit trail of `stream`, the versions in `range`.
    async fn stream_history(
        &self,
        stream: &StreamId,
        range: ReadRange,
    ) -> Result<Vec<Envelope<Decoded<A::Event>>>> {
        if range.end.is_some_and(|end| end < range.first()) {
            return Ok(Vec::new());
        }
        let mut events = self.store.read_stream(stream, range);
        let mut trail = Vec::new();
        while let Some(recorded) = next(&mut events).await {
            let recorded = recorded?;
            check_aggregate::<A>(&recorded.as_event_ref())?;
            // The events readers see in its place (raw upcasters may remove
            // or split it); one that cannot be upcast is kept as stored.
            let seen = match recorded.clone().upcast() {
                Ok(seen) => seen,
                Err(Error::Decode { source, .. }) => {
                    let payload = recorded.event.clone();
                    let error = Arc::new(source);
                    trail.push(recorded.with_event(Decoded::Undecodable { payload, error }));
                    continue;
                }
                Err(other) => return Err(other),
            };
            for recorded in seen {
                let decoded = match recorded.decode::<A::Event>() {
                    Ok(event) => Decoded::Event(event),
                    Err(Error::Decode { source, .. }) => Decoded::Undecodable {
                        payload: recorded.event.clone(),
                        error: Arc::new(source),
                    },
                    Err(other) => return Err(other),
                };
                trail.push(recorded.with_event(decoded));
            }
        }
        Ok(trail)
    }

    /// The history of [`history`](Repository::history) with its
    /// compensating events matched to the events they correct: raw (every
    /// entry, each corrected one marked) or effective (what still stands).
    /// See [`Trail`] for what stands, and [`Command::compensating`] for how
    /// compensations are recorded.
    ///
    /// # Errors
    ///
    /// As [`history`](Repository::history).
    pub async fn trail<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
    ) -> Result<Trail<Decoded<A::Event>>> {
        Ok(Trail::new(self.history(id).await?))
    }

    /// Forgets the data subject `subject` (see [`privacy`](crate::privacy)):
    /// the store destroys its keys, deletes its snapshots and records an
    /// `es.subject-forgotten` event; this repository drops its cached
    /// states, which held the subject's data decrypted. Loads after it see
    /// [`Personal::Forgotten`](crate::Personal::Forgotten) in its fields.
    ///
    /// The subject is the stream id (`"customer-42"`) for personal fields
    /// without `#[personal(subject = ..)]`, else the value of the field
    /// named there.
    ///
    /// # Errors
    ///
    /// As [`Forget::forget`](crate::privacy::Forget::forget).
    pub async fn forget(&self, subject: &str) -> Result<crate::privacy::Forgotten>
    where
        S: crate::privacy::Forget,
    {
        self.forget_with(subject, Metadata::new()).await
    }

    /// [`forget`](Repository::forget), recording who asked and why.
    ///
    /// # Errors
    ///
    /// As [`Forget::forget`](crate::privacy::Forget::forget).
    pub async fn forget_with(
        &self,
        subject: &str,
        metadata: Metadata,
    ) -> Result<crate::privacy::Forgotten>
    where
        S: crate::privacy::Forget,
    {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        let forgotten = self.store.forget(subject, metadata).await;
        // Again: a command may have cached a state while the keys went.
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        forgotten
    }

    /// A command on the aggregate with id `id`, to give metadata, a
    /// business time or the event it compensates before executing it.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Imported { pub name: String }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "lead", events(Imported))]
    /// # pub struct Lead;
    /// # impl Apply<Imported> for Lead { fn apply(&mut self, _: &Imported) {} }
    /// # pollster::block_on(async {
    /// let leads = Repository::<Lead, _>::new(InMemoryStore::new());
    /// let then: Timestamp = "2019-03-01T09:00:00Z".parse()?;
    /// leads.command("12")
    ///     .metadata(Metadata::new().actor("import").reason("CRM migration"))
    ///     .occurred_at(then)
    ///     .execute(|_| Imported { name: "Ada".into() })
    ///     .await?;
    /// let trail = leads.history("12").await?;
    /// assert_eq!(trail[0].occurred_at, then);
    /// assert!(trail[0].recorded_at > then);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn command<I: fmt::Display + ?Sized>(&self, id: &I) -> Command<'_, A, S> {
        Command {
            repository: self,
            stream: self.stream_id(id),
            metadata: Metadata::default(),
            occurred_at: None,
            compensates: None,
            id: None,
            cause: None,
            expected: None,
        }
    }

    /// Loads, runs `decide` on the state, and appends the events it returns
    /// at the loaded version. On a conflict, folds the other writer's events
    /// in and decides again (or, under [`ConflictPolicy::CheckConflicts`],
    /// appends the same events after theirs when the aggregate says they do
    /// not conflict), up to the configured retries.
    ///
    /// # Errors
    ///
    /// [`ExecuteError::Rejected`] with the decision's refusal;
    /// [`ExecuteError::Conflict`] when the retries ran out, with the events
    /// appended meanwhile; [`ExecuteError::Store`] with what loading or
    /// appending failed with.
    pub async fn execute<I, F, D>(
        &self,
        id: &I,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        self.command(id).execute(decide).await
    }

    /// [`execute`](Repository::execute), recording `metadata` (who, why,
    /// correlation) with every new event. A command id in `metadata` makes
    /// the command idempotent, as [`Command::command_id`] does.
    ///
    /// # Errors
    ///
    /// As [`execute`](Repository::execute); when `metadata` names an event
    /// it compensates, also as [`Command::compensating`]; when it carries a
    /// command id, also as [`Command::command_id`].
    pub async fn execute_with<I, F, D>(
        &self,
        id: &I,
        metadata: Metadata,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        self.command(id).metadata(metadata).execute(decide).await
    }

    /// [`execute`](Repository::execute) as a compensating command: every
    /// new event records that it corrects the event `target` of the same
    /// stream. The short form of
    /// `command(id).compensating(target).execute(decide)`; see
    /// [`Command::compensating`].
    ///
    /// # Errors
    ///
    /// [`Error::CompensationTargetNotFound`] (in [`ExecuteError::Store`])
    /// when the aggregate's stream holds no event `target`; otherwise as
    /// [`execute`](Repository::execute).
    pub async fn execute_compensating<I, F, D>(
        &self,
        id: &I,
        target: Uuid,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        self.command(id).compensating(target).execute(decide).await
    }

    /// The one loop of every command: load, decide, append; on a conflict,
    /// catch up and decide again (or, when the aggregate says the events
    /// do not conflict, append the same ones again).
    async fn run<F, D>(
        &self,
        stream: &StreamId,
        metadata: &Metadata,
        occurred_at: Option<Timestamp>,
        expected: Option<u64>,
        mut decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        let _turn = match &self.gates {
            Some(gates) => Some(gates.enter(stream).await),
            None => None,
        };
        let mut folded = self.fold(stream, Target::Latest).await?;
        if let Some(version) = expected.filter(|&v| v != folded.version) {
            // The caller decided on a state that is not the current one:
            // nothing is decided for it, and it is told what it missed.
            let concurrent = if folded.version > version {
                self.read_between(stream, version, Some(folded.version))
                    .await?
            } else {
                Vec::new()
            };
            return Err(ExecuteError::Conflict(Box::new(CommandConflict {
                conflict: Conflict {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(version),
                    actual: folded.version,
                },
                attempts: 0,
                reruns: 0,
                concurrent,
            })));
        }
        if let Some(target) = metadata.compensates {
            // Stored events are never changed or removed, so an event found
            // among the versions the decision sees is still there when the
            // append at `Exact(version)` commits, and on every retry (which
            // only folds more events in): one check, before deciding, is
            // enough.
            if !self.holds_event(stream, target, folded.version).await? {
                return Err(Error::CompensationTargetNotFound {
                    stream: stream.clone(),
                    target,
                }
                .into());
            }
        }
        let mut attempts = 0;
        let mut reruns = 0;
        // The version the decision last ran on, and the events appended
        // after it (kept for `Aggregate::conflicts`): what a kept decision
        // is judged against is everything it did not see.
        let mut decided_at = folded.version;
        let mut theirs: Vec<A::Event> = Vec::new();
        let mut kept: Option<Vec<A::Event>> = None;
        loop {
            attempts += 1;
            let events = if let Some(events) = kept.take() {
                events
            } else {
                if attempts > 1 {
                    reruns += 1;
                }
                decided_at = folded.version;
                theirs.clear();
                decide(&folded.state)
                    .into_events()
                    .map_err(ExecuteError::Rejected)?
            };
            if events.is_empty() {
                return Ok(self.executed(stream, folded, events, None, (attempts, reruns)));
            }
            let new_events = encode::<A>(&events, metadata, occurred_at).map_err(Error::from)?;
            let appended = self
                .store
                .append(stream, ExpectedVersion::Exact(folded.version), new_events)
                .await;
            match appended {
                Ok(appended) => {
                    let tries = (attempts, reruns);
                    return Ok(self.executed(stream, folded, events, Some(&appended), tries));
                }
                // An expected version is never retried: the caller's
                // decision was made on that version, not on a later one.
                Err(Error::Conflict(conflict)) if attempts > self.retries || expected.is_some() => {
                    let concurrent = self
                        .read_between(stream, decided_at, Some(conflict.actual))
                        .await?;
                    return Err(ExecuteError::Conflict(Box::new(CommandConflict {
                        conflict,
                        attempts,
                        reruns,
                        concurrent,
                    })));
                }
                Err(Error::Conflict(conflict)) => {
                    tracing::debug!(%stream, expected = %conflict.expected, actual = conflict.actual, attempts, "conflict, retrying");
                    let check = self.policy == ConflictPolicy::CheckConflicts;
                    self.fold_after(stream, &mut folded, check.then_some(&mut theirs))
                        .await?;
                    if check && !A::conflicts(&events, &theirs) {
                        tracing::debug!(%stream, concurrent = theirs.len(), "no conflict by the aggregate; appending after them");
                        kept = Some(events);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// What a command did to `stream`: with `appended`, its `events` are
    /// folded into the state, which is cached and snapshotted as due; with
    /// nothing appended, the state as the decision saw it. `tries`:
    /// attempts and reruns.
    fn executed(
        &self,
        stream: &StreamId,
        mut folded: Folded<A>,
        events: Vec<A::Event>,
        appended: Option<&AppendResult>,
        (attempts, reruns): (u32, u32),
    ) -> Executed<A> {
        let mut position = None;
        if let Some(appended) = appended.filter(|_| !events.is_empty()) {
            for event in &events {
                folded.state.apply(event);
            }
            let before = folded.version;
            folded.version = appended.version;
            position = appended.last_position;
            let due = A::SNAPSHOT.is_some_and(|p| crossed(before, folded.version, p.every));
            self.after_fold(stream, &folded, due);
        }
        Executed {
            state: folded.state,
            version: folded.version,
            events,
            position,
            attempts,
            reruns,
            repeated: appended.is_some_and(|a| a.repeated),
        }
    }

    /// The stored events of `stream` after version `after`, up to `end`.
    async fn read_between(
        &self,
        stream: &StreamId,
        after: u64,
        end: Option<u64>,
    ) -> Result<Vec<RecordedEvent>> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if end.is_some_and(|end| end < start) {
            return Ok(Vec::new());
        }
        let mut events = self.store.read_stream(stream, ReadRange { start, end });
        let mut read = Vec::new();
        while let Some(event) = next(&mut events).await {
            read.push(event?);
        }
        Ok(read)
    }

    /// Whether the first `version` events of `stream` include the event
    /// with id `event_id`. Reads the stream from its start (ids only, no
    /// payload is decoded) and stops at the event.
    async fn holds_event(&self, stream: &StreamId, event_id: Uuid, version: u64) -> Result<bool> {
        if version == 0 {
            return Ok(false);
        }
        let range = ReadRange {
            start: 1,
            end: Some(version),
        };
        let mut events = self.store.read_stream(stream, range);
        while let Some(event) = next(&mut events).await {
            if event?.event_id == event_id {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Folds `stream` up to `target`, starting from the place the plan
    /// chooses once: the cache, else a usable snapshot, else the first
    /// event.
    async fn fold(&self, stream: &StreamId, target: Target) -> Result<Folded<A>> {
        if let Target::AsOf(at) = target {
            return self.fold_as_of(stream, at).await;
        }
        let end = target.end();
        if let Some((state, version)) = self.cache.as_ref().and_then(|c| c.get(stream, end)) {
            let mut folded = Folded {
                state,
                version,
                origin: Origin::Cache(version),
            };
            self.fold_after_until(stream, &mut folded, end, None)
                .await?;
            return Ok(folded);
        }
        if let Some((state, version)) = self.usable_snapshot(stream, end).await {
            if let Some(folded) = self.fold_from_snapshot(stream, state, version, end).await? {
                return Ok(folded);
            }
            // The stream does not hold the snapshot's own event (an older
            // backup of the events was restored): it cannot be trusted.
            // Replace it: the fold from the first event takes a new one.
            tracing::warn!(%stream, version, "snapshot is past the end of the stream; replacing it");
            if let Err(error) = self.store.delete_snapshot(stream).await {
                tracing::warn!(%stream, %error, "cannot delete the snapshot past the end of the stream");
            }
        }
        let mut folded = Folded {
            state: A::default(),
            version: 0,
            origin: Origin::Events,
        };
        self.fold_after_until(stream, &mut folded, end, None)
            .await?;
        Ok(folded)
    }

    /// Folds into `folded` the events after its version; keeps them in
    /// `theirs` when given.
    async fn fold_after(
        &self,
        stream: &StreamId,
        folded: &mut Folded<A>,
        theirs: Option<&mut Vec<A::Event>>,
    ) -> Result<()> {
        self.fold_after_until(stream, folded, None, theirs).await
    }

    /// Folds into `folded` the events after its version, up to `end`.
    async fn fold_after_until(
        &self,
        stream: &StreamId,
        folded: &mut Folded<A>,
        end: Option<u64>,
        mut theirs: Option<&mut Vec<A::Event>>,
    ) -> Result<()> {
        let Some(start) = folded.version.checked_add(1) else {
            return Ok(());
        };
        if end.is_some_and(|end| end < start) {
            return Ok(());
        }
        let (state, version) = (&mut folded.state, &mut folded.version);
        self.store
            .fold_stream(stream, ReadRange { start, end }, |e| {
                apply_next(stream, state, version, &e, |event| {
                    if let Some(theirs) = theirs.as_deref_mut() {
                        theirs.push(event);
                    }
                })?;
                Ok(ControlFlow::Continue(()))
            })
            .await
    }

    /// Folds from a snapshot at `version`. Its own event is read back first:
    /// `None` when the stream does not hold it.
    async fn fold_from_snapshot(
        &self,
        stream: &StreamId,
        state: A,
        at: u64,
        end: Option<u64>,
    ) -> Result<Option<Folded<A>>> {
        let mut folded = Folded {
            state,
            version: at,
            origin: Origin::Snapshot(at),
        };
        let mut own_event_found = false;
        let (state, version) = (&mut folded.state, &mut folded.version);
        self.store
            .fold_stream(stream, ReadRange { start: at, end }, |e| {
                if !own_event_found {
                    if e.version != at {
                        return Ok(ControlFlow::Break(()));
                    }
                    own_event_found = true;
                    return Ok(ControlFlow::Continue(()));
                }
                apply_next(stream, state, version, &e, drop)?;
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        Ok(own_event_found.then_some(folded))
    }

    /// Folds every event that counts as of `at`, in version order: the
    /// whole stream is read, since a later event may count while an earlier
    /// one does not.
    async fn fold_as_of(&self, stream: &StreamId, at: AsOf) -> Result<Folded<A>> {
        let mut folded = Folded {
            state: A::default(),
            version: 0,
            origin: Origin::Events,
        };
        let mut read = 0;
        let (state, version) = (&mut folded.state, &mut folded.version);
        self.store
            .fold_stream(stream, ReadRange::all(), |e| {
                check_contiguous(stream, read, e.version)?;
                read = e.version;
                if at.counts(e.recorded_at, e.occurred_at) {
                    check_aggregate::<A>(&e)?;
                    e.decode_each::<A::Event>(|event| state.apply(&event))?;
                    *version = e.version;
                }
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        Ok(folded)
    }

    /// The stored snapshot when it is of this aggregate, of the current state
    /// schema version, not past `end`, and decodes. Anything else is
    /// ignored: snapshots never decide an answer.
    async fn usable_snapshot(&self, stream: &StreamId, end: Option<u64>) -> Option<(A, u64)> {
        let policy = A::SNAPSHOT.filter(|_| self.snapshots)?;
        let snapshot = match self.store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot?,
            Err(error) => {
                tracing::warn!(%stream, %error, "cannot read snapshot; replaying events");
                return None;
            }
        };
        if snapshot.aggregate_type != A::NAME
            || snapshot.schema_version != policy.version
            || end.is_some_and(|v| snapshot.version > v)
        {
            return None;
        }
        match A::decode_snapshot(&snapshot.state)? {
            Ok(state) => Some((state, snapshot.version)),
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot does not decode; replaying events");
                None
            }
        }
    }

    /// After a fold to the latest version: queue a snapshot when one is
    /// `due` (never waited for), and remember the state in the cache.
    fn after_fold(&self, stream: &StreamId, folded: &Folded<A>, due: bool) {
        if let Some(policy) = A::SNAPSHOT.filter(|_| self.snapshots && due) {
            match folded.state.encode_snapshot() {
                Some(Ok(state)) => self.store.queue_snapshot(Snapshot {
                    stream_id: stream.clone(),
                    aggregate_type: A::NAME.to_owned(),
                    version: folded.version,
                    schema_version: policy.version,
                    state,
                    taken_at: Timestamp::now(),
                }),
                Some(Err(error)) => tracing::warn!(%stream, %error, "cannot encode snapshot"),
                None => {}
            }
        }
        let unchanged = folded.origin == Origin::Cache(folded.version);
        if let (Some(cache), false) = (&self.cache, unchanged) {
            cache.put(stream, &folded.state, folded.version);
        }
    }
}

/// The most moves one load or command follows.
const MAX_FOLLOWED: u32 = 8;

/// Moved streams (see [`MovedPolicy`]): each load, history and command runs
/// on the stream it is given and, when that one moved and the repository
/// follows moves, again on the stream it moved to.
impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// The stream to go on with after `error`: the one stream a moved
    /// stream moved to, when this repository follows moves.
    fn followed(&self, error: &Error) -> Option<StreamId> {
        match error {
            Error::Moved { to, .. } if self.moved == MovedPolicy::Follow && to.len() == 1 => {
                to.first().cloned()
            }
            _ => None,
        }
    }

    /// Runs `op` on `stream`, following moves; gives the stream it ran on.
    async fn following<T, F, Fut>(&self, mut stream: StreamId, mut op: F) -> Result<(StreamId, T)>
    where
        F: FnMut(StreamId) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut hops = 0;
        loop {
            match op(stream.clone()).await {
                Ok(done) => return Ok((stream, done)),
                Err(error) => match self.followed(&error) {
                    Some(to) if hops < MAX_FOLLOWED => {
                        tracing::debug!(from = %stream, %to, "the stream moved; following it");
                        hops += 1;
                        stream = to;
                    }
                    _ => return Err(error),
                },
            }
        }
    }

    /// [`run`](Repository::run), following moves: nothing is appended to a
    /// moved stream, so the command runs again from the start on the new
    /// one.
    async fn run_following<F, D>(
        &self,
        mut stream: StreamId,
        metadata: &Metadata,
        occurred_at: Option<Timestamp>,
        expected: Option<u64>,
        mut decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        let mut hops = 0;
        loop {
            let ran = self.run(&stream, metadata, occurred_at, expected, &mut decide);
            match ran.await {
                Err(ExecuteError::Store(error)) => match self.followed(&error) {
                    Some(to) if hops < MAX_FOLLOWED => {
                        tracing::debug!(from = %stream, %to, "the stream moved; following it");
                        hops += 1;
                        stream = to;
                    }
                    _ => return self.settle(&stream, metadata, Err(error.into())).await,
                },
                done => return self.settle(&stream, metadata, done).await,
            }
        }
    }
}

/// A command on one aggregate, with what to record with its events: made by
/// [`Repository::command`], run by [`Command::execute`].
#[must_use = "a command does nothing until `execute` is awaited"]
pub struct Command<'r, A, S> {
    repository: &'r Repository<A, S>,
    stream: Result<StreamId>,
    metadata: Metadata,
    occurred_at: Option<Timestamp>,
    compensates: Option<Uuid>,
    id: Option<Uuid>,
    /// The event that caused the command: its id and its correlation.
    cause: Option<(Uuid, Uuid)>,
    /// The only version the decision may run on (an HTTP `If-Match`).
    expected: Option<u64>,
}

impl<A, S> fmt::Debug for Command<'_, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("aggregate", &std::any::type_name::<A>())
            .field("stream", &self.stream)
            .field("metadata", &self.metadata)
            .field("occurred_at", &self.occurred_at)
            .field("compensates", &self.compensates)
            .field("command_id", &self.id)
            .field("cause", &self.cause)
            .field("expected", &self.expected)
            .finish()
    }
}

impl<A, S> Command<'_, A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// Records `metadata` (who, why, correlation) with every new event.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Records that the new events happened at `occurred_at` in the
    /// business's world (an import, a fact reported late); the store still
    /// records when it wrote them.
    pub fn occurred_at(mut self, occurred_at: Timestamp) -> Self {
        self.occurred_at = Some(occurred_at);
        self
    }

    /// Runs the decision only on version `version` of the aggregate: the
    /// version the caller last saw (an HTTP `If-Match`, a form's hidden
    /// field). When the stream is at another version, or another writer
    /// appends first, the command fails with [`ExecuteError::Conflict`]
    /// carrying the events the caller did not see; it is never retried, nor
    /// decided again on the fresh state, whatever the repository's retries
    /// and [`ConflictPolicy`]. Version 0 expects a new aggregate.
    ///
    /// With a [command id](Command::command_id), a repeat of a command
    /// that went through returns its first outcome, even though the version
    /// has moved on since.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "account", events(Deposited))]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// accounts.execute("a-1", |_| Deposited { amount: 5 }).await?;
    /// // Seen at version 1, decided at version 1: appended.
    /// accounts.command("a-1").expect_version(1).execute(|_| Deposited { amount: 1 }).await?;
    /// // Still deciding on version 1, now stale: refused, with what was missed.
    /// let stale = accounts.command("a-1").expect_version(1).execute(|_| Deposited { amount: 2 }).await;
    /// let conflict = stale.unwrap_err().as_command_conflict().cloned().expect("a conflict");
    /// assert_eq!(conflict.conflict.actual, 2);
    /// assert_eq!(conflict.concurrent.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected = Some(version);
        self
    }

    /// Makes this a compensating command: every event it appends corrects
    /// the event with id `target`, an earlier event of the same stream, and
    /// records so as [`Metadata::compensates`]. In whichever order it is
    /// called with [`metadata`](Command::metadata), `target` is kept.
    ///
    /// Before the decision runs, the repository checks that the stream holds
    /// `target`; when it does not (an id never stored, or one of another
    /// stream), the command fails with
    /// [`Error::CompensationTargetNotFound`] (in [`ExecuteError::Store`])
    /// and appends nothing. The same check applies to metadata that names a
    /// target itself (`Metadata::new().compensates(id)` given to
    /// [`execute_with`](Repository::execute_with)). Like an invalid stream
    /// id, it is the framework refusing the request, not the domain
    /// refusing the command, so it is an [`Error`]:
    /// [`ExecuteError::Rejected`] stays the decision's alone.
    ///
    /// A compensating event is an ordinary event of the aggregate: its
    /// `Apply` undoes the effect of the event it corrects, and the state is
    /// the fold of every event, the wrong one and its correction included
    /// (no fold skips anything). What the mark adds is the
    /// [`Trail`]: [`Repository::trail`] shows the history raw, or
    /// effective (without the wrong events and their corrections).
    ///
    /// Finding the target costs a read of the stream's events up to it (no
    /// payload is decoded); an event may be compensated more than once, and
    /// a compensation may itself be compensated (see [`Trail`]).
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct DepositReversed { pub amount: u64 }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "account", events(Deposited, DepositReversed))]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # impl Apply<DepositReversed> for Account { fn apply(&mut self, e: &DepositReversed) { self.balance -= e.amount } }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// accounts.execute("a-1", |_| Deposited { amount: 5 }).await?;
    /// accounts.execute("a-1", |_| Deposited { amount: 500 }).await?;   // a typo
    /// let wrong = accounts.history("a-1").await?[1].event_id;
    ///
    /// accounts.command("a-1")
    ///     .metadata(Metadata::new().actor("clerk").reason("typed 500 for 50"))
    ///     .compensating(wrong)
    ///     .execute(|_| DepositReversed { amount: 500 })
    ///     .await?;
    /// let now = accounts.load("a-1").await?;
    /// assert_eq!((now.balance, now.version), (5, 3));
    /// assert_eq!(accounts.history("a-1").await?[2].metadata.compensates, Some(wrong));
    ///
    /// // Only an event of this stream can be compensated.
    /// let refused = accounts
    ///     .execute_compensating("a-2", wrong, |_| DepositReversed { amount: 500 })
    ///     .await;
    /// assert!(matches!(
    ///     refused,
    ///     Err(ExecuteError::Store(es_core::Error::CompensationTargetNotFound { .. }))
    /// ));
    /// assert!(!accounts.load("a-2").await?.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn compensating(mut self, target: Uuid) -> Self {
        self.compensates = Some(target);
        self
    }

    /// Makes the command idempotent: `id` identifies this execution, and
    /// executing a command with the same id again, on the same aggregate,
    /// returns the first execution's outcome (with
    /// [`Executed::repeated`] set) and appends nothing, however the first
    /// answer was lost (a timeout, a crash after the commit). Recorded as
    /// [`Metadata::command_id`]; in whichever order it is called with
    /// [`metadata`](Command::metadata), `id` is kept. With no correlation
    /// given, the command id is also the correlation id of its events.
    ///
    /// How: the command's events get ids derived from `id`
    /// ([`audit::command_event_id`](crate::audit::command_event_id)), so the
    /// store refuses to hold them twice, even from two processes at once.
    /// The first execution costs nothing more than the longer ids. When a
    /// later one's outcome says the command may have run before (its
    /// append is a repeat or refused for those ids, the decision refuses,
    /// returns no event, or conflicts to the end), the repository looks the
    /// first event up by id ([`EventStore::find_event`]) and answers with
    /// the stored events; no fold is relied on, so a snapshot or the cache
    /// covering them changes nothing.
    ///
    /// A command id the store holds for a command of another name
    /// ([`Metadata::command`]), or for events of another stream, fails with
    /// [`Error::CommandIdReused`] and appends nothing. A command whose
    /// decision refused or returned no event recorded nothing: its id is
    /// free, and running it again decides again.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// use es_core::Uuid;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "account", events(Deposited))]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// let id = Uuid::now_v7();          // chosen by the client, sent with every retry
    /// let deposit = || accounts.command("a-1").command_id(id).execute(|_| Deposited { amount: 5 });
    ///
    /// let first = deposit().await?;
    /// let again = deposit().await?;      // the answer to the first was lost, say
    /// assert!(!first.repeated && again.repeated);
    /// assert_eq!((again.version, again.position), (first.version, first.position));
    /// assert_eq!(accounts.load("a-1").await?.balance, 5);   // deposited once
    ///
    /// // The same id on another account is not a repeat: refused.
    /// let elsewhere = accounts.command("a-2").command_id(id).execute(|_| Deposited { amount: 5 }).await;
    /// assert!(matches!(elsewhere, Err(ExecuteError::Store(es_core::Error::CommandIdReused { .. }))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn command_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Records that this command runs because of the event `cause` (a
    /// process manager, a projection reacting to it): every new event
    /// names it as [`Metadata::causation_id`], and carries its
    /// correlation ([`Envelope::correlation`]) as
    /// [`Metadata::correlation_id`], so the whole business transaction
    /// can be read back across aggregates with
    /// [`audit::trail_of`](crate::audit::trail_of). In whichever order it
    /// is called with [`metadata`](Command::metadata), the cause is kept.
    /// [`Metadata::caused_by`] does the same on a metadata value.
    ///
    /// A reaction that may run more than once for one event (a projection
    /// replayed, a process manager restarted before its checkpoint) should
    /// also give a [`command_id`](Command::command_id) derived from the
    /// event (a UUID v5 of its id, in a namespace of the reaction's own):
    /// the second run is then a repeat.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// use es_core::Uuid;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Placed;
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "order", events(Placed))]
    /// # pub struct Order;
    /// # impl Apply<Placed> for Order { fn apply(&mut self, _: &Placed) {} }
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Invoiced;
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "invoice", events(Invoiced))]
    /// # pub struct Invoice;
    /// # impl Apply<Invoiced> for Invoice { fn apply(&mut self, _: &Invoiced) {} }
    /// # pollster::block_on(async {
    /// # let store = InMemoryStore::new();
    /// let orders = Repository::<Order, _>::new(store.clone());
    /// let invoices = Repository::<Invoice, _>::new(store.clone());
    /// orders.execute("o-1", |_| Placed).await?;
    /// let placed = &orders.history("o-1").await?[0];
    ///
    /// const INVOICING: Uuid = Uuid::from_u128(0x5f1e_0c1b_7e44_4a47_9a5b_44b3_8f16_02d4);
    /// invoices.command("i-1")
    ///     .caused_by(placed)
    ///     .command_id(Uuid::new_v5(&INVOICING, placed.event_id.as_bytes()))
    ///     .execute(|_| Invoiced)
    ///     .await?;
    /// let invoiced = &invoices.history("i-1").await?[0];
    /// assert_eq!(invoiced.metadata.causation_id, Some(placed.event_id));
    /// assert_eq!(invoiced.correlation(), placed.correlation());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn caused_by<E>(mut self, cause: &Envelope<E>) -> Self {
        self.cause = Some((cause.event_id, cause.correlation()));
        self
    }

    /// Loads, decides, appends: see [`Repository::execute`].
    ///
    /// # Errors
    ///
    /// As [`Repository::execute`]; for a compensating command, also
    /// [`Error::CompensationTargetNotFound`] (see
    /// [`compensating`](Command::compensating)); for a command with a
    /// command id, also [`Error::CommandIdReused`] (see
    /// [`command_id`](Command::command_id)).
    pub async fn execute<F, D>(self, decide: F) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        let stream = self.stream?;
        let mut metadata = self.metadata;
        if let Some(target) = self.compensates {
            metadata.compensates = Some(target);
        }
        if let Some(id) = self.id {
            metadata.command_id = Some(id);
        }
        if let Some((event, correlation)) = self.cause {
            metadata.causation_id = Some(event);
            metadata.correlation_id = Some(correlation);
        }
        self.repository
            .run_following(stream, &metadata, self.occurred_at, self.expected, decide)
            .await
    }
}

/// Idempotent commands (see [`Command::command_id`]): the lookup of an
/// earlier execution, and its outcome.
impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// The outcome of the command that `metadata`'s command id names on the
    /// aggregate `id`, when it was executed before (it appended events):
    /// what a repeat of it returns, with [`Executed::repeated`] set. `None`
    /// when the store holds no event of that command id, or `metadata`
    /// names none.
    ///
    /// A command runs this lookup itself when needed; this is for a caller
    /// that must know before it prepares the command (whose preparation
    /// reads state that the first execution changed, say).
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// use es_core::Uuid;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Aggregate, Default, Debug)]
    /// # #[aggregate(name = "account", events(Deposited))]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// let meta = Metadata::new().command("deposit").command_id(Uuid::now_v7());
    /// assert!(accounts.earlier_outcome("a-1", &meta).await?.is_none());
    /// accounts.execute_with("a-1", meta.clone(), |_| Deposited { amount: 5 }).await?;
    /// let done = accounts.earlier_outcome("a-1", &meta).await?.expect("executed");
    /// assert!(done.repeated);
    /// assert_eq!((done.version, done.state.balance), (1, 5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::CommandIdReused`] when the command id names events of
    /// another stream or of a command of another name; as
    /// [`load_at`](Repository::load_at) otherwise.
    pub async fn earlier_outcome<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        metadata: &Metadata,
    ) -> Result<Option<Executed<A>>> {
        let stream = self.stream_id(id)?;
        match self.earlier(&stream, metadata).await? {
            Some(earlier) => Ok(Some(self.repeat(&stream, earlier).await?)),
            None => Ok(None),
        }
    }

    /// The outcome of a command, checked against an earlier execution of
    /// its command id when it may hide one: a repeated append, a refused
    /// one (a duplicate id, a conflict to the end), a refused decision,
    /// or a decision with no event. Any other outcome, and any outcome of
    /// a command without a command id, is returned as it is.
    async fn settle<E>(
        &self,
        stream: &StreamId,
        metadata: &Metadata,
        outcome: Result<Executed<A>, ExecuteError<E>>,
    ) -> Result<Executed<A>, ExecuteError<E>> {
        if metadata.command_id.is_none() {
            return outcome;
        }
        let maybe_repeat = match &outcome {
            Ok(done) => done.repeated || done.events.is_empty(),
            Err(ExecuteError::Rejected(_) | ExecuteError::Conflict(_)) => true,
            Err(ExecuteError::Store(error)) => {
                matches!(error, Error::DuplicateEvent { .. } | Error::Conflict(_))
            }
        };
        if !maybe_repeat {
            return outcome;
        }
        match self.earlier(stream, metadata).await? {
            Some(earlier) => Ok(self.repeat(stream, earlier).await?),
            None => outcome,
        }
    }

    /// The stored events of the earlier execution of `metadata`'s command
    /// id on `stream`, in order; `None` when there was none. Its first
    /// event is found by id; the others follow it in the stream, each with
    /// the next derived id.
    async fn earlier(
        &self,
        stream: &StreamId,
        metadata: &Metadata,
    ) -> Result<Option<Vec<RecordedEvent>>> {
        let Some(command_id) = metadata.command_id else {
            return Ok(None);
        };
        let Some(first) = self
            .store
            .find_event(command_event_id(command_id, 0))
            .await?
        else {
            return Ok(None);
        };
        if first.stream_id != *stream
            || first.metadata.command_id != Some(command_id)
            || first.metadata.command != metadata.command
        {
            return Err(Error::CommandIdReused {
                command_id,
                stream: stream.clone(),
                command: metadata.command.clone(),
                used_in: first.stream_id,
                used_by: first.metadata.command,
            });
        }
        let range = ReadRange {
            start: first.version.saturating_add(1),
            end: None,
        };
        let mut rest = self.store.read_stream(stream, range);
        let mut events = vec![first];
        for index in 1..=u32::MAX {
            let Some(event) = next(&mut rest).await else {
                break;
            };
            let event = event?;
            if event.event_id != command_event_id(command_id, index) {
                break;
            }
            events.push(event);
        }
        Ok(Some(events))
    }

    /// The outcome of the earlier execution whose stored events are
    /// `earlier` (not empty): those events decoded, and the state at the
    /// last of them.
    async fn repeat(&self, stream: &StreamId, earlier: Vec<RecordedEvent>) -> Result<Executed<A>> {
        let (version, position) = earlier
            .last()
            .map_or((0, None), |e| (e.version, Some(e.position)));
        let mut events = Vec::with_capacity(earlier.len());
        for event in &earlier {
            let event = event.as_event_ref();
            check_aggregate::<A>(&event)?;
            event.decode_each::<A::Event>(|e| events.push(e))?;
        }
        let folded = self.fold(stream, Target::Version(version)).await?;
        if folded.version != version {
            return Err(Error::Corrupt {
                detail: format!(
                    "stream `{stream}` holds the event at version {version} but folds to version {}",
                    folded.version
                ),
            });
        }
        Ok(Executed {
            state: folded.state,
            version,
            events,
            position,
            attempts: 0,
            reruns: 0,
            repeated: true,
        })
    }
}

/// The new events of one attempt of a command, with their ids and
/// correlation: ids derived from the command id when it has one
/// ([`command_event_id`]), fresh UUID v7 ids otherwise; a command that
/// names no correlation gets its command id, or else the first event's id
/// (which that event does not record: an event without a correlation id
/// is its transaction's root).
fn encode<A: Aggregate>(
    events: &[A::Event],
    metadata: &Metadata,
    occurred_at: Option<Timestamp>,
) -> Result<Vec<NewEvent>, crate::EncodeError> {
    let mut encoded: Vec<NewEvent> = Vec::with_capacity(events.len());
    for (index, event) in (0..=u32::MAX).zip(events) {
        let mut new = NewEvent::encode(A::NAME, event, metadata.clone())?;
        if let Some(command_id) = metadata.command_id {
            new.event_id = command_event_id(command_id, index);
        }
        if new.metadata.correlation_id.is_none() {
            new.metadata.correlation_id = metadata
                .command_id
                .or_else(|| encoded.first().map(|root| root.event_id));
        }
        new.occurred_at = occurred_at;
        encoded.push(new);
    }
    Ok(encoded)
}

/// Checks that `e` is the next event of a stream of this aggregate, decodes
/// it (through the raw upcasters: none, one or several events) and folds
/// each into `state`, then hands it to `seen`: the one step of every fold.
fn apply_next<A: Aggregate>(
    stream: &StreamId,
    state: &mut A,
    version: &mut u64,
    e: &EventRef<'_>,
    mut seen: impl FnMut(A::Event),
) -> Result<()> {
    check_contiguous(stream, *version, e.version)?;
    check_aggregate::<A>(e)?;
    e.decode_each::<A::Event>(|event| {
        state.apply(&event);
        seen(event);
    })?;
    *version = e.version;
    Ok(())
}

/// A stream whose events belong to another aggregate type (two names that
/// collide as `a-b` + `c` and `a` + `b-c`) is never folded as this one; nor
/// is the marker of a moved stream ([`Error::Moved`]), checked by name
/// before anything decodes it.
fn check_aggregate<A: Aggregate>(event: &EventRef<'_>) -> Result<()> {
    check_moved(event)?;
    if event.aggregate_type == A::NAME {
        Ok(())
    } else {
        Err(Error::AggregateMismatch {
            stream: event.stream_id.clone(),
            requested: A::NAME.to_owned(),
            actual: event.aggregate_type.to_owned(),
        })
    }
}

pub(crate) fn check_contiguous(stream: &StreamId, previous: u64, version: u64) -> Result<()> {
    if previous.checked_add(1) == Some(version) {
        Ok(())
    } else {
        Err(Error::Corrupt {
            detail: format!("stream `{stream}` jumps from version {previous} to {version}"),
        })
    }
}
