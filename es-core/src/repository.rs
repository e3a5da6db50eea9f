//! [`Repository`]: load an aggregate, decide, append with optimistic concurrency.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{ControlFlow, Deref, DerefMut};

use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::cache::StateCache;
use crate::envelope::{Envelope, EventRef, NewEvent};
use crate::error::{Conflict, Error, Result};
use crate::event::IntoEvents;
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::{EventStore, next};
use crate::time::Timestamp;
use crate::version::{ExpectedVersion, ReadRange};

/// What to do when another writer appended to the stream between our load
/// and our append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Fold the other writer's events into the state and run the decision
    /// again on it (the default, always correct).
    #[default]
    Rerun,
    /// Ask [`Aggregate::conflicts`] whether our events really conflict with
    /// theirs; when they do not, append ours after theirs without running the
    /// decision again (the "advanced optimistic concurrency" of the seeds).
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
    /// of the previous one without running the decision again.
    pub attempts: u32,
}

/// Why [`Repository::execute`] did not append.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision refused the command.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Loading, appending or decoding failed; a [`Conflict`] here means the
    /// retries ran out.
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E> ExecuteError<E> {
    /// The conflict, when retries ran out on one.
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            ExecuteError::Store(Error::Conflict(c)) => Some(c),
            _ => None,
        }
    }

    /// The rejection, when the decision refused the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            ExecuteError::Rejected(e) => Some(e),
            ExecuteError::Store(_) => None,
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
pub struct Repository<A, S> {
    store: S,
    retries: u32,
    policy: ConflictPolicy,
    snapshots: bool,
    cache: Option<Arc<StateCache<A>>>,
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

/// The folded state plus the snapshot it started from.
struct Folded<A> {
    state: A,
    version: u64,
    snapshot_version: Option<u64>,
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

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate with id `id`.
    pub fn stream_id<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<StreamId> {
        Ok(StreamId::for_aggregate(A::NAME, &id.to_string())?)
    }

    /// The current state and version (the default state at version 0 when
    /// the stream does not exist).
    pub async fn load<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let folded = self.fold(&stream, None, None).await?;
        self.maybe_snapshot(
            &stream,
            &folded.state,
            folded.version,
            folded.snapshot_version,
        )
        .await;
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// The state as it was at `version` (the current state when the stream is shorter).
    pub async fn load_at<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        version: u64,
    ) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let folded = self.fold(&stream, Some(version), None).await?;
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// The state as it was at time `at`: every event recorded at or before it.
    pub async fn load_as_of<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        at: Timestamp,
    ) -> Result<Loaded<A>> {
        let stream = self.stream_id(id)?;
        let folded = self.fold(&stream, None, Some(at)).await?;
        Ok(Loaded {
            state: folded.state,
            version: folded.version,
        })
    }

    /// Every event of the aggregate with its envelope: who, when, what, why.
    pub async fn history<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
    ) -> Result<Vec<Envelope<A::Event>>> {
        let stream = self.stream_id(id)?;
        let mut events = self.store.read_stream(&stream, ReadRange::all());
        let mut trail = Vec::new();
        while let Some(recorded) = next(&mut events).await {
            let recorded = recorded?;
            check_aggregate::<A>(&EventRef::from(&recorded))?;
            trail.push(recorded.into_envelope()?);
        }
        Ok(trail)
    }

    /// Loads, runs `decide` on the state, and appends the events it returns
    /// at the loaded version. On a conflict, folds the other writer's events
    /// in and decides again, up to the configured retries.
    pub async fn execute<I, F, D>(
        &self,
        id: &I,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A::Event>,
    {
        self.execute_with(id, Metadata::default(), decide).await
    }

    /// [`execute`](Repository::execute), recording `metadata` (who, why,
    /// correlation) with every new event.
    pub async fn execute_with<I, F, D>(
        &self,
        id: &I,
        metadata: Metadata,
        mut decide: F,
    ) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A::Event>,
    {
        let stream = self.stream_id(id)?;
        let Folded {
            mut state,
            mut version,
            snapshot_version,
        } = self.fold(&stream, None, None).await?;
        let mut attempts = 0;
        let mut kept: Option<Vec<A::Event>> = None;
        loop {
            attempts += 1;
            let events = match kept.take() {
                Some(events) => events,
                None => decide(&state)
                    .into_events()
                    .map_err(ExecuteError::Rejected)?,
            };
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    version,
                    events,
                    position: None,
                    attempts,
                });
            }
            let new_events = events
                .iter()
                .map(|e| NewEvent::encode(A::NAME, e, metadata.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::from)?;
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(version), new_events)
                .await
            {
                Ok(appended) => {
                    for event in &events {
                        state.apply(event);
                    }
                    let before = version;
                    version = appended.version;
                    let base = snapshot_version
                        .unwrap_or(0)
                        .max(snapshot_floor::<A>(before));
                    self.maybe_snapshot(&stream, &state, version, Some(base))
                        .await;
                    self.remember(&stream, &state, version);
                    return Ok(Executed {
                        state,
                        version,
                        events,
                        position: appended.last_position,
                        attempts,
                    });
                }
                Err(Error::Conflict(conflict)) if attempts <= self.retries => {
                    let theirs = self.catch_up(&stream, &mut state, &mut version).await?;
                    tracing::debug!(%stream, expected = %conflict.expected, actual = conflict.actual, attempts, "conflict, retrying");
                    if self.policy == ConflictPolicy::CheckConflicts
                        && !A::conflicts(&events, &theirs)
                    {
                        kept = Some(events);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Folds the events appended after `version` into `state`; returns them
    /// when the conflict policy needs to compare them with ours.
    async fn catch_up(
        &self,
        stream: &StreamId,
        state: &mut A,
        version: &mut u64,
    ) -> Result<Vec<A::Event>> {
        let mut theirs = Vec::new();
        let keep = (self.policy == ConflictPolicy::CheckConflicts).then_some(&mut theirs);
        self.fold_after(stream, state, version, keep).await?;
        Ok(theirs)
    }

    /// Folds the stream from its latest usable snapshot (unless reading back
    /// in time), one event at a time.
    async fn fold(
        &self,
        stream: &StreamId,
        up_to: Option<u64>,
        as_of: Option<Timestamp>,
    ) -> Result<Folded<A>> {
        let current = up_to.is_none() && as_of.is_none();
        if current && let Some((state, version)) = self.cache.as_ref().and_then(|c| c.get(stream)) {
            let mut folded = Folded {
                state,
                version,
                snapshot_version: None,
            };
            self.fold_after(stream, &mut folded.state, &mut folded.version, None)
                .await?;
            // Snapshots are taken as the stream crosses their interval.
            folded.snapshot_version = Some(snapshot_floor::<A>(folded.version));
            self.remember(stream, &folded.state, folded.version);
            return Ok(folded);
        }
        let folded = self.fold_uncached(stream, up_to, as_of).await?;
        if current {
            self.remember(stream, &folded.state, folded.version);
        }
        Ok(folded)
    }

    fn remember(&self, stream: &StreamId, state: &A, version: u64) {
        if let Some(cache) = &self.cache {
            cache.put(stream, state, version);
        }
    }

    /// Folds into `state` the events after `version`, keeping them in
    /// `theirs` when given.
    async fn fold_after(
        &self,
        stream: &StreamId,
        state: &mut A,
        version: &mut u64,
        mut theirs: Option<&mut Vec<A::Event>>,
    ) -> Result<()> {
        let range = ReadRange::starting_at(*version + 1);
        self.store
            .fold_stream(stream, range, |e| {
                let event = apply_next(stream, state, version, &e)?;
                if let Some(theirs) = theirs.as_deref_mut() {
                    theirs.push(event);
                }
                Ok(ControlFlow::Continue(()))
            })
            .await
    }

    /// Folds from the latest usable snapshot (unless reading back in time).
    async fn fold_uncached(
        &self,
        stream: &StreamId,
        up_to: Option<u64>,
        as_of: Option<Timestamp>,
    ) -> Result<Folded<A>> {
        if as_of.is_none()
            && let Some(start) = self.usable_snapshot(stream, up_to).await
        {
            let version = start.1;
            if let Some(folded) = self.fold_from(stream, Some(start), up_to, None).await? {
                return Ok(folded);
            }
            tracing::warn!(%stream, version, "snapshot is past the end of the stream; replaying events");
        }
        let folded = self.fold_from(stream, None, up_to, as_of).await?;
        folded.ok_or_else(|| Error::Corrupt {
            detail: format!("stream `{stream}` cannot be folded"),
        })
    }

    /// Folds from `start` (a snapshot's state and version) or from the
    /// beginning. The snapshot's own event is read back first: a snapshot
    /// whose event the stream does not hold is not trusted (`Ok(None)`).
    async fn fold_from(
        &self,
        stream: &StreamId,
        start: Option<(A, u64)>,
        up_to: Option<u64>,
        as_of: Option<Timestamp>,
    ) -> Result<Option<Folded<A>>> {
        let snapshot_version = start.as_ref().map(|(_, v)| *v);
        let (state, version) = start.unwrap_or_default();
        let mut folded = Folded {
            state,
            version,
            snapshot_version,
        };
        let range = ReadRange {
            start: snapshot_version.unwrap_or(1),
            end: up_to,
        };
        // With a snapshot, its own event is read first: when the stream
        // does not hold it, the snapshot is not trusted.
        let mut own_event_missing = snapshot_version.is_some();
        self.store
            .fold_stream(stream, range, |e| {
                if own_event_missing {
                    if Some(e.version) != snapshot_version {
                        return Ok(ControlFlow::Break(()));
                    }
                    own_event_missing = false;
                    return Ok(ControlFlow::Continue(()));
                }
                if as_of.is_some_and(|at| e.recorded_at > at) {
                    check_contiguous(stream, folded.version, e.version)?;
                    return Ok(ControlFlow::Break(()));
                }
                apply_next(stream, &mut folded.state, &mut folded.version, &e)?;
                Ok(ControlFlow::Continue(()))
            })
            .await?;
        if own_event_missing {
            return Ok(None);
        }
        Ok(Some(folded))
    }

    /// The stored snapshot when it is of this aggregate, of the current state
    /// schema version, not past `up_to`, and decodes. Anything else is
    /// ignored: snapshots never decide an answer.
    async fn usable_snapshot(&self, stream: &StreamId, up_to: Option<u64>) -> Option<(A, u64)> {
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
            || up_to.is_some_and(|v| snapshot.version > v)
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

    /// Saves a snapshot when the aggregate takes them and `version` is at
    /// least `every` past the last one. Failures are logged, never returned:
    /// the events are already safe.
    async fn maybe_snapshot(&self, stream: &StreamId, state: &A, version: u64, base: Option<u64>) {
        let Some(policy) = A::SNAPSHOT.filter(|_| self.snapshots) else {
            return;
        };
        if version < base.unwrap_or(0) + policy.every.max(1) {
            return;
        }
        let state = match state.encode_snapshot() {
            Some(Ok(bytes)) => bytes,
            Some(Err(error)) => {
                tracing::warn!(%stream, %error, "cannot encode snapshot");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot {
            stream_id: stream.clone(),
            aggregate_type: A::NAME.to_owned(),
            version,
            schema_version: policy.version,
            state,
            taken_at: Timestamp::now(),
        };
        if let Err(error) = self.store.save_snapshot(snapshot).await {
            tracing::warn!(%stream, %error, "cannot save snapshot");
        }
    }
}

/// The last multiple of the snapshot interval at or below `version`.
fn snapshot_floor<A: Aggregate>(version: u64) -> u64 {
    A::SNAPSHOT.map_or(0, |p| version - version % p.every.max(1))
}

/// Checks that `e` is the next event of a stream of this aggregate, decodes
/// it and folds it into `state`: the one step of every fold.
fn apply_next<A: Aggregate>(
    stream: &StreamId,
    state: &mut A,
    version: &mut u64,
    e: &EventRef<'_>,
) -> Result<A::Event> {
    check_contiguous(stream, *version, e.version)?;
    check_aggregate::<A>(e)?;
    let event = e.decode::<A::Event>()?;
    state.apply(&event);
    *version = e.version;
    Ok(event)
}

/// A stream whose events belong to another aggregate type (two names that
/// collide as `a-b` + `c` and `a` + `b-c`) is never folded as this one.
fn check_aggregate<A: Aggregate>(event: &EventRef<'_>) -> Result<()> {
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

fn check_contiguous(stream: &StreamId, previous: u64, version: u64) -> Result<()> {
    if version == previous + 1 {
        Ok(())
    } else {
        Err(Error::Corrupt {
            detail: format!("stream `{stream}` jumps from version {previous} to {version}"),
        })
    }
}
