//! The repository for programs without an async executor: command-line
//! tools, scripts, embedded programs.
//!
//! The same [`Repository`](crate::Repository), the same stores and types;
//! each call blocks the current thread until it completes. Do not call these
//! from inside an async task: use the async repository there.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::blocking;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Noted { pub text: String }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(events(Noted))]
//! # pub struct Notebook { notes: usize }
//! # impl Apply<Noted> for Notebook { fn apply(&mut self, _: &Noted) { self.notes += 1 } }
//!
//! let notebooks = blocking::Repository::<Notebook, _>::new(InMemoryStore::new());
//! notebooks.execute("n-1", |_| Noted { text: "hello".into() })?;
//! assert_eq!(notebooks.load("n-1")?.notes, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::audit::CorrelationTrail;
use crate::diff::StateDiff;
use crate::envelope::{Decoded, Envelope};
use crate::error::Result;
use crate::event::IntoEvents;
use crate::metadata::Metadata;
use crate::repository::{ConflictPolicy, ExecuteError, Executed, Loaded};
use crate::snapshot::SnapshotStore;
use crate::store::EventStore;
use crate::time::{AsOf, Timestamp};
use crate::trail::Trail;
use crate::version::ReadRange;

/// Runs a future to completion on the current thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// See [`audit::trail_of`](crate::audit::trail_of).
///
/// ```
/// # use es_core::prelude::*;
/// # use es_core::blocking;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Noted { pub text: String }
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(events(Noted))]
/// # pub struct Notebook;
/// # impl Apply<Noted> for Notebook { fn apply(&mut self, _: &Noted) {} }
/// let store = InMemoryStore::new();
/// let notebooks = blocking::Repository::<Notebook, _>::new(store.clone());
/// let request = es_core::Uuid::now_v7();
/// notebooks.command("n-1").command_id(request).execute(|_| Noted { text: "hello".into() })?;
/// let first = notebooks.history("n-1")?.remove(0);
/// notebooks.command("n-2").caused_by(&first).execute(|_| Noted { text: "hi back".into() })?;
///
/// let trail = blocking::trail_of(&store, request)?;
/// assert_eq!(trail.len(), 2);
/// assert_eq!(trail.entries()[1].parent_position(), Some(first.position));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`audit::trail_of`](crate::audit::trail_of).
pub fn trail_of<S: EventStore>(store: &S, correlation_id: Uuid) -> Result<CorrelationTrail> {
    block_on(crate::audit::trail_of(store, correlation_id))
}

/// [`crate::Repository`] with blocking methods.
#[derive(Debug, Clone)]
pub struct Repository<A, S> {
    inner: crate::Repository<A, S>,
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// A repository over `store`.
    pub fn new(store: S) -> Self {
        Repository {
            inner: crate::Repository::new(store),
        }
    }

    /// Sets the retries on conflict.
    #[must_use]
    pub fn with_retries(self, retries: u32) -> Self {
        Repository {
            inner: self.inner.with_retries(retries),
        }
    }

    /// Sets the [`ConflictPolicy`].
    #[must_use]
    pub fn with_conflict_policy(self, policy: ConflictPolicy) -> Self {
        Repository {
            inner: self.inner.with_conflict_policy(policy),
        }
    }

    /// Whether to use snapshots; see [`crate::Repository::with_snapshots`].
    #[must_use]
    pub fn with_snapshots(self, snapshots: bool) -> Self {
        Repository {
            inner: self.inner.with_snapshots(snapshots),
        }
    }

    /// Whether commands on one aggregate run one at a time; see
    /// [`crate::Repository::with_serialized_commands`].
    #[must_use]
    pub fn with_serialized_commands(self, serialized: bool) -> Self {
        Repository {
            inner: self.inner.with_serialized_commands(serialized),
        }
    }

    /// What to do with moved streams; see [`crate::Repository::with_moved`].
    #[must_use]
    pub fn with_moved(self, policy: crate::evolution::MovedPolicy) -> Self {
        Repository {
            inner: self.inner.with_moved(policy),
        }
    }

    /// Keeps recent states in memory; see [`crate::Repository::with_cache`].
    #[must_use]
    pub fn with_cache(self, capacity: usize) -> Self
    where
        A: Clone,
    {
        Repository {
            inner: self.inner.with_cache(capacity),
        }
    }

    /// The async repository underneath.
    pub fn as_async(&self) -> &crate::Repository<A, S> {
        &self.inner
    }

    /// See [`crate::Repository::load`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::load`].
    pub fn load<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<Loaded<A>> {
        block_on(self.inner.load(id))
    }

    /// See [`crate::Repository::load_at`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::load_at`].
    pub fn load_at<I: fmt::Display + ?Sized>(&self, id: &I, version: u64) -> Result<Loaded<A>> {
        block_on(self.inner.load_at(id, version))
    }

    /// See [`crate::Repository::load_as_of`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::load_as_of`].
    pub fn load_as_of<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        at: impl Into<AsOf>,
    ) -> Result<Loaded<A>> {
        block_on(self.inner.load_as_of(id, at))
    }

    /// See [`crate::Repository::history`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::history`].
    pub fn history<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
    ) -> Result<Vec<Envelope<Decoded<A::Event>>>> {
        block_on(self.inner.history(id))
    }

    /// See [`crate::Repository::trail`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::history`].
    pub fn trail<I: fmt::Display + ?Sized>(&self, id: &I) -> Result<Trail<Decoded<A::Event>>> {
        block_on(self.inner.trail(id))
    }

    /// See [`crate::Repository::forget`].
    ///
    /// # Errors
    ///
    /// As [`crate::privacy::Forget::forget`].
    pub fn forget(&self, subject: &str) -> Result<crate::privacy::Forgotten>
    where
        S: crate::privacy::Forget,
    {
        block_on(self.inner.forget(subject))
    }

    /// See [`crate::Repository::forget_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::privacy::Forget::forget`].
    pub fn forget_with(
        &self,
        subject: &str,
        metadata: Metadata,
    ) -> Result<crate::privacy::Forgotten>
    where
        S: crate::privacy::Forget,
    {
        block_on(self.inner.forget_with(subject, metadata))
    }

    /// See [`crate::Repository::earlier_outcome`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::earlier_outcome`].
    pub fn earlier_outcome<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        metadata: &Metadata,
    ) -> Result<Option<Executed<A>>> {
        block_on(self.inner.earlier_outcome(id, metadata))
    }

    /// See [`crate::Repository::history_between`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::history`].
    pub fn history_between<I: fmt::Display + ?Sized>(
        &self,
        id: &I,
        versions: impl Into<ReadRange>,
    ) -> Result<Vec<Envelope<Decoded<A::Event>>>> {
        block_on(self.inner.history_between(id, versions))
    }

    /// See [`crate::Repository::diff`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::diff`].
    pub fn diff<I: fmt::Display + ?Sized>(&self, id: &I, from: u64, to: u64) -> Result<StateDiff>
    where
        A: serde::Serialize,
    {
        block_on(self.inner.diff(id, from, to))
    }

    /// See [`crate::Repository::command`].
    pub fn command<I: fmt::Display + ?Sized>(&self, id: &I) -> Command<'_, A, S> {
        Command {
            inner: self.inner.command(id),
        }
    }

    /// See [`crate::Repository::execute`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute`].
    pub fn execute<I, F, D>(&self, id: &I, decide: F) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        block_on(self.inner.execute(id, decide))
    }

    /// See [`crate::Repository::execute_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute`].
    pub fn execute_with<I, F, D>(
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
        block_on(self.inner.execute_with(id, metadata, decide))
    }

    /// See [`crate::Repository::execute_compensating`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute_compensating`].
    pub fn execute_compensating<I, F, D>(
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
        block_on(self.inner.execute_compensating(id, target, decide))
    }

    /// See [`crate::Repository::execute_many`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute_many`].
    pub fn execute_many<I, F, D, E, const N: usize>(
        &self,
        ids: [&I; N],
        decide: F,
    ) -> Result<[Executed<A>; N], ExecuteError<E>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut([&A; N]) -> Result<[D; N], E>,
        D: IntoEvents<A, Error = Infallible>,
    {
        block_on(self.inner.execute_many(ids, decide))
    }

    /// See [`crate::Repository::execute_many_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute_many_with`].
    pub fn execute_many_with<I, F, D, E, const N: usize>(
        &self,
        ids: [&I; N],
        metadata: Metadata,
        decide: F,
    ) -> Result<[Executed<A>; N], ExecuteError<E>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut([&A; N]) -> Result<[D; N], E>,
        D: IntoEvents<A, Error = Infallible>,
    {
        block_on(self.inner.execute_many_with(ids, metadata, decide))
    }

    /// See [`crate::Repository::execute_pair`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute_many`].
    pub fn execute_pair<B, I, J, F, DA, DB, E>(
        &self,
        id: &I,
        other_id: &J,
        decide: F,
    ) -> Result<(Executed<A>, Executed<B>), ExecuteError<E>>
    where
        B: Aggregate,
        S: Clone,
        I: fmt::Display + ?Sized,
        J: fmt::Display + ?Sized,
        F: FnMut(&A, &B) -> Result<(DA, DB), E>,
        DA: IntoEvents<A, Error = Infallible>,
        DB: IntoEvents<B, Error = Infallible>,
    {
        block_on(self.inner.execute_pair(id, other_id, decide))
    }

    /// See [`crate::Repository::execute_pair_with`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute_many_with`].
    pub fn execute_pair_with<B, I, J, F, DA, DB, E>(
        &self,
        id: &I,
        other_id: &J,
        metadata: Metadata,
        decide: F,
    ) -> Result<(Executed<A>, Executed<B>), ExecuteError<E>>
    where
        B: Aggregate,
        S: Clone,
        I: fmt::Display + ?Sized,
        J: fmt::Display + ?Sized,
        F: FnMut(&A, &B) -> Result<(DA, DB), E>,
        DA: IntoEvents<A, Error = Infallible>,
        DB: IntoEvents<B, Error = Infallible>,
    {
        block_on(self.inner.execute_pair_with(id, other_id, metadata, decide))
    }
}

/// [`crate::Command`] with a blocking `execute`.
#[derive(Debug)]
#[must_use = "a command does nothing until `execute` is called"]
pub struct Command<'r, A, S> {
    inner: crate::Command<'r, A, S>,
}

impl<A, S> Command<'_, A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// See [`crate::Command::metadata`].
    pub fn metadata(self, metadata: Metadata) -> Self {
        Command {
            inner: self.inner.metadata(metadata),
        }
    }

    /// See [`crate::Command::occurred_at`].
    pub fn occurred_at(self, occurred_at: Timestamp) -> Self {
        Command {
            inner: self.inner.occurred_at(occurred_at),
        }
    }

    /// See [`crate::Command::compensating`].
    pub fn compensating(self, target: Uuid) -> Self {
        Command {
            inner: self.inner.compensating(target),
        }
    }

    /// See [`crate::Command::command_id`].
    pub fn command_id(self, id: Uuid) -> Self {
        Command {
            inner: self.inner.command_id(id),
        }
    }

    /// See [`crate::Command::caused_by`].
    pub fn caused_by<E>(self, cause: &Envelope<E>) -> Self {
        Command {
            inner: self.inner.caused_by(cause),
        }
    }

    /// See [`crate::Command::execute`].
    ///
    /// # Errors
    ///
    /// As [`crate::Repository::execute`].
    pub fn execute<F, D>(self, decide: F) -> Result<Executed<A>, ExecuteError<D::Error>>
    where
        F: FnMut(&A) -> D,
        D: IntoEvents<A>,
    {
        block_on(self.inner.execute(decide))
    }
}
