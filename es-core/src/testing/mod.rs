//! Test kits (feature `testing`): given/when/then for aggregates, and the
//! conformance suite every [`EventStore`] runs.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::testing::given;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Opened;
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Closed;
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "ticket", events(Opened, Closed))]
//! # pub struct Ticket { open: bool }
//! # impl Apply<Opened> for Ticket { fn apply(&mut self, _: &Opened) { self.open = true } }
//! # impl Apply<Closed> for Ticket { fn apply(&mut self, _: &Closed) { self.open = false } }
//! impl Ticket {
//!     fn close(&self) -> Result<Closed, &'static str> {
//!         if self.open { Ok(Closed) } else { Err("not open") }
//!     }
//! }
//!
//! given::<Ticket>(Opened).when(|t| t.close()).then(Closed);
//! given::<Ticket>((Opened, Closed)).when(|t| t.close()).then_error("not open");
//! given::<Ticket>(()).when(|t| t.close()).then_error_matches(|e| e.contains("open"));
//! ```
//!
//! `given` and `then` take events as decisions return them: one event, a
//! tuple of different events, an array or `Vec` of one kind (the events
//! themselves or the aggregate's event enum), or `()` for none.
//!
//! Projections are tested from a [`history`] of events of any aggregates:
//! [`History::then_projection`] folds a per-stream projection over one of
//! its streams; es-sqlite's `testing::given` runs a read model over all of
//! it and asserts its rows.
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Renamed { pub name: String }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "lead", events(Renamed))]
//! # pub struct Lead;
//! # impl Apply<Renamed> for Lead { fn apply(&mut self, _: &Renamed) {} }
//! #[derive(Projection, Default, Debug)]
//! #[projection(name = "lead-names", events(Renamed))]
//! pub struct Names { all: Vec<String> }
//! impl Apply<Renamed> for Names {
//!     fn apply(&mut self, e: &Renamed) { self.all.push(e.name.clone()) }
//! }
//!
//! let renamed = |name: &str| Renamed { name: name.into() };
//! let names = es_core::testing::history()
//!     .of::<Lead>("12", (renamed("David"), renamed("Davis")))
//!     .of::<Lead>("13", renamed("Ada"))
//!     .then_projection::<Names, Lead>("12");
//! assert_eq!(names.all, ["David", "Davis"]);
//! assert_eq!(names.version, 2);
//! ```

// A test kit reports by panicking, takes its inputs by value for one-line
// calls, and keeps its case tables whole.
#![allow(
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::needless_pass_by_value,
    clippy::too_many_lines
)]

use std::convert::Infallible;
use std::fmt::Debug;

use crate::aggregate::{Aggregate, Apply};
use crate::envelope::NewEvent;
use crate::event::{EventSet, IntoEvents};
use crate::id::StreamId;
use crate::metadata::Metadata;
use crate::projection::{Projected, Projection};
use crate::store::EventStore;
use crate::store::memory::InMemoryStore;
use crate::version::ExpectedVersion;

pub mod conformance;
mod model;

/// Starts a scenario: the aggregate `A` after `events` (anything a
/// decision may return: an event, a tuple, an array or `Vec`, `()`).
pub fn given<A: Aggregate>(events: impl IntoEvents<A, Error = Infallible>) -> Given<A> {
    let mut state = A::default();
    for event in events.into_events().unwrap_or_else(|never| match never {}) {
        state.apply(&event);
    }
    Given { state }
}

/// An aggregate state built from past events.
#[derive(Debug)]
pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Runs a decision on the state.
    pub fn when<F, D>(self, decide: F) -> When<A, D::Error>
    where
        F: FnOnce(&A) -> D,
        D: IntoEvents<A>,
    {
        let outcome = decide(&self.state).into_events();
        When {
            state: self.state,
            outcome,
        }
    }

    /// The state, for assertions on it.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// The outcome of a decision, to assert on.
#[derive(Debug)]
pub struct When<A: Aggregate, E> {
    state: A,
    outcome: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: Debug> When<A, E> {
    /// Asserts the decision returned exactly `expected`; returns the state
    /// with them applied.
    ///
    /// # Panics
    ///
    /// When the decision returned other events or an error.
    #[track_caller]
    pub fn then(mut self, expected: impl IntoEvents<A, Error = Infallible>) -> A
    where
        A::Event: PartialEq,
    {
        let expected = expected
            .into_events()
            .unwrap_or_else(|never| match never {});
        match self.outcome {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "the decision returned other events than expected"
                );
                for event in &events {
                    self.state.apply(event);
                }
                self.state
            }
            Err(e) => panic!("expected events {expected:?}, but the decision refused: {e:?}"),
        }
    }

    /// Asserts the decision returned no event.
    ///
    /// # Panics
    ///
    /// When it returned events or an error.
    #[track_caller]
    pub fn then_nothing(self) -> A
    where
        A::Event: PartialEq,
    {
        self.then(())
    }

    /// Asserts the decision refused with `expected`.
    ///
    /// # Panics
    ///
    /// When it returned events or another error.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.outcome {
            Ok(events) => {
                panic!("expected the error {expected:?}, but the decision returned {events:?}")
            }
            Err(e) => assert_eq!(e, expected, "the decision refused with another error"),
        }
    }

    /// Asserts the decision refused with an error that satisfies `check`.
    ///
    /// # Panics
    ///
    /// When it returned events, or an error `check` rejects.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&E) -> bool) {
        match self.outcome {
            Ok(events) => panic!("expected an error, but the decision returned {events:?}"),
            Err(e) => assert!(check(&e), "the error {e:?} does not match"),
        }
    }

    /// The raw outcome.
    ///
    /// # Errors
    ///
    /// The decision's refusal.
    pub fn outcome(self) -> Result<Vec<A::Event>, E> {
        self.outcome
    }
}

/// Starts a history of events over streams of any aggregates, appended in
/// the order given: the input of projection tests.
pub fn history() -> History {
    History::default()
}

/// Events of several streams, in order; see [`history`].
#[derive(Debug, Clone, Default)]
pub struct History {
    events: Vec<(StreamId, NewEvent)>,
}

impl History {
    /// Adds `events` to the stream of aggregate `A` with id `id` (the
    /// stream a [`Repository`](crate::Repository) of `A` writes).
    ///
    /// # Panics
    ///
    /// When `id` is not a valid aggregate id, or an event does not encode.
    #[track_caller]
    #[must_use]
    pub fn of<A: Aggregate>(
        mut self,
        id: &str,
        events: impl IntoEvents<A, Error = Infallible>,
    ) -> Self {
        let stream = StreamId::for_aggregate(A::NAME, id).expect("a valid aggregate id");
        for event in events.into_events().unwrap_or_else(|never| match never {}) {
            let encoded = NewEvent::encode::<A::Event>(A::NAME, &event, Metadata::default())
                .expect("the event encodes");
            self.events.push((stream.clone(), encoded));
        }
        self
    }

    /// Adds one event as stored (any name, payload, metadata or time), for
    /// events this program has no type for, or payloads that must not
    /// decode.
    ///
    /// # Panics
    ///
    /// When `stream` is not a valid stream id.
    #[track_caller]
    #[must_use]
    pub fn raw(mut self, stream: &str, event: NewEvent) -> Self {
        self.events
            .push((StreamId::new(stream).expect("a valid stream id"), event));
        self
    }

    /// The events, with their streams, in order.
    pub fn events(&self) -> &[(StreamId, NewEvent)] {
        &self.events
    }

    /// Appends every event, in order, to `store`, each in its own append.
    ///
    /// # Errors
    ///
    /// What the store refuses.
    pub async fn append_to<S: EventStore>(&self, store: &S) -> crate::Result<()> {
        for (stream, event) in &self.events {
            store
                .append(stream, ExpectedVersion::Any, vec![event.clone()])
                .await?;
        }
        Ok(())
    }

    /// Folds the per-stream projection `P` over the stream of aggregate `A`
    /// with id `id` (through an in-memory store, as
    /// [`project`](crate::projection::project) does on any store).
    ///
    /// # Panics
    ///
    /// When the history does not append, or an event `P` lists does not
    /// decode.
    #[track_caller]
    pub fn then_projection<P, A>(&self, id: &str) -> Projected<P>
    where
        P: Projection + Default + Apply<P::Event>,
        P::Event: EventSet,
        A: Aggregate,
    {
        let store = InMemoryStore::new();
        let stream = StreamId::for_aggregate(A::NAME, id).expect("a valid aggregate id");
        crate::blocking::block_on(async {
            self.append_to(&store).await.expect("the history appends");
            crate::projection::project::<P, _>(&store, &stream)
                .await
                .expect("the projection folds")
        })
    }
}
