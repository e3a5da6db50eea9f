//! Commands over several aggregates: one decision over their states, one
//! atomic append to all of their streams, each at the version it was read.

use std::convert::Infallible;
use std::fmt;

use crate::aggregate::Aggregate;
use crate::envelope::NewEvent;
use crate::error::{Conflict, Error, Result};
use crate::event::IntoEvents;
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::snapshot::SnapshotStore;
use crate::store::{AppendResult, EventStore, StreamWrite};
use crate::version::ExpectedVersion;

use super::{CommandConflict, ExecuteError, Executed, Folded, Repository, Target};

/// One aggregate of a command over several: its stream, its state, and
/// the version the last decision saw.
struct Part<'r, A, S> {
    repository: &'r Repository<A, S>,
    stream: StreamId,
    folded: Folded<A>,
    decided_at: u64,
}

impl<'r, A, S> Part<'r, A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// Loads `stream` as `repository` loads it (cache, snapshot, events);
    /// a moved stream is reported, not followed.
    async fn load(repository: &'r Repository<A, S>, stream: StreamId) -> Result<Self> {
        let folded = repository.fold(&stream, Target::Latest).await?;
        Ok(Part {
            repository,
            decided_at: folded.version,
            stream,
            folded,
        })
    }

    /// Folds in what other writers appended since.
    async fn catch_up(&mut self) -> Result<()> {
        self.repository
            .fold_after(&self.stream, &mut self.folded, None)
            .await
    }

    /// The write of `events` at the version the decision saw. A part with
    /// no events still writes nothing at that version: the decision read
    /// its state, so the append checks that it did not change.
    fn write(&self, events: &[A::Event], metadata: &Metadata) -> Result<StreamWrite> {
        let events = events
            .iter()
            .map(|e| NewEvent::encode(A::NAME, e, metadata.clone()))
            .collect::<Result<Vec<_>, crate::EncodeError>>()?;
        Ok(StreamWrite::new(
            self.stream.clone(),
            ExpectedVersion::Exact(self.folded.version),
            events,
        ))
    }

    /// What the command did here, once `appended` (`None`: nothing was
    /// appended anywhere).
    fn done(
        self,
        events: Vec<A::Event>,
        appended: Option<&AppendResult>,
        tries: (u32, u32),
    ) -> Executed<A> {
        self.repository
            .executed(&self.stream, self.folded, events, appended, tries)
    }

    /// The stored events after the version the decision saw: up to the
    /// version `conflict` reports for this stream, to the end for the
    /// others.
    async fn concurrent(&self, conflict: &Conflict) -> Result<Vec<crate::RecordedEvent>> {
        let end = (conflict.stream == self.stream).then_some(conflict.actual);
        self.repository
            .read_between(&self.stream, self.decided_at, end)
            .await
    }
}

/// One command, one business transaction: every event of the command's
/// writes that names no correlation gets the first event's id, as the
/// events of a command on one aggregate do (see [`audit`](crate::audit)).
fn correlate(writes: &mut [StreamWrite]) {
    let Some(root) = writes
        .iter()
        .find_map(|w| w.events.first())
        .map(|e| e.event_id)
    else {
        return;
    };
    for event in writes.iter_mut().flat_map(|w| w.events.iter_mut()) {
        if event.event_id != root && event.metadata.correlation_id.is_none() {
            event.metadata.correlation_id = Some(root);
        }
    }
}

/// The events of a decision that cannot refuse (the refusal is the
/// decision's `Result`).
fn events_of<A: Aggregate, D: IntoEvents<A, Error = Infallible>>(decided: D) -> Vec<A::Event> {
    match decided.into_events() {
        Ok(events) => events,
        Err(never) => match never {},
    }
}

/// A command over several aggregates cannot compensate: a compensation
/// corrects an event of its own stream (see `Command::compensating`).
fn check_no_compensation(metadata: &Metadata) -> Result<()> {
    if metadata.compensates.is_some() {
        return Err(Error::InvalidEvent {
            name: "compensates".to_owned(),
            reason: "a command over several aggregates cannot compensate an event; \
                     compensate it with a command on its own aggregate",
        });
    }
    Ok(())
}

/// Commands over several aggregates, decided together and appended
/// atomically ([`EventStore::append_to_streams`]), each stream at the
/// version its state was read at.
impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// Loads the aggregates `ids`, runs `decide` on their states, and
    /// appends the events it returns for each to its stream, all in one
    /// atomic append in which every stream is expected at the version it
    /// was read at: the events of all are stored, or none.
    ///
    /// `decide` returns one entry per aggregate, in the order of `ids`: any
    /// [`IntoEvents`] that cannot refuse (an event, a `Vec` or an array of
    /// events, `None`, `()`); its `Err` refuses the whole command. An
    /// aggregate given no events is still checked: the append fails if
    /// another writer changed it, since the decision read it.
    ///
    /// On a conflict on any of the streams, every aggregate is brought up
    /// to date and the decision runs again, up to the configured retries;
    /// then [`ExecuteError::Conflict`] reports the store's conflict and the
    /// events appended meanwhile to every stream. The
    /// [`ConflictPolicy`](crate::ConflictPolicy) is not asked: whether the
    /// events of one aggregate conflict says nothing of a rule that spans
    /// several, so a conflict always means deciding again.
    ///
    /// With serialized commands (the default), the command waits for its
    /// turn on each aggregate, taken in stream id order so that two such
    /// commands never wait for each other.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// pub struct Deposited { pub amount: u64 }
    /// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// pub struct Withdrawn { pub amount: u64 }
    ///
    /// #[derive(Aggregate, Default, Debug)]
    /// #[aggregate(name = "account", events(Deposited, Withdrawn))]
    /// pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # impl Apply<Withdrawn> for Account { fn apply(&mut self, e: &Withdrawn) { self.balance -= e.amount } }
    ///
    /// # pollster::block_on(async {
    /// let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    /// accounts.execute("alice", |_| Deposited { amount: 10 }).await?;
    ///
    /// // A transfer: both accounts change, or neither.
    /// let transfer = |amount: u64| {
    ///     move |[from, _to]: [&Account; 2]| {
    ///         if from.balance < amount {
    ///             return Err("insufficient funds");
    ///         }
    ///         Ok([AccountEvent::from(Withdrawn { amount }), Deposited { amount }.into()])
    ///     }
    /// };
    /// let [alice, bob] = accounts.execute_many(["alice", "bob"], transfer(7)).await?;
    /// assert_eq!((alice.state.balance, alice.version), (3, 2));
    /// assert_eq!((bob.state.balance, bob.version), (7, 1));
    ///
    /// let refused = accounts.execute_many(["alice", "bob"], transfer(7)).await;
    /// assert!(matches!(refused, Err(ExecuteError::Rejected("insufficient funds"))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ExecuteError::Rejected`] with the decision's refusal;
    /// [`ExecuteError::Conflict`] when the retries ran out;
    /// [`Error::InvalidEvent`] (in [`ExecuteError::Store`]) when `ids`
    /// names one aggregate twice; [`Error::Moved`] for a stream a migration
    /// moved (a command over several aggregates does not follow moves);
    /// otherwise as [`execute`](Repository::execute).
    pub async fn execute_many<I, F, D, E, const N: usize>(
        &self,
        ids: [&I; N],
        decide: F,
    ) -> Result<[Executed<A>; N], ExecuteError<E>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut([&A; N]) -> Result<[D; N], E>,
        D: IntoEvents<A, Error = Infallible>,
    {
        self.execute_many_with(ids, Metadata::default(), decide)
            .await
    }

    /// [`execute_many`](Repository::execute_many), recording `metadata`
    /// (who, why, correlation) with every new event of every aggregate.
    ///
    /// # Errors
    ///
    /// As [`execute_many`](Repository::execute_many); and
    /// [`Error::InvalidEvent`] when `metadata` names an event to
    /// compensate: a compensation is a command on its own aggregate.
    pub async fn execute_many_with<I, F, D, E, const N: usize>(
        &self,
        ids: [&I; N],
        metadata: Metadata,
        mut decide: F,
    ) -> Result<[Executed<A>; N], ExecuteError<E>>
    where
        I: fmt::Display + ?Sized,
        F: FnMut([&A; N]) -> Result<[D; N], E>,
        D: IntoEvents<A, Error = Infallible>,
    {
        check_no_compensation(&metadata)?;
        let streams = ids
            .iter()
            .map(|id| self.stream_id(*id))
            .collect::<Result<Vec<_>>>()?;
        for (i, stream) in streams.iter().enumerate() {
            if streams[..i].contains(stream) {
                return Err(Error::InvalidEvent {
                    name: stream.to_string(),
                    reason: "a command over several aggregates names this one twice",
                }
                .into());
            }
        }
        let mut turns = Vec::new();
        if let Some(gates) = &self.gates {
            let mut ordered: Vec<&StreamId> = streams.iter().collect();
            ordered.sort();
            for stream in ordered {
                turns.push(gates.enter(stream).await);
            }
        }
        let mut parts = Vec::with_capacity(N);
        for stream in streams {
            parts.push(Part::load(self, stream).await?);
        }
        let (mut attempts, mut reruns) = (0, 0);
        loop {
            attempts += 1;
            if attempts > 1 {
                reruns += 1;
            }
            for part in &mut parts {
                part.decided_at = part.folded.version;
            }
            let states: [&A; N] = std::array::from_fn(|i| &parts[i].folded.state);
            let events: Vec<Vec<A::Event>> = decide(states)
                .map_err(ExecuteError::Rejected)?
                .into_iter()
                .map(events_of::<A, D>)
                .collect();
            let mut writes = parts
                .iter()
                .zip(&events)
                .map(|(part, events)| part.write(events, &metadata))
                .collect::<Result<Vec<_>>>()?;
            correlate(&mut writes);
            let appended = if events.iter().all(Vec::is_empty) {
                None
            } else {
                match self.store.append_to_streams(writes).await {
                    Ok(appended) if appended.len() == N => Some(appended),
                    Ok(_) => {
                        return Err(Error::Corrupt {
                            detail: "the store answered a different number of stream writes"
                                .to_owned(),
                        }
                        .into());
                    }
                    Err(Error::Conflict(conflict)) if attempts > self.retries => {
                        let mut concurrent = Vec::new();
                        for part in &parts {
                            concurrent.extend(part.concurrent(&conflict).await?);
                        }
                        return Err(ExecuteError::Conflict(Box::new(CommandConflict {
                            conflict,
                            attempts,
                            reruns,
                            concurrent,
                        })));
                    }
                    Err(Error::Conflict(conflict)) => {
                        tracing::debug!(stream = %conflict.stream, expected = %conflict.expected, actual = conflict.actual, attempts, "conflict on a command over several aggregates, retrying");
                        for part in &mut parts {
                            part.catch_up().await?;
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let done: Vec<Executed<A>> = parts
                .into_iter()
                .zip(events)
                .enumerate()
                .map(|(i, (part, events))| {
                    let appended = appended.as_ref().and_then(|a| a.get(i));
                    part.done(events, appended, (attempts, reruns))
                })
                .collect();
            return done.try_into().map_err(|_| {
                ExecuteError::Store(Error::Corrupt {
                    detail: "a command over several aggregates lost one".to_owned(),
                })
            });
        }
    }

    /// Loads this repository's aggregate `id` and the aggregate `other_id`
    /// of another type `B` from the same store, runs `decide` on both
    /// states, and appends the events it returns for each atomically, each
    /// stream expected at the version it was read at: the command of
    /// [`execute_many`](Repository::execute_many) across two aggregate
    /// types.
    ///
    /// `B` is loaded as a repository over this one's store with the same
    /// snapshot setting would load it (no cache); only this repository's
    /// aggregate waits for its turn with serialized commands, so a command
    /// of another repository on `other_id` may race it (the conflict is
    /// retried).
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// pub struct Reserved { pub seats: u32 }
    /// #[derive(Aggregate, Default, Debug)]
    /// #[aggregate(name = "flight", events(Reserved))]
    /// pub struct Flight { reserved: u32 }
    /// # impl Apply<Reserved> for Flight { fn apply(&mut self, e: &Reserved) { self.reserved += e.seats } }
    ///
    /// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    /// pub struct Booked { pub flight: String }
    /// #[derive(Aggregate, Default, Debug)]
    /// #[aggregate(name = "traveller", events(Booked))]
    /// pub struct Traveller { trips: u32 }
    /// # impl Apply<Booked> for Traveller { fn apply(&mut self, _: &Booked) { self.trips += 1 } }
    ///
    /// # pollster::block_on(async {
    /// let store = InMemoryStore::new();
    /// let flights = Repository::<Flight, _>::new(store.clone());
    /// let (flight, ada) = flights
    ///     .execute_pair("LH-400", "ada", |flight: &Flight, _: &Traveller| {
    ///         if flight.reserved >= 180 {
    ///             return Err("the flight is full");
    ///         }
    ///         Ok((Reserved { seats: 1 }, Booked { flight: "LH-400".into() }))
    ///     })
    ///     .await?;
    /// assert_eq!((flight.version, ada.version), (1, 1));
    /// let travellers = Repository::<Traveller, _>::new(store);
    /// assert_eq!(travellers.load("ada").await?.trips, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`execute_many`](Repository::execute_many).
    pub async fn execute_pair<B, I, J, F, DA, DB, E>(
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
        self.execute_pair_with(id, other_id, Metadata::default(), decide)
            .await
    }

    /// [`execute_pair`](Repository::execute_pair), recording `metadata`
    /// with every new event of both aggregates.
    ///
    /// # Errors
    ///
    /// As [`execute_many_with`](Repository::execute_many_with).
    pub async fn execute_pair_with<B, I, J, F, DA, DB, E>(
        &self,
        id: &I,
        other_id: &J,
        metadata: Metadata,
        mut decide: F,
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
        check_no_compensation(&metadata)?;
        let others = Repository::<B, S>::new(self.store.clone())
            .with_snapshots(self.snapshots)
            .with_serialized_commands(false);
        let (stream_a, stream_b) = (self.stream_id(id)?, others.stream_id(other_id)?);
        if stream_a == stream_b {
            return Err(Error::InvalidEvent {
                name: stream_a.to_string(),
                reason: "a command over several aggregates names this one twice",
            }
            .into());
        }
        let _turn = match &self.gates {
            Some(gates) => Some(gates.enter(&stream_a).await),
            None => None,
        };
        let mut a = Part::load(self, stream_a).await?;
        let mut b = Part::load(&others, stream_b).await?;
        let (mut attempts, mut reruns) = (0, 0);
        loop {
            attempts += 1;
            if attempts > 1 {
                reruns += 1;
            }
            a.decided_at = a.folded.version;
            b.decided_at = b.folded.version;
            let (da, db) =
                decide(&a.folded.state, &b.folded.state).map_err(ExecuteError::Rejected)?;
            let (ea, eb) = (events_of::<A, DA>(da), events_of::<B, DB>(db));
            if ea.is_empty() && eb.is_empty() {
                return Ok((
                    a.done(ea, None, (attempts, reruns)),
                    b.done(eb, None, (attempts, reruns)),
                ));
            }
            let mut writes = vec![a.write(&ea, &metadata)?, b.write(&eb, &metadata)?];
            correlate(&mut writes);
            match self.store.append_to_streams(writes).await {
                Ok(appended) => {
                    let (Some(at_a), Some(at_b)) = (appended.first(), appended.get(1)) else {
                        return Err(Error::Corrupt {
                            detail: "the store answered a different number of stream writes"
                                .to_owned(),
                        }
                        .into());
                    };
                    return Ok((
                        a.done(ea, Some(at_a), (attempts, reruns)),
                        b.done(eb, Some(at_b), (attempts, reruns)),
                    ));
                }
                Err(Error::Conflict(conflict)) if attempts > self.retries => {
                    let mut concurrent = a.concurrent(&conflict).await?;
                    concurrent.extend(b.concurrent(&conflict).await?);
                    return Err(ExecuteError::Conflict(Box::new(CommandConflict {
                        conflict,
                        attempts,
                        reruns,
                        concurrent,
                    })));
                }
                Err(Error::Conflict(conflict)) => {
                    tracing::debug!(stream = %conflict.stream, expected = %conflict.expected, actual = conflict.actual, attempts, "conflict on a command over two aggregates, retrying");
                    a.catch_up().await?;
                    b.catch_up().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
