//! Who did what, why, and because of what: one business transaction read
//! back across aggregates ([`trail_of`]), and the event ids of idempotent
//! commands ([`command_event_id`]).
//!
//! Every event a [`Repository`](crate::Repository) appends records its
//! [`Metadata`](crate::Metadata): who (actor), which command and why
//! (reason), the command id, and two links:
//!
//! - the **correlation id** names the business transaction: every event
//!   one request set off shares it, whichever aggregate it is in. A command
//!   nothing caused starts a transaction: its correlation is its command id
//!   when it has one, else the id of its first event (that event, the
//!   root, records none: an event without a correlation id is its own
//!   transaction's root, see [`Envelope::correlation`](crate::Envelope::correlation));
//! - the **causation id** names the event that caused the command (a
//!   process manager or a projection reacting to it), set with
//!   [`Command::caused_by`](crate::Command::caused_by), which carries the
//!   cause's correlation forward too.
//!
//! So the events of one transaction form a tree of causes, and
//! [`trail_of`] gives it back in `$all` order, each event with its parent.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::audit;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct OrderPlaced { pub total: u64 }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "order", events(OrderPlaced))]
//! # pub struct Order;
//! # impl Apply<OrderPlaced> for Order { fn apply(&mut self, _: &OrderPlaced) {} }
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Reserved { pub items: u64 }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "stock", events(Reserved))]
//! # pub struct Stock;
//! # impl Apply<Reserved> for Stock { fn apply(&mut self, _: &Reserved) {} }
//!
//! # pollster::block_on(async {
//! let store = InMemoryStore::new();
//! let orders = Repository::<Order, _>::new(store.clone());
//! let stock = Repository::<Stock, _>::new(store.clone());
//!
//! let placed = orders
//!     .execute_with("o-1", Metadata::new().actor("ada").command("place"), |_| OrderPlaced { total: 3 })
//!     .await?;
//! // A process manager reacts to the event: its command names it as the cause.
//! let event = &orders.history("o-1").await?[0];
//! stock.command("s-9")
//!     .metadata(Metadata::new().actor("reservations").command("reserve"))
//!     .caused_by(event)
//!     .execute(|_| Reserved { items: 3 })
//!     .await?;
//!
//! let trail = audit::trail_of(&store, event.correlation()).await?;
//! let lines: Vec<_> = trail.iter().map(|e| (e.stream_id.as_str(), e.depth())).collect();
//! assert_eq!(lines, [("order-o-1", 0), ("stock-s-9", 1)]);
//! assert_eq!(trail.parent_of(&trail.entries()[1]).map(|p| p.event_id), Some(event.event_id));
//! # let _ = placed;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;

use uuid::Uuid;

use crate::envelope::RecordedEvent;
use crate::error::Result;
use crate::store::{EventStore, next};

/// The namespace of the UUID v5 event ids of commands with a command id
/// ([`command_event_id`]). Part of the stored format: it never changes.
pub const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0xbce3_2961_539c_4093_882e_6cb6_5362_f742);

/// The id of event number `index` (0 for the first) of the command with
/// command id `command_id`: the UUID v5, in [`COMMAND_NAMESPACE`], of the
/// command id's 16 bytes followed by `index` as 4 big-endian bytes. Part of
/// the stored format: it never changes.
///
/// A [`Repository`](crate::Repository) gives the events of a command with a
/// command id these ids, so the store itself recognises a second append
/// of the same command (event ids are unique in a store), even when the
/// first answer was lost, and so a command id is found again in one lookup
/// ([`EventStore::find_event`]). The stream is not part of the name: the
/// same command id given to a command on another aggregate collides with
/// the first, and is refused
/// ([`Error::CommandIdReused`](crate::Error::CommandIdReused)).
///
/// ```
/// use es_core::{Uuid, audit::command_event_id};
///
/// let command = Uuid::parse_str("0190c5f2-7b3a-7cc1-9d2e-4f5a6b7c8d9e")?;
/// assert_eq!(command_event_id(command, 0), command_event_id(command, 0));
/// assert_ne!(command_event_id(command, 0), command_event_id(command, 1));
/// assert_eq!(command_event_id(command, 0).get_version_num(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn command_event_id(command_id: Uuid, index: u32) -> Uuid {
    let mut name = [0u8; 20];
    name[..16].copy_from_slice(command_id.as_bytes());
    name[16..].copy_from_slice(&index.to_be_bytes());
    Uuid::new_v5(&COMMAND_NAMESPACE, &name)
}

/// Every event of the business transaction `correlation_id`, across
/// aggregates, in `$all` order, each with its causation parent: what one
/// request set off, and what caused what. See the [module docs](self) for
/// how events are linked.
///
/// The events are those [`EventStore::read_correlated`] gives: the ones
/// whose correlation id is `correlation_id`, and the one whose own id it is
/// (the root of a transaction its first command started without a command
/// id). A store that holds none gives an empty trail.
///
/// The default [`read_correlated`](EventStore::read_correlated) scans the
/// whole log; es-sqlite filters in its query, so it decodes only the
/// transaction's events, but still reads every row (the schema has no
/// index on correlation ids). It is an audit tool, not a hot path.
///
/// # Errors
///
/// What reading the store fails with.
pub async fn trail_of<S: EventStore>(store: &S, correlation_id: Uuid) -> Result<CorrelationTrail> {
    let mut events = store.read_correlated(correlation_id);
    let mut found = Vec::new();
    while let Some(event) = next(&mut events).await {
        found.push(event?);
    }
    Ok(CorrelationTrail::new(correlation_id, found))
}

/// The events of one business transaction in `$all` order, each with its
/// causation parent among them ([`trail_of`]).
///
/// An entry's *parent* is the entry its
/// [`causation_id`](crate::Metadata::causation_id) names, when that is an
/// earlier entry of the trail; an entry without one is a *root*: an event
/// of the command that started the transaction, or one whose cause is not
/// in the trail (a cause outside the transaction, set by hand).
///
/// `{}` prints the trail as a tree, each event under its parent:
///
/// ```text
/// order-o-1 v1 order-placed (ada: place) @1
///   stock-s-9 v1 reserved (reservations: reserve) @2
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationTrail {
    correlation_id: Uuid,
    entries: Vec<CorrelatedEvent>,
}

/// One event of a [`CorrelationTrail`]: the stored event (dereferences to
/// it) and its place in the causation tree.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelatedEvent {
    event: RecordedEvent,
    parent: Option<u64>,
    children: Vec<u64>,
    depth: usize,
}

impl CorrelationTrail {
    /// The trail of `events`, the events of transaction `correlation_id` in
    /// position order (as [`EventStore::read_correlated`] gives them).
    pub fn new(correlation_id: Uuid, events: Vec<RecordedEvent>) -> Self {
        let index: HashMap<Uuid, usize> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.event_id, i))
            .collect();
        // A cause is stored before what it caused: only an earlier entry
        // can be a parent, so the links form a tree, never a cycle.
        let parents: Vec<Option<usize>> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let cause = e.metadata.causation_id?;
                index.get(&cause).copied().filter(|&p| p < i)
            })
            .collect();
        let mut depths = vec![0; events.len()];
        let mut children = vec![Vec::new(); events.len()];
        for (i, parent) in parents.iter().enumerate() {
            if let Some(p) = *parent {
                depths[i] = depths[p] + 1;
                children[p].push(events[i].position);
            }
        }
        let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
        let entries = events
            .into_iter()
            .zip(parents)
            .zip(children)
            .zip(depths)
            .map(|(((event, parent), children), depth)| CorrelatedEvent {
                event,
                parent: parent.map(|p| positions[p]),
                children,
                depth,
            })
            .collect();
        CorrelationTrail {
            correlation_id,
            entries,
        }
    }

    /// The transaction's id.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// Every entry, in position (`$all`) order.
    pub fn entries(&self) -> &[CorrelatedEvent] {
        &self.entries
    }

    /// Every entry, in position order.
    pub fn iter(&self) -> std::slice::Iter<'_, CorrelatedEvent> {
        self.entries.iter()
    }

    /// The entry at global position `position`.
    pub fn entry(&self, position: u64) -> Option<&CorrelatedEvent> {
        let i = self
            .entries
            .binary_search_by_key(&position, |e| e.event.position)
            .ok()?;
        self.entries.get(i)
    }

    /// The entries without a parent in the trail, in position order.
    pub fn roots(&self) -> impl Iterator<Item = &CorrelatedEvent> {
        self.entries.iter().filter(|e| e.parent.is_none())
    }

    /// The entry that caused `entry`, when it is in the trail.
    pub fn parent_of(&self, entry: &CorrelatedEvent) -> Option<&CorrelatedEvent> {
        self.entry(entry.parent?)
    }

    /// The entries `entry` caused, in position order.
    pub fn children_of<'t>(
        &'t self,
        entry: &'t CorrelatedEvent,
    ) -> impl Iterator<Item = &'t CorrelatedEvent> {
        entry.children.iter().filter_map(|&p| self.entry(p))
    }

    /// The chain of causes of `entry`: the entry itself, its parent, and so
    /// on up to its root.
    pub fn causes_of<'t>(
        &'t self,
        entry: &'t CorrelatedEvent,
    ) -> impl Iterator<Item = &'t CorrelatedEvent> {
        std::iter::successors(Some(entry), |e| self.parent_of(e))
    }

    /// How many events the transaction has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no event of the transaction.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in position order.
    pub fn into_entries(self) -> Vec<CorrelatedEvent> {
        self.entries
    }

    /// One line of the tree.
    fn write_line(
        f: &mut fmt::Formatter<'_>,
        entry: &CorrelatedEvent,
        depth: usize,
    ) -> fmt::Result {
        let e = &entry.event;
        let indent = depth * 2;
        write!(f, "{:indent$}{} v{} {}", "", e.stream_id, e.version, e.name)?;
        match (e.metadata.actor.as_deref(), e.metadata.command.as_deref()) {
            (Some(actor), Some(command)) => write!(f, " ({actor}: {command})")?,
            (Some(one), None) | (None, Some(one)) => write!(f, " ({one})")?,
            (None, None) => {}
        }
        writeln!(f, " @{}", e.position)
    }
}

/// The trail as a tree: each root in position order, each event under
/// the one that caused it, one line each (stream, version, name, actor and
/// command, `@position`).
impl fmt::Display for CorrelationTrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Depth first, with a stack of its own: a chain of causes may be
        // longer than the thread's stack would allow recursion for.
        let mut stack: Vec<&CorrelatedEvent> = self.roots().collect();
        stack.reverse();
        while let Some(entry) = stack.pop() {
            Self::write_line(f, entry, entry.depth)?;
            let first = stack.len();
            stack.extend(self.children_of(entry));
            stack[first..].reverse();
        }
        Ok(())
    }
}

impl<'t> IntoIterator for &'t CorrelationTrail {
    type Item = &'t CorrelatedEvent;
    type IntoIter = std::slice::Iter<'t, CorrelatedEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl CorrelatedEvent {
    /// The stored event and its envelope.
    pub fn event(&self) -> &RecordedEvent {
        &self.event
    }

    /// The stored event and its envelope.
    pub fn into_event(self) -> RecordedEvent {
        self.event
    }

    /// The global position of the entry that caused this one, when it is
    /// in the trail (see [`CorrelationTrail::parent_of`]).
    pub fn parent_position(&self) -> Option<u64> {
        self.parent
    }

    /// The global positions of the entries this one caused, in order.
    pub fn children_positions(&self) -> &[u64] {
        &self.children
    }

    /// How many causes lie between this entry and its root (0: a root).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether the entry has no parent in the trail.
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }
}

impl Deref for CorrelatedEvent {
    type Target = RecordedEvent;

    fn deref(&self) -> &RecordedEvent {
        &self.event
    }
}
