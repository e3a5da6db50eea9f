//! What the derives' generated code names. Not public API: it changes
//! without notice between versions of es-core and es-derive, which are
//! pinned to each other exactly.

pub use core::any::type_name;
pub use core::clone::Clone;
pub use core::cmp::PartialEq;
pub use core::convert::{From, Infallible};
pub use core::default::Default;
pub use core::fmt::Debug;
pub use core::marker::{Send, Sync};
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use core::unreachable;
pub use std::vec;
pub use std::vec::Vec;

#[cfg(feature = "inventory")]
pub use inventory;
pub use serde;
pub use serde_json;

pub use crate::codec::{
    decode_exact, decode_snapshot, decode_upcast, encode, encode_snapshot, upcast_versions,
};
pub use crate::event::Events;
pub use crate::registry::{AggregateRegistration, EventRegistration};

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, EncodeError, Event, EventKey};
use crate::name::{NameError, check_name};
use crate::payload::Payload;

/// What `EventSet::encode` returns.
pub type Encoded = Result<Payload, EncodeError>;
/// What `Aggregate::encode_snapshot` returns.
pub type EncodedSnapshot = Option<Result<Vec<u8>, EncodeError>>;
/// What `Aggregate::decode_snapshot` returns.
pub type DecodedSnapshot<A> = Option<Result<A, DecodeError>>;

/// One event as a decision's result: `Ok(vec![event])`.
pub fn one<A: Aggregate>(event: impl Into<A::Event>) -> Events<A> {
    Ok(vec![event.into()])
}

// The compile-time checks below are `#[track_caller]`: a failed check is then
// reported at its call, which the derives span on the user's token (the
// `name = "..."` literal, the `upcast_from` path, the `events` key), with no
// note pointing into this file.

/// Compile-time check of an event's name against the [name rule](crate::name).
#[track_caller]
pub const fn check_event_name(name: &str) {
    match check_name(name) {
        Ok(()) => {}
        Err(NameError::Empty) => {
            panic!(
                "the event name is empty: write a name like `#[event(name = \"ticket-opened\")]`"
            )
        }
        Err(NameError::TooLong { .. }) => {
            panic!("the event name is longer than 128 bytes: choose a shorter `#[event(name)]`")
        }
        Err(NameError::InvalidStart | NameError::InvalidCharacter { .. }) => panic!(
            "the event name must be ASCII letters, digits, `-`, `_` and `.`, starting with a letter: write e.g. `#[event(name = \"ticket-opened\")]`"
        ),
    }
}

/// Compile-time check of an aggregate's name against the [name rule](crate::name).
#[track_caller]
pub const fn check_aggregate_name(name: &str) {
    match check_name(name) {
        Ok(()) => {}
        Err(NameError::Empty) => {
            panic!(
                "the aggregate name is empty: write a name like `#[aggregate(name = \"ticket\")]`"
            )
        }
        Err(NameError::TooLong { .. }) => {
            panic!(
                "the aggregate name is longer than 128 bytes: choose a shorter `#[aggregate(name)]`"
            )
        }
        Err(NameError::InvalidStart | NameError::InvalidCharacter { .. }) => panic!(
            "the aggregate name must be ASCII letters, digits, `-`, `_` and `.`, starting with a letter: write e.g. `#[aggregate(name = \"ticket\")]`"
        ),
    }
}

/// Compile-time check of a projection's name against the [name rule](crate::name).
#[track_caller]
pub const fn check_projection_name(name: &str) {
    match check_name(name) {
        Ok(()) => {}
        Err(NameError::Empty) => {
            panic!(
                "the projection name is empty: write a name like `#[projection(name = \"ticket-search\")]`"
            )
        }
        Err(NameError::TooLong { .. }) => {
            panic!(
                "the projection name is longer than 128 bytes: choose a shorter `#[projection(name)]`"
            )
        }
        Err(NameError::InvalidStart | NameError::InvalidCharacter { .. }) => panic!(
            "the projection name must be ASCII letters, digits, `-`, `_` and `.`, starting with a letter: write e.g. `#[projection(name = \"ticket-search\")]`"
        ),
    }
}

/// Compile-time check of an `upcast_from` link: same name, lower version.
/// (`From<P>` is required, and reported, by the decoding itself.)
#[track_caller]
pub const fn check_upcast<E: Event, P: Event>() {
    assert!(
        str_eq(E::NAME, P::NAME),
        "`upcast_from` must name an older version of the same event, but the two `#[event(name)]`s differ: give both the same name, or name this event's previous version"
    );
    assert!(
        P::VERSION < E::VERSION,
        "`upcast_from` must name an older version, but its `#[event(version)]` is not lower than this event's: raise this event's `version`, or name its previous version"
    );
}

/// Compile-time check that the events an aggregate or a projection lists
/// have distinct names.
#[track_caller]
pub const fn check_distinct_names(events: &[EventKey]) {
    let mut i = 0;
    while i < events.len() {
        let mut j = i + 1;
        while j < events.len() {
            assert!(
                !str_eq(events[i].name, events[j].name),
                "`events(...)` lists two events with the same `#[event(name)]`: list only the newest version, older ones are reached through `upcast_from`"
            );
            j += 1;
        }
        i += 1;
    }
}

/// Compile-time check that the aggregate types a projection lists in
/// `aggregates(...)` have distinct names (one type listed under two paths).
#[track_caller]
pub const fn check_distinct_aggregates(names: &[&str]) {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            assert!(
                !str_eq(names[i], names[j]),
                "`aggregates(...)` lists two types with the same `#[aggregate(name)]` (one aggregate under two paths?): list each aggregate once"
            );
            j += 1;
        }
        i += 1;
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Submits a registration to the process-wide registry (a no-op without the
/// `inventory` feature).
#[cfg(feature = "inventory")]
#[doc(hidden)]
#[macro_export]
macro_rules! __es_submit {
    ($($registration:tt)*) => {
        $crate::__private::inventory::submit! { $($registration)* }
    };
}

/// Submits a registration to the process-wide registry (a no-op without the
/// `inventory` feature).
#[cfg(not(feature = "inventory"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __es_submit {
    ($($registration:tt)*) => {};
}

pub use crate::__es_submit as submit;
