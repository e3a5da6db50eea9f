//! Events: the [`Event`] trait, the closed [`EventSet`] of an aggregate, and
//! what a decision returns ([`IntoEvents`]).

use std::any::TypeId;
use std::convert::Infallible;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A domain event: a fact that happened, with a stable name and a schema version.
///
/// Derive it: `#[derive(Event)]` with `#[event(name = "...", version = N,
/// upcast_from = Previous)]`. The name is what the store records, so it must
/// never change once events are stored; it defaults to the kebab-case of the
/// type name. The version is the payload's schema version (default 1).
///
/// Names are global to a program: two event types with the same name and
/// version are reported by [`registry::validate`](crate::registry::validate).
///
/// ```
/// use es_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(name = "ticket-escalated", version = 1)]
/// pub struct TicketEscalatedV1 { pub reason: String }
///
/// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1)]
/// pub struct TicketEscalated { pub reason: String, pub by: String }
///
/// impl From<TicketEscalatedV1> for TicketEscalated {
///     fn from(old: TicketEscalatedV1) -> Self {
///         TicketEscalated { reason: old.reason, by: "unknown".into() }
///     }
/// }
///
/// // A version 1 payload decodes as the current type through the upcaster.
/// let e = TicketEscalated::decode(1, br#"{"reason":"vip"}"#)?;
/// assert_eq!(e.by, "unknown");
/// assert_eq!(TicketEscalated::NAME, "ticket-escalated");
/// # Ok::<(), es_core::DecodeError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event)]` (with `Serialize` and `Deserialize`) to `{Self}`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name recorded in the store.
    const NAME: &'static str;
    /// The payload's schema version, 1 or more.
    const VERSION: u32;

    /// Decodes a payload stored at schema version `version` into this type,
    /// walking the upcast chain for older versions.
    ///
    /// The derive implements it; by hand, use
    /// `es_core::codec::decode_exact::<Self>` for an event with no history.
    fn decode(version: u32, payload: &[u8]) -> Result<Self, DecodeError>;

    /// Every schema version this type decodes, oldest first (the upcast chain).
    fn decodable_versions() -> Vec<u32> {
        vec![Self::VERSION]
    }
}

/// The (name, version) of an event type, as the registry and stores see it.
///
/// Two keys are equal when they have the same name and version and name the
/// same Rust type.
#[derive(Clone, Copy)]
pub struct EventKey {
    /// The event's stable name.
    pub name: &'static str,
    /// Its current schema version.
    pub version: u32,
    type_name: fn() -> &'static str,
    type_id: fn() -> TypeId,
    decodable_versions: fn() -> Vec<u32>,
}

impl EventKey {
    /// The key of event type `E`.
    pub const fn of<E: Event>() -> Self {
        EventKey {
            name: E::NAME,
            version: E::VERSION,
            type_name: std::any::type_name::<E>,
            type_id: TypeId::of::<E>,
            decodable_versions: E::decodable_versions,
        }
    }

    /// The Rust type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// The Rust type's id.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// Every schema version the type decodes, oldest first.
    pub fn decodable_versions(&self) -> Vec<u32> {
        (self.decodable_versions)()
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventKey")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("type", &self.type_name())
            .finish_non_exhaustive()
    }
}

impl PartialEq for EventKey {
    fn eq(&self, other: &Self) -> bool {
        (self.name, self.version, self.type_id()) == (other.name, other.version, other.type_id())
    }
}

impl Eq for EventKey {}

/// The closed set of events an aggregate emits: the enum that
/// `#[derive(Aggregate)]` generates (`TicketEvent` for `Ticket`).
pub trait EventSet: fmt::Debug + Clone + Send + Sync + Sized + 'static {
    /// Every event of the set, in declaration order.
    const EVENTS: &'static [EventKey];

    /// The stored name of this event.
    fn name(&self) -> &'static str;

    /// The schema version this event is encoded at.
    fn version(&self) -> u32;

    /// Encodes the payload (JSON).
    fn encode(&self) -> Result<Vec<u8>, EncodeError>;

    /// Decodes a stored payload by name and schema version.
    fn decode(name: &str, version: u32, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// A stored payload that cannot be turned into an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No event of the set has this name.
    #[error("unknown event `{name}` (schema version {version})")]
    UnknownEvent {
        /// The stored name.
        name: String,
        /// The stored schema version.
        version: u32,
    },
    /// The stored schema version is newer than this code knows: the data was
    /// written by a newer program.
    #[error("event `{name}` has schema version {version}, newer than this program's {known}")]
    VersionTooNew {
        /// The event name.
        name: &'static str,
        /// The stored schema version.
        version: u32,
        /// The newest version this program decodes.
        known: u32,
    },
    /// The stored schema version is not in the event's upcast chain.
    #[error(
        "event `{name}` has schema version {version}, which no type in its upcast chain decodes"
    )]
    UnknownVersion {
        /// The event name.
        name: &'static str,
        /// The stored schema version.
        version: u32,
    },
    /// The payload does not match the type of its (name, version).
    #[error("payload of event `{name}` version {version} does not match its type")]
    Payload {
        /// The event name.
        name: &'static str,
        /// The stored schema version.
        version: u32,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot payload does not match the aggregate's state type.
    #[error("snapshot of aggregate `{aggregate}` does not match its state type")]
    Snapshot {
        /// The aggregate name.
        aggregate: &'static str,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

/// An event (or snapshot) that cannot be serialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize `{name}`")]
pub struct EncodeError {
    /// The event or aggregate name.
    pub name: &'static str,
    /// What serde reported.
    #[source]
    pub source: serde_json::Error,
}

/// What a decision (a command method) may return: one event, several, none,
/// or an error.
///
/// Implemented for every event of an aggregate and its event enum (by the
/// derive), for `()`, `Option<E>`, `Vec<E>`, arrays and tuples of events, and
/// for `Result<X, Err>` of any of those, whose `Err` becomes the command's
/// rejection.
///
/// ```
/// use es_core::IntoEvents;
/// # #[derive(Debug, PartialEq)] struct Opened; #[derive(Debug, PartialEq)] struct Noted;
/// # #[derive(Debug, PartialEq)] enum Ev { Opened(Opened), Noted(Noted) }
/// # impl From<Opened> for Ev { fn from(e: Opened) -> Self { Ev::Opened(e) } }
/// # impl From<Noted> for Ev { fn from(e: Noted) -> Self { Ev::Noted(e) } }
/// let two: Result<Vec<Ev>, &str> = (Opened, Noted).into_events().map_err(|n| match n {});
/// assert_eq!(two.unwrap().len(), 2);
/// let none: Result<Vec<Ev>, &str> = Ok::<(), &str>(()).into_events();
/// assert!(none.unwrap().is_empty());
/// let refused = Err::<Option<Opened>, &str>("closed").into_events();
/// assert_eq!(refused.map(|v: Vec<Ev>| v.len()), Err("closed"));
/// ```
pub trait IntoEvents<E> {
    /// Why the decision refused the command.
    type Error;

    /// The events in order, or the refusal.
    fn into_events(self) -> Result<Vec<E>, Self::Error>;
}

impl<E> IntoEvents<E> for () {
    type Error = Infallible;
    fn into_events(self) -> Result<Vec<E>, Infallible> {
        Ok(Vec::new())
    }
}

impl<E, X: Into<E>> IntoEvents<E> for Option<X> {
    type Error = Infallible;
    fn into_events(self) -> Result<Vec<E>, Infallible> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

impl<E, X: Into<E>> IntoEvents<E> for Vec<X> {
    type Error = Infallible;
    fn into_events(self) -> Result<Vec<E>, Infallible> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

impl<E, X: Into<E>, const N: usize> IntoEvents<E> for [X; N] {
    type Error = Infallible;
    fn into_events(self) -> Result<Vec<E>, Infallible> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

macro_rules! tuple_into_events {
    ($($x:ident),+) => {
        impl<E, $($x: Into<E>),+> IntoEvents<E> for ($($x,)+) {
            type Error = Infallible;
            #[allow(non_snake_case)]
            fn into_events(self) -> Result<Vec<E>, Infallible> {
                let ($($x,)+) = self;
                Ok(vec![$($x.into()),+])
            }
        }
    };
}
tuple_into_events!(A, B);
tuple_into_events!(A, B, C);
tuple_into_events!(A, B, C, D);
tuple_into_events!(A, B, C, D, F);

impl<E, X, Err> IntoEvents<E> for Result<X, Err>
where
    X: IntoEvents<E, Error = Infallible>,
{
    type Error = Err;
    fn into_events(self) -> Result<Vec<E>, Err> {
        match self {
            Ok(x) => match x.into_events() {
                Ok(events) => Ok(events),
                Err(never) => match never {},
            },
            Err(e) => Err(e),
        }
    }
}
