//! The event registry: every event type and aggregate of the program, by
//! stable name and schema version.
//!
//! `#[derive(Event)]` and `#[derive(Aggregate)]` register what they derive
//! (with the default `inventory` feature). Call [`validate`] at start-up:
//! two event types claiming one (name, version), or an aggregate listing one
//! event name twice, would make stored events ambiguous, and are reported
//! together as typed errors.
//!
//! ```standalone_crate
//! use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Noted { pub text: String }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(events(Noted))]
//! # pub struct Notebook;
//! # impl Apply<Noted> for Notebook { fn apply(&mut self, _: &Noted) {} }
//!
//! let registry = es_core::registry::validate()?;
//! assert!(registry.decodes("noted", 1));
//! assert!(!registry.decodes("noted", 2));
//!
//! // Without inventory: an explicit registry.
//! let explicit = Registry::builder().aggregate::<Notebook>().build()?;
//! assert_eq!(explicit.aggregates().count(), 1);
//! # Ok::<(), es_core::registry::RegistryErrors>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::aggregate::Aggregate;
use crate::event::{Event, EventKey, EventSet};
use crate::store::{EventStore, StoredEventType};
use crate::upcast::RawUpcaster;

/// One event type, as registered by `#[derive(Event)]`.
#[derive(Debug, Clone, Copy)]
pub struct EventRegistration {
    /// The event's key.
    pub key: EventKey,
}

impl EventRegistration {
    /// The registration of `E`.
    pub const fn of<E: Event>() -> Self {
        EventRegistration {
            key: EventKey::of::<E>(),
        }
    }
}

/// One aggregate type, as registered by `#[derive(Aggregate)]`.
#[derive(Debug, Clone, Copy)]
pub struct AggregateRegistration {
    /// The aggregate's stable name.
    pub name: &'static str,
    /// The Rust type's name.
    pub type_name: fn() -> &'static str,
    /// The events it lists.
    pub events: &'static [EventKey],
}

impl AggregateRegistration {
    /// The registration of `A`.
    pub const fn of<A: Aggregate>() -> Self {
        AggregateRegistration {
            name: A::NAME,
            type_name: std::any::type_name::<A>,
            events: <A::Event as EventSet>::EVENTS,
        }
    }
}

#[cfg(feature = "inventory")]
inventory::collect!(EventRegistration);
#[cfg(feature = "inventory")]
inventory::collect!(AggregateRegistration);

/// A problem found by [`validate`] or [`RegistryBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two event types claim the same name and version.
    #[error("event `{name}` version {version} is claimed by both `{first}` and `{second}`")]
    DuplicateEvent {
        /// The name.
        name: &'static str,
        /// The version.
        version: u32,
        /// One type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// An aggregate lists two events with one name.
    #[error("aggregate `{aggregate}` lists event `{name}` twice (types `{first}` and `{second}`)")]
    DuplicateInAggregate {
        /// The aggregate.
        aggregate: &'static str,
        /// The event name.
        name: &'static str,
        /// One type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// Two aggregate types share a name (and so share streams).
    #[error("aggregate name `{name}` is used by both `{first}` and `{second}`")]
    DuplicateAggregate {
        /// The name.
        name: &'static str,
        /// One type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// Two raw upcasters claim one stored (aggregate type, name, version).
    #[error("two raw upcasters claim event `{name}` version {version} of aggregate `{aggregate}`")]
    DuplicateUpcaster {
        /// The aggregate type.
        aggregate: &'static str,
        /// The event name.
        name: &'static str,
        /// The schema version.
        version: u32,
    },
    /// Raw upcasters run in a cycle through this key.
    #[error(
        "raw upcasters of event `{name}` version {version} of aggregate `{aggregate}` run in a cycle"
    )]
    UpcastCycle {
        /// The aggregate type.
        aggregate: &'static str,
        /// The event name.
        name: &'static str,
        /// The schema version.
        version: u32,
    },
    /// A chain of raw upcasters ends at an event no registered type decodes.
    #[error(
        "the raw upcasters of event `{name}` version {version} of aggregate `{aggregate}` end at `{ends_at}` version {ends_version}, which no event type of this program decodes"
    )]
    UpcastDeadEnd {
        /// The aggregate type.
        aggregate: &'static str,
        /// The event name the chain starts at.
        name: &'static str,
        /// Its schema version.
        version: u32,
        /// The name the chain ends at.
        ends_at: &'static str,
        /// The version it ends at.
        ends_version: u32,
    },
    /// A raw upcaster takes a (name, version) that a typed chain decodes
    /// too, without saying so (`RawUpcaster::overriding_typed`): the typed
    /// decoding of it would never run.
    #[error(
        "a raw upcaster takes event `{name}` version {version} of aggregate `{aggregate}`, which `{typed}` decodes too; mark it `.overriding_typed()` if that is meant"
    )]
    ShadowsTyped {
        /// The aggregate type.
        aggregate: &'static str,
        /// The event name.
        name: &'static str,
        /// The schema version.
        version: u32,
        /// The event type whose chain decodes it.
        typed: &'static str,
    },
    /// Nothing registered at all: this platform does not run `inventory`'s
    /// registrations, so build the registry with [`Registry::builder`].
    #[error("no event or aggregate is registered; on this platform use `Registry::builder()`")]
    Empty,
}

/// Every problem found, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RegistryErrors(pub Vec<RegistryError>);

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the event registry", self.0.len())?;
        for e in &self.0 {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// A registered event with every schema version it decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredEvent {
    /// The event's key (name, current version, type).
    pub key: EventKey,
    /// The versions it decodes, oldest first.
    pub decodable_versions: Vec<u32>,
}

/// A validated set of events and aggregates, sorted by name and version.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    events: Vec<RegisteredEvent>,
    aggregates: Vec<AggregateRegistration>,
    upcasters: Vec<&'static RawUpcaster>,
}

impl Registry {
    /// An empty builder.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Every registration linked into this program, validated.
    ///
    /// # Errors
    ///
    /// Every problem found, or [`RegistryError::Empty`] when nothing is
    /// registered.
    #[cfg(feature = "inventory")]
    pub fn from_inventory() -> Result<Registry, RegistryErrors> {
        let mut builder = RegistryBuilder::default();
        builder
            .events
            .extend(inventory::iter::<EventRegistration>.into_iter().copied());
        builder.aggregates.extend(
            inventory::iter::<AggregateRegistration>
                .into_iter()
                .copied(),
        );
        if builder.events.is_empty() && builder.aggregates.is_empty() {
            return Err(RegistryErrors(vec![RegistryError::Empty]));
        }
        builder.upcasters = crate::upcast::registered();
        builder.build()
    }

    /// Whether an event stored as (`name`, `version`) decodes in this program.
    pub fn decodes(&self, name: &str, version: u32) -> bool {
        self.events
            .iter()
            .any(|e| e.key.name == name && e.decodable_versions.contains(&version))
    }

    /// The registered events, sorted by (name, version).
    pub fn events(&self) -> impl Iterator<Item = &RegisteredEvent> {
        self.events.iter()
    }

    /// The registered aggregates, sorted by name.
    pub fn aggregates(&self) -> impl Iterator<Item = &AggregateRegistration> {
        self.aggregates.iter()
    }

    /// The raw upcasters checked with it (those linked through `inventory`,
    /// for a registry of [`validate`]), sorted by key.
    pub fn upcasters(&self) -> impl Iterator<Item = &'static RawUpcaster> + '_ {
        self.upcasters.iter().copied()
    }

    /// Whether a stored event (`aggregate`, `name`, `version`) decodes in
    /// this program: through its raw upcasters, each event they produce
    /// decodes; without one, a registered type decodes it.
    pub fn decodes_stored(&self, aggregate: &str, name: &str, version: u32) -> bool {
        let upcaster = self
            .upcasters
            .iter()
            .find(|u| (u.aggregate, u.name, u.version) == (aggregate, name, version));
        match upcaster {
            None => self.decodes(name, version),
            Some(upcaster) => upcaster
                .produces()
                .iter()
                .all(|&(a, n, v)| (a, n, v) != upcaster.key() && self.decodes_stored(a, n, v)),
        }
    }
}

/// The deploy check: validates the process-wide registry, then compares it
/// with what `store` holds ([`EventStore::event_types`]: no payload is
/// read). A program should run it before it writes: a store that holds
/// events this build cannot decode was written by a newer build (or needs
/// upcasters), and writing to it would build on state this build cannot
/// see.
///
/// ```standalone_crate
/// use es_core::prelude::*;
/// use es_core::registry::CheckError;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Noted { pub text: String }
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(events(Noted))]
/// # pub struct Notebook;
/// # impl Apply<Noted> for Notebook { fn apply(&mut self, _: &Noted) {} }
///
/// # es_core::blocking::block_on(async {
/// let store = InMemoryStore::new();
/// Repository::<Notebook, _>::new(store.clone()).execute("1", |_| Noted { text: "hi".into() }).await?;
/// es_core::registry::check_store(&store).await?;
///
/// // An event a newer build wrote:
/// let newer = es_core::NewEvent::new("notebook", "notebook-archived", 1, "{}");
/// store.append(&StreamId::new("notebook-1")?, ExpectedVersion::Any, vec![newer]).await?;
/// let Err(CheckError::Undecodable(found)) = es_core::registry::check_store(&store).await else {
///     panic!("the check finds it");
/// };
/// assert_eq!(found.0[0].name, "notebook-archived");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`CheckError::Registry`] for an invalid registry,
/// [`CheckError::Undecodable`] listing the stored event types this program
/// cannot decode, [`CheckError::Store`] when the store cannot be read.
#[cfg(feature = "inventory")]
pub async fn check_store<S: EventStore>(store: &S) -> Result<Registry, CheckError> {
    let registry = validate().map_err(CheckError::Registry)?;
    registry.check_store(store).await?;
    Ok(registry)
}

/// Why [`check_store`] refused a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The program's own registry is invalid.
    #[error(transparent)]
    Registry(RegistryErrors),
    /// The store holds events this program cannot decode.
    #[error(transparent)]
    Undecodable(Undecodable),
    /// The store cannot be read.
    #[error(transparent)]
    Store(crate::Error),
}

/// The stored event types a program cannot decode, with their counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Undecodable(pub Vec<StoredEventType>);

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store holds {} kind(s) of event this program cannot decode (written by a newer build?): ",
            self.0.len()
        )?;
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{t}")?;
        }
        f.write_str("; run a build that decodes them, or register upcasters for them")
    }
}

impl Registry {
    /// The stored event types of `store` this registry cannot decode (see
    /// [`decodes_stored`](Registry::decodes_stored)), sorted.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    pub async fn undecodable<S: EventStore>(
        &self,
        store: &S,
    ) -> crate::Result<Vec<StoredEventType>> {
        let types = store.event_types().await?;
        Ok(types
            .into_iter()
            // The framework's own events (a moved stream's marker, the
            // record of a forgotten subject) are read by the framework, not
            // decoded.
            .filter(|t| t.name != crate::evolution::MOVED)
            .filter(|t| {
                !(t.aggregate_type == crate::privacy::SUBJECT_AGGREGATE
                    && t.name == crate::privacy::FORGOTTEN_EVENT)
            })
            .filter(|t| !self.decodes_stored(&t.aggregate_type, &t.name, t.schema_version))
            .collect())
    }

    /// The deploy check with this registry (see [`check_store`]).
    ///
    /// # Errors
    ///
    /// [`CheckError::Undecodable`] or [`CheckError::Store`].
    pub async fn check_store<S: EventStore>(&self, store: &S) -> Result<(), CheckError> {
        let undecodable = self.undecodable(store).await.map_err(CheckError::Store)?;
        if undecodable.is_empty() {
            Ok(())
        } else {
            Err(CheckError::Undecodable(Undecodable(undecodable)))
        }
    }
}

/// Validates the process-wide registry (see the module docs).
///
/// # Errors
///
/// As [`Registry::from_inventory`].
#[cfg(feature = "inventory")]
pub fn validate() -> Result<Registry, RegistryErrors> {
    Registry::from_inventory()
}

/// Builds a [`Registry`] explicitly (no `inventory` needed).
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    events: Vec<EventRegistration>,
    aggregates: Vec<AggregateRegistration>,
    upcasters: Vec<&'static RawUpcaster>,
}

impl RegistryBuilder {
    /// Adds event type `E`.
    #[must_use]
    pub fn event<E: Event>(mut self) -> Self {
        self.events.push(EventRegistration::of::<E>());
        self
    }

    /// Adds aggregate `A` and every event it lists.
    #[must_use]
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        let events = <A::Event as EventSet>::EVENTS;
        self.events
            .extend(events.iter().map(|key| EventRegistration { key: *key }));
        self.aggregates.push(AggregateRegistration::of::<A>());
        self
    }

    /// Adds a raw registration (what the derives submit).
    #[must_use]
    pub fn registration(mut self, registration: EventRegistration) -> Self {
        self.events.push(registration);
        self
    }

    /// Adds a raw aggregate registration.
    #[must_use]
    pub fn aggregate_registration(mut self, registration: AggregateRegistration) -> Self {
        self.aggregates.push(registration);
        self
    }

    /// Checks every rule and returns the registry, or every problem found.
    ///
    /// # Errors
    ///
    /// Every problem found, in a stable order.
    pub fn build(self) -> Result<Registry, RegistryErrors> {
        let mut errors = Vec::new();
        // Events listed by aggregates count as registered too.
        let listed = self
            .aggregates
            .iter()
            .flat_map(|a| a.events.iter().copied());
        // Sorted first, so the errors do not depend on registration order
        // (inventory's is arbitrary).
        let mut keys: Vec<EventKey> = self.events.iter().map(|r| r.key).chain(listed).collect();
        keys.sort_by_key(|k| (k.name, k.version, k.type_name()));
        let mut by_key: BTreeMap<(&'static str, u32), EventKey> = BTreeMap::new();
        for key in keys {
            match by_key.get(&(key.name, key.version)) {
                Some(existing) if existing.type_id() != key.type_id() => {
                    let (first, second) = ordered(existing.type_name(), key.type_name());
                    let error = RegistryError::DuplicateEvent {
                        name: key.name,
                        version: key.version,
                        first,
                        second,
                    };
                    if !errors.contains(&error) {
                        errors.push(error);
                    }
                }
                Some(_) => {}
                None => {
                    by_key.insert((key.name, key.version), key);
                }
            }
        }
        let mut aggregates = self.aggregates;
        aggregates.sort_by_key(|a| (a.name, (a.type_name)()));
        aggregates.dedup_by(|a, b| a.name == b.name && (a.type_name)() == (b.type_name)());
        for pair in aggregates.windows(2) {
            if pair[0].name == pair[1].name {
                let (first, second) = ordered((pair[0].type_name)(), (pair[1].type_name)());
                errors.push(RegistryError::DuplicateAggregate {
                    name: pair[0].name,
                    first,
                    second,
                });
            }
        }
        for aggregate in &aggregates {
            for (i, a) in aggregate.events.iter().enumerate() {
                if let Some(b) = aggregate.events[..i].iter().find(|b| b.name == a.name) {
                    errors.push(RegistryError::DuplicateInAggregate {
                        aggregate: aggregate.name,
                        name: a.name,
                        first: b.type_name(),
                        second: a.type_name(),
                    });
                }
            }
        }
        let events: Vec<RegisteredEvent> = by_key
            .into_values()
            .map(|key| RegisteredEvent {
                key,
                decodable_versions: key.decodable_versions(),
            })
            .collect();
        let mut upcasters = self.upcasters;
        upcasters.sort_by_key(|u| u.key());
        check_upcasters(&upcasters, &events, &mut errors);
        if !errors.is_empty() {
            return Err(RegistryErrors(errors));
        }
        Ok(Registry {
            events,
            aggregates,
            upcasters,
        })
    }
}

/// The rules of the raw upcaster graph (see [`RegistryError`]'s upcaster
/// variants); `upcasters` is sorted by key.
fn check_upcasters(
    upcasters: &[&'static RawUpcaster],
    events: &[RegisteredEvent],
    errors: &mut Vec<RegistryError>,
) {
    type Key = (&'static str, &'static str, u32);
    let decodes = |name: &str, version: u32| {
        events
            .iter()
            .find(|e| e.key.name == name && e.decodable_versions.contains(&version))
    };
    for pair in upcasters.windows(2) {
        if pair[0].key() == pair[1].key() {
            let (aggregate, name, version) = pair[0].key();
            let error = RegistryError::DuplicateUpcaster {
                aggregate,
                name,
                version,
            };
            if !errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    let by_key: BTreeMap<Key, &RawUpcaster> = upcasters.iter().map(|u| (u.key(), *u)).collect();
    for upcaster in upcasters {
        let (aggregate, name, version) = upcaster.key();
        // One that keeps its (name, version) (a move to another aggregate)
        // leaves the typed decoding of it in place.
        let keeps_key = upcaster
            .produces()
            .iter()
            .any(|&(_, n, v)| (n, v) == (name, version));
        if !upcaster.overrides_typed
            && !keeps_key
            && let Some(typed) = decodes(name, version)
        {
            errors.push(RegistryError::ShadowsTyped {
                aggregate,
                name,
                version,
                typed: typed.key.type_name(),
            });
        }
        // Every path from this key: a cycle, or ends that nothing decodes.
        let mut stack: Vec<(Key, Vec<Key>)> = vec![(upcaster.key(), vec![upcaster.key()])];
        let mut cycle = false;
        let mut dead_ends = Vec::new();
        while let Some((key, path)) = stack.pop() {
            let Some(step) = by_key.get(&key) else {
                if decodes(key.1, key.2).is_none() && !dead_ends.contains(&key) {
                    dead_ends.push(key);
                }
                continue;
            };
            for next in step.produces() {
                if path.contains(&next) {
                    cycle = true;
                    continue;
                }
                let mut longer = path.clone();
                longer.push(next);
                stack.push((next, longer));
            }
        }
        if cycle {
            errors.push(RegistryError::UpcastCycle {
                aggregate,
                name,
                version,
            });
        }
        dead_ends.sort_unstable();
        for (_, ends_at, ends_version) in dead_ends {
            errors.push(RegistryError::UpcastDeadEnd {
                aggregate,
                name,
                version,
                ends_at,
                ends_version,
            });
        }
    }
}

fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b { (a, b) } else { (b, a) }
}
