//! Test kits (feature `testing`): given/when/then for aggregates, and the
//! conformance suite every [`EventStore`](crate::EventStore) runs.
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

use crate::aggregate::Aggregate;
use crate::event::IntoEvents;

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
