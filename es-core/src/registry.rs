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
        if !errors.is_empty() {
            return Err(RegistryErrors(errors));
        }
        let events = by_key
            .into_values()
            .map(|key| RegisteredEvent {
                key,
                decodable_versions: key.decodable_versions(),
            })
            .collect();
        Ok(Registry { events, aggregates })
    }
}

fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b { (a, b) } else { (b, a) }
}
