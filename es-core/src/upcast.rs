//! Raw-payload upcasters: the changes to stored events that a typed
//! `upcast_from` + `From` chain cannot express.
//!
//! A typed chain turns an old payload of one event into its current type.
//! A raw upcaster works on the stored event itself, before any typed
//! decoding, keyed by (aggregate type, name, schema version):
//!
//! - [`RawUpcaster::rename`]: the event was renamed (old name to new name,
//!   and the schema version the payload has under the new name);
//! - [`RawUpcaster::reshape`]: its JSON changed in a way no serde type of
//!   the old version describes (a field moved into an object, a list
//!   flattened): a function rewrites the JSON, and the result is read at a
//!   new schema version;
//! - [`RawUpcaster::split`]: one stored event became several;
//! - [`RawUpcaster::remove`]: the event no longer means anything; readers
//!   never see it (it still counts in its stream's version: it is stored);
//! - [`RawUpcaster::move_to`]: the event now belongs to another aggregate
//!   type; readers see that type in the envelope, and projections that list
//!   aggregates take it as the new aggregate's.
//!
//! Declare them in your code with [`upcasters!`](crate::upcasters); they are
//! registered through `inventory` (the default `inventory` feature) and run
//! on every read path: repository loads and folds, `history`, per-stream
//! projections, read models (whose store queries also select the old names
//! a listed event was upcast from), and `$all` readers through
//! [`Envelope::upcast`](crate::Envelope::upcast).
//!
//! **Order.** An event runs through the upcaster of its (aggregate type,
//! name, version), then each event that produced through the upcaster of
//! *its* key, and so on, depth first, keeping order, until no upcaster
//! matches; then the typed chain decodes what is left. So `rename` then a
//! typed `upcast_from`, or `rename` then `split`, compose.
//! [`registry::validate`](crate::registry::validate) checks the graph: no
//! cycles, one upcaster per key, every chain ends at an event this program
//! decodes, and no raw upcaster silently takes a key a typed chain decodes
//! too ([`RawUpcaster::overriding_typed`] says it does so on purpose).
//!
//! ```standalone_crate
//! use es_core::prelude::*;
//! use es_core::upcast::RawUpcaster;
//! use es_core::{BoxError, Error, NewEvent};
//! use serde::{Deserialize, Serialize};
//!
//! /// Today's event: `ticket-reopened` was renamed, and its reason moved
//! /// into an object.
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! #[event(name = "ticket-reactivated", version = 2)]
//! pub struct Reactivated { pub why: Why }
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Why { pub text: String }
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "ticket", events(Reactivated))]
//! pub struct Ticket { reactivations: Vec<String> }
//! impl Apply<Reactivated> for Ticket {
//!     fn apply(&mut self, e: &Reactivated) { self.reactivations.push(e.why.text.clone()) }
//! }
//!
//! fn nest_reason(payload: &mut serde_json::Value) -> Result<(), BoxError> {
//!     let reason = payload.get("reason").cloned().ok_or("no reason")?;
//!     *payload = serde_json::json!({ "why": { "text": reason } });
//!     Ok(())
//! }
//!
//! es_core::upcasters! {
//!     // Old name, version 1 -> the new name, same payload, version 1 ...
//!     RawUpcaster::rename("ticket", "ticket-reopened", 1, "ticket-reactivated", 1),
//!     // ... whose payload is then reshaped into version 2.
//!     RawUpcaster::reshape("ticket", "ticket-reactivated", 1, 2, nest_reason),
//! }
//!
//! es_core::registry::validate()?;
//! # es_core::blocking::block_on(async {
//! let store = InMemoryStore::new();
//! let old = NewEvent::new("ticket", "ticket-reopened", 1, r#"{"reason":"customer called"}"#);
//! store.append(&StreamId::new("ticket-1")?, ExpectedVersion::NoStream, vec![old]).await?;
//! let ticket = Repository::<Ticket, _>::new(store).load("1").await?;
//! assert_eq!(ticket.reactivations, ["customer called"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::BoxError;
use crate::event::DecodeError;

/// A stored event as a raw upcaster sees it and returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The aggregate type it belongs to.
    pub aggregate_type: String,
    /// Its name.
    pub name: String,
    /// Its payload's schema version.
    pub version: u32,
    /// Its payload.
    pub payload: Value,
}

/// What a [`RawUpcaster`] does with an event of its key.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Change {
    /// Renames the event; the payload is read at `version` under the new name.
    Rename {
        /// The new name.
        name: &'static str,
        /// The schema version of the payload under the new name.
        version: u32,
    },
    /// Rewrites the JSON; the result is read at `version`, same name.
    Reshape {
        /// The schema version the rewritten payload has.
        version: u32,
        /// The rewrite.
        reshape: fn(&mut Value) -> Result<(), BoxError>,
    },
    /// Replaces the event with the events a function returns (none, one or
    /// several), each named among `produces`.
    Split {
        /// Every (name, version) the function may return: the registry
        /// checks them, and read models select the stored event when they
        /// list one of them.
        produces: &'static [(&'static str, u32)],
        /// The replacement.
        split: fn(RawEvent) -> Result<Vec<RawEvent>, BoxError>,
    },
    /// Readers never see the event.
    Remove,
    /// The event belongs to aggregate type `aggregate` now.
    MoveTo {
        /// The new aggregate type.
        aggregate: &'static str,
    },
}

/// One raw upcaster: what it applies to, and what it does. Build one with
/// its constructors and register it with [`upcasters!`](crate::upcasters).
#[derive(Clone, Copy)]
pub struct RawUpcaster {
    /// The aggregate type of the events it applies to.
    pub aggregate: &'static str,
    /// Their stored name.
    pub name: &'static str,
    /// Their stored schema version.
    pub version: u32,
    /// What it does.
    pub change: Change,
    /// Whether it takes a (name, version) that a typed chain decodes too, on
    /// purpose ([`overriding_typed`](RawUpcaster::overriding_typed)).
    pub overrides_typed: bool,
}

impl RawUpcaster {
    /// Event `name` at `version` of aggregate `aggregate` was renamed
    /// `to_name`; its payload is read at `to_version` under that name.
    pub const fn rename(
        aggregate: &'static str,
        name: &'static str,
        version: u32,
        to_name: &'static str,
        to_version: u32,
    ) -> Self {
        Self::new(
            aggregate,
            name,
            version,
            Change::Rename {
                name: to_name,
                version: to_version,
            },
        )
    }

    /// The payload of `name` at `version` is rewritten by `reshape` and read
    /// at `to_version`.
    pub const fn reshape(
        aggregate: &'static str,
        name: &'static str,
        version: u32,
        to_version: u32,
        reshape: fn(&mut Value) -> Result<(), BoxError>,
    ) -> Self {
        Self::new(
            aggregate,
            name,
            version,
            Change::Reshape {
                version: to_version,
                reshape,
            },
        )
    }

    /// `name` at `version` is replaced by the events `split` returns, each
    /// one of `produces`.
    pub const fn split(
        aggregate: &'static str,
        name: &'static str,
        version: u32,
        produces: &'static [(&'static str, u32)],
        split: fn(RawEvent) -> Result<Vec<RawEvent>, BoxError>,
    ) -> Self {
        Self::new(aggregate, name, version, Change::Split { produces, split })
    }

    /// `name` at `version` is never shown to readers.
    pub const fn remove(aggregate: &'static str, name: &'static str, version: u32) -> Self {
        Self::new(aggregate, name, version, Change::Remove)
    }

    /// `name` at `version` of `aggregate` belongs to aggregate type
    /// `to_aggregate` now.
    pub const fn move_to(
        aggregate: &'static str,
        name: &'static str,
        version: u32,
        to_aggregate: &'static str,
    ) -> Self {
        Self::new(
            aggregate,
            name,
            version,
            Change::MoveTo {
                aggregate: to_aggregate,
            },
        )
    }

    /// Says that this upcaster takes a (name, version) a typed chain also
    /// decodes, on purpose: it runs first, and the typed chain never sees
    /// the stored payload.
    #[must_use]
    pub const fn overriding_typed(mut self) -> Self {
        self.overrides_typed = true;
        self
    }

    const fn new(
        aggregate: &'static str,
        name: &'static str,
        version: u32,
        change: Change,
    ) -> Self {
        RawUpcaster {
            aggregate,
            name,
            version,
            change,
            overrides_typed: false,
        }
    }

    /// The key it applies to.
    pub fn key(&self) -> (&'static str, &'static str, u32) {
        (self.aggregate, self.name, self.version)
    }

    /// Every (aggregate type, name, version) it may produce.
    pub fn produces(&self) -> Vec<(&'static str, &'static str, u32)> {
        match self.change {
            Change::Rename { name, version } => vec![(self.aggregate, name, version)],
            Change::Reshape { version, .. } => vec![(self.aggregate, self.name, version)],
            Change::Split { produces, .. } => produces
                .iter()
                .map(|&(name, version)| (self.aggregate, name, version))
                .collect(),
            Change::Remove => Vec::new(),
            Change::MoveTo { aggregate } => vec![(aggregate, self.name, self.version)],
        }
    }

    /// Runs it on `event` (of its key).
    fn run(&self, mut event: RawEvent) -> Result<Vec<RawEvent>, BoxError> {
        match self.change {
            Change::Rename { name, version } => {
                name.clone_into(&mut event.name);
                event.version = version;
                Ok(vec![event])
            }
            Change::Reshape { version, reshape } => {
                reshape(&mut event.payload)?;
                event.version = version;
                Ok(vec![event])
            }
            Change::Split { produces, split } => {
                let aggregate = event.aggregate_type.clone();
                let events = split(event)?;
                for e in &events {
                    if e.aggregate_type != aggregate
                        || !produces.contains(&(e.name.as_str(), e.version))
                    {
                        return Err(format!(
                            "it returned `{}` version {} of aggregate `{}`, which it does not declare",
                            e.name, e.version, e.aggregate_type
                        )
                        .into());
                    }
                }
                Ok(events)
            }
            Change::Remove => Ok(Vec::new()),
            Change::MoveTo { aggregate } => {
                aggregate.clone_into(&mut event.aggregate_type);
                Ok(vec![event])
            }
        }
    }
}

impl fmt::Debug for RawUpcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let change = match self.change {
            Change::Rename { name, version } => format!("rename to `{name}` v{version}"),
            Change::Reshape { version, .. } => format!("reshape to v{version}"),
            Change::Split { produces, .. } => format!("split into {produces:?}"),
            Change::Remove => "remove".to_owned(),
            Change::MoveTo { aggregate } => format!("move to aggregate `{aggregate}`"),
        };
        write!(
            f,
            "RawUpcaster(`{}` `{}` v{}: {change})",
            self.aggregate, self.name, self.version
        )
    }
}

#[cfg(feature = "inventory")]
inventory::collect!(RawUpcaster);

/// Registers raw upcasters (with the default `inventory` feature): each
/// argument is a [`RawUpcaster`] built by one of its constructors. See the
/// [module docs](crate::upcast).
#[macro_export]
macro_rules! upcasters {
    ($($upcaster:expr),+ $(,)?) => {
        $( $crate::__private::inventory::submit! { $upcaster } )+
    };
}

/// The registered upcasters, by key; a key with two is kept as a conflict
/// (reads of it fail; the registry reports it).
struct Table {
    by_key: HashMap<(&'static str, &'static str, u32), Result<&'static RawUpcaster, ()>>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_key = HashMap::new();
        for upcaster in registered() {
            by_key
                .entry(upcaster.key())
                .and_modify(|slot| *slot = Err(()))
                .or_insert(Ok(upcaster));
        }
        Table { by_key }
    })
}

/// Every raw upcaster linked into this program (none without the
/// `inventory` feature).
pub fn registered() -> Vec<&'static RawUpcaster> {
    #[cfg(feature = "inventory")]
    {
        inventory::iter::<RawUpcaster>.into_iter().collect()
    }
    #[cfg(not(feature = "inventory"))]
    {
        Vec::new()
    }
}

/// Whether a raw upcaster applies to stored events of this key.
pub fn applies(aggregate_type: &str, name: &str, version: u32) -> bool {
    let table = table();
    !table.by_key.is_empty()
        && table
            .by_key
            .contains_key(&(aggregate_type, name, version) as &dyn KeyRef)
}

/// The longest chain of upcasters one stored event may run through: a
/// longer one is a cycle the registry was not asked to check.
const MAX_DEPTH: usize = 64;

/// Runs `event` through every upcaster that applies, in order (see the
/// module docs); `None` when none applies to it (the common case, without
/// allocating).
///
/// # Errors
///
/// [`DecodeError::Upcast`] when an upcaster fails (its payload is not the
/// JSON it expects), two claim one key, or the chain runs past 64 steps.
pub fn upcast(
    aggregate_type: &str,
    name: &str,
    version: u32,
    payload: &str,
) -> Result<Option<Vec<RawEvent>>, DecodeError> {
    if !applies(aggregate_type, name, version) {
        return Ok(None);
    }
    let failed = |reason: String| DecodeError::Upcast {
        name: name.to_owned(),
        version,
        reason,
    };
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| failed(format!("the stored payload is not JSON: {e}")))?;
    let mut pending = vec![(
        0,
        RawEvent {
            aggregate_type: aggregate_type.to_owned(),
            name: name.to_owned(),
            version,
            payload,
        },
    )];
    let mut done = Vec::new();
    // Depth first, in order: a stack of (depth, event), taken from the end,
    // with each upcaster's output pushed in reverse.
    while let Some((depth, event)) = pending.pop() {
        let key = (
            event.aggregate_type.as_str(),
            event.name.as_str(),
            event.version,
        );
        let Some(slot) = table().by_key.get(&key as &dyn KeyRef) else {
            done.push(event);
            continue;
        };
        let upcaster = slot.map_err(|()| {
            failed(format!(
                "two raw upcasters claim `{}` `{}` version {}",
                key.0, key.1, key.2
            ))
        })?;
        if depth >= MAX_DEPTH {
            return Err(failed(format!(
                "the upcasters run in a cycle (more than {MAX_DEPTH} steps at `{}` version {})",
                key.1, key.2
            )));
        }
        let produced = upcaster
            .run(event)
            .map_err(|e| failed(format!("{upcaster:?} failed: {e}")))?;
        pending.extend(produced.into_iter().rev().map(|e| (depth + 1, e)));
    }
    Ok(Some(done))
}

/// Every stored (aggregate type, name) whose events an upcaster chain may
/// turn into one of `names`: what a store must select, besides `names`
/// themselves, to find every event a projection listing `names` takes.
pub fn stored_sources(names: &[&str]) -> Vec<(&'static str, &'static str)> {
    let upcasters = registered();
    let mut wanted: Vec<(Option<&str>, &str)> = names.iter().map(|n| (None, *n)).collect();
    let mut sources: Vec<(&'static str, &'static str)> = Vec::new();
    // Walk the graph backwards until nothing new is found; it is finite
    // (every key is a registered upcaster's).
    loop {
        let mut grew = false;
        for upcaster in &upcasters {
            let source = (upcaster.aggregate, upcaster.name);
            if sources.contains(&source) {
                continue;
            }
            let feeds = upcaster.produces().iter().any(|&(aggregate, name, _)| {
                wanted
                    .iter()
                    .any(|&(a, n)| n == name && a.is_none_or(|a| a == aggregate))
            });
            if feeds {
                sources.push(source);
                wanted.push((Some(upcaster.aggregate), upcaster.name));
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    sources.sort_unstable();
    sources
}

/// Borrowed lookups in the table without allocating a key: `(&str, &str,
/// u32)` and `(&'static str, &'static str, u32)` hash and compare alike.
trait KeyRef {
    fn key(&self) -> (&str, &str, u32);
}

impl KeyRef for (&str, &str, u32) {
    fn key(&self) -> (&str, &str, u32) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn KeyRef + 'a> for (&'static str, &'static str, u32) {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn KeyRef + '_ {}

impl std::hash::Hash for dyn KeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}
