//! What the derives' generated code names. Not public API: it changes
//! without notice between versions of es-core and es-derive, which are
//! pinned to each other exactly.

pub use core::any::type_name;
pub use core::clone::Clone;
pub use core::cmp::PartialEq;
pub use core::convert::{From, Infallible};
pub use core::fmt::Debug;
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::vec;
pub use std::vec::Vec;

#[cfg(feature = "inventory")]
pub use inventory;
pub use serde;
pub use serde_json;

pub use crate::codec::{
    decode_exact, decode_snapshot, decode_upcast, encode, encode_snapshot, upcast_versions,
};
pub use crate::registry::{AggregateRegistration, EventRegistration};

use crate::event::{DecodeError, Event, EventKey};

/// The error for a stored name no event of a set has.
pub fn unknown_event(name: &str, version: u32) -> DecodeError {
    DecodeError::UnknownEvent {
        name: name.to_owned(),
        version,
    }
}

/// Compile-time check of an `upcast_from` link: same name, lower version.
/// (`From<P>` is required, and reported, by the decoding itself.)
pub const fn check_upcast<E: Event, P: Event>() {
    assert!(
        str_eq(E::NAME, P::NAME),
        "`upcast_from` must name an older version of the same event: the two `#[event(name)]`s differ"
    );
    assert!(
        P::VERSION < E::VERSION,
        "`upcast_from` must name an older version: its `#[event(version)]` must be lower than this event's"
    );
}

/// Compile-time check that an aggregate's events have distinct names.
pub const fn check_distinct_names(events: &[EventKey]) {
    let mut i = 0;
    while i < events.len() {
        let mut j = i + 1;
        while j < events.len() {
            assert!(
                !str_eq(events[i].name, events[j].name),
                "an aggregate lists two events with the same `#[event(name)]`: list only the newest version, older ones are reached through `upcast_from`"
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
