//! Events: the [`Event`] trait, the closed [`EventSet`] of an aggregate, and
//! what a decision returns ([`IntoEvents`]).

use std::any::TypeId;
use std::convert::Infallible;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::Aggregate;
use crate::payload::Payload;

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
/// let e = TicketEscalated::decode(1, r#"{"reason":"vip"}"#)?;
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
    /// The [`Personal`](crate::Personal) fields whose data subject another
    /// field names, as `(field, subject field)`: what
    /// `#[personal(subject = customer_id)]` on a field declares. The other
    /// personal fields belong to the stream (see [`privacy`](crate::privacy)).
    const PERSONAL_SUBJECTS: &'static [(&'static str, &'static str)] = &[];

    /// Decodes a payload stored at schema version `version` into this type,
    /// walking the upcast chain for older versions.
    ///
    /// The derive implements it; by hand, use
    /// `es_core::codec::decode_exact::<Self>` for an event with no history.
    ///
    /// # Errors
    ///
    /// When `version` is not in the chain, or the payload does not match
    /// the type of its version.
    fn decode(version: u32, payload: &str) -> Result<Self, DecodeError>;

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
///
/// The derive writes the parts that need each event's type ([`EVENTS`],
/// [`DECODERS`], [`index`] and [`encode`]); the rest are provided here.
///
/// [`EVENTS`]: EventSet::EVENTS
/// [`DECODERS`]: EventSet::DECODERS
/// [`index`]: EventSet::index
/// [`encode`]: EventSet::encode
pub trait EventSet: fmt::Debug + Clone + Send + Sync + Sized + 'static {
    /// Every event of the set, in declaration order.
    const EVENTS: &'static [EventKey];

    /// How to decode each event of [`EVENTS`](EventSet::EVENTS), in the
    /// same order.
    const DECODERS: &'static [Decoder<Self>];

    /// The position of this event's type in [`EVENTS`](EventSet::EVENTS).
    fn index(&self) -> usize;

    /// Encodes the payload (JSON).
    ///
    /// # Errors
    ///
    /// When the event does not serialize.
    fn encode(&self) -> Result<Payload, EncodeError>;

    /// The stored name of this event.
    fn name(&self) -> &'static str {
        Self::EVENTS.get(self.index()).map_or("", |key| key.name)
    }

    /// The schema version this event is encoded at.
    fn version(&self) -> u32 {
        Self::EVENTS.get(self.index()).map_or(0, |key| key.version)
    }

    /// Decodes a stored payload by name and schema version.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownEvent`] for a name no event of the set has;
    /// otherwise what that event's [`Event::decode`] reports.
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        let decoder = Self::EVENTS
            .iter()
            .position(|key| key.name == name)
            .and_then(|i| Self::DECODERS.get(i));
        match decoder {
            Some(decode) => decode(version, payload),
            None => Err(DecodeError::UnknownEvent {
                name: name.to_owned(),
                version,
            }),
        }
    }
}

/// Decodes one event of an [`EventSet`] from its stored schema version and
/// payload.
pub type Decoder<S> = fn(u32, &str) -> Result<S, DecodeError>;

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
    /// A raw upcaster could not turn the stored event into current ones (see
    /// [`upcast`](crate::upcast)).
    #[error("cannot upcast event `{name}` version {version}: {reason}")]
    Upcast {
        /// The stored name.
        name: String,
        /// The stored schema version.
        version: u32,
        /// What went wrong.
        reason: String,
    },
    /// A raw upcaster split a stored event into several (or removed it),
    /// where the caller asked for exactly one event.
    #[error("event `{name}` version {version} upcasts to {count} events, not one")]
    NotOne {
        /// The stored name.
        name: String,
        /// The stored schema version.
        version: u32,
        /// How many events it upcasts to.
        count: usize,
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

// The blanket impls below are `do_not_recommend`: when a decision returns
// something that is not an event of the aggregate, the error names the
// aggregate's own events, not every shape of container.

/// What a decision (a command method) may return: one event, several, none,
/// or an error.
///
/// `A` is the aggregate. Implemented for every event `A` lists and its event
/// enum (by the derive), for `()`, `Option<E>`, `Vec<E>`, arrays and tuples of
/// its events, and for `Result<X, Err>` of any of those, whose `Err` becomes
/// the command's rejection.
///
/// ```
/// use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Opened;
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Noted;
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(events(Opened, Noted))]
/// # pub struct Ticket;
/// # impl Apply<Opened> for Ticket { fn apply(&mut self, _: &Opened) {} }
/// # impl Apply<Noted> for Ticket { fn apply(&mut self, _: &Noted) {} }
/// let two = IntoEvents::<Ticket>::into_events((Opened, Noted));
/// assert_eq!(two.map(|v| v.len()), Ok(2));
/// let none = IntoEvents::<Ticket>::into_events(Ok::<(), &str>(()));
/// assert_eq!(none.map(|v| v.len()), Ok(0));
/// let refused = IntoEvents::<Ticket>::into_events(Err::<Option<Opened>, &str>("closed"));
/// assert_eq!(refused.map(|v| v.len()), Err("closed"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of `{A}`",
    label = "not one of `{A}`'s events",
    note = "add it to `#[aggregate(events(...))]` on `{A}`, or return one of the events listed there"
)]
pub trait IntoEvents<A: Aggregate> {
    /// Why the decision refused the command.
    type Error;

    /// The events in order, or the refusal.
    ///
    /// # Errors
    ///
    /// The decision's refusal.
    fn into_events(self) -> Result<Vec<A::Event>, Self::Error>;
}

/// The events of `A`, or `Infallible`: what a decision that cannot refuse returns.
pub type Events<A> = Result<Vec<<A as Aggregate>::Event>, Infallible>;

#[diagnostic::do_not_recommend]
impl<A: Aggregate> IntoEvents<A> for () {
    type Error = Infallible;
    fn into_events(self) -> Events<A> {
        Ok(Vec::new())
    }
}

#[diagnostic::do_not_recommend]
impl<A: Aggregate, X: Into<A::Event>> IntoEvents<A> for Option<X> {
    type Error = Infallible;
    fn into_events(self) -> Events<A> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

#[diagnostic::do_not_recommend]
impl<A: Aggregate, X: Into<A::Event>> IntoEvents<A> for Vec<X> {
    type Error = Infallible;
    fn into_events(self) -> Events<A> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

#[diagnostic::do_not_recommend]
impl<A: Aggregate, X: Into<A::Event>, const N: usize> IntoEvents<A> for [X; N] {
    type Error = Infallible;
    fn into_events(self) -> Events<A> {
        Ok(self.into_iter().map(Into::into).collect())
    }
}

macro_rules! tuple_into_events {
    ($($x:ident),+) => {
        #[diagnostic::do_not_recommend]
        impl<Agg: Aggregate, $($x: Into<Agg::Event>),+> IntoEvents<Agg> for ($($x,)+) {
            type Error = Infallible;
            #[allow(non_snake_case)]
            fn into_events(self) -> Events<Agg> {
                let ($($x,)+) = self;
                Ok(vec![$($x.into()),+])
            }
        }
    };
}
tuple_into_events!(A, B);
tuple_into_events!(A, B, C);
tuple_into_events!(A, B, C, D);
tuple_into_events!(A, B, C, D, E);
tuple_into_events!(A, B, C, D, E, F);

#[diagnostic::do_not_recommend]
impl<A: Aggregate, X, Err> IntoEvents<A> for Result<X, Err>
where
    X: IntoEvents<A, Error = Infallible>,
{
    type Error = Err;
    fn into_events(self) -> Result<Vec<A::Event>, Err> {
        match self {
            Ok(x) => match x.into_events() {
                Ok(events) => Ok(events),
                Err(never) => match never {},
            },
            Err(e) => Err(e),
        }
    }
}
