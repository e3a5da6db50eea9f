//! # es-core: event sourcing for Rust
//!
//! Describe a domain with plain structs and two derives; `es` stores every
//! change as an immutable event, rebuilds state by replaying events, and
//! guards concurrent writers with optimistic concurrency.
//!
//! ```
//! use es_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! #[event(name = "ticket-opened")]
//! pub struct TicketOpened { pub title: String }
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct TicketClosed;
//!
//! #[derive(Aggregate, Default, Debug)]
//! #[aggregate(name = "ticket", events(TicketOpened, TicketClosed))]
//! pub struct Ticket { open: bool }
//!
//! impl Apply<TicketOpened> for Ticket { fn apply(&mut self, _: &TicketOpened) { self.open = true } }
//! impl Apply<TicketClosed> for Ticket { fn apply(&mut self, _: &TicketClosed) { self.open = false } }
//!
//! impl Ticket {
//!     pub fn close(&self) -> Result<TicketClosed, &'static str> {
//!         if !self.open { return Err("the ticket is not open") }
//!         Ok(TicketClosed)
//!     }
//! }
//!
//! # es_core::blocking::block_on(async {
//! let tickets = Repository::<Ticket, _>::new(InMemoryStore::new());
//! tickets.execute("t-1", |_| TicketOpened { title: "printer on fire".into() }).await?;
//! tickets.execute("t-1", |t| t.close()).await?;
//! assert!(!tickets.load("t-1").await?.open);
//! assert!(tickets.execute("t-1", |t| t.close()).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The crates: `es-core` (this one: the model, the repository, the store
//! traits, an in-memory store and the test kit; re-exports the derives of
//! `es-derive`) and `es-sqlite` (the embedded default store).
//!
//! Features: `derive` (default) re-exports `#[derive(Event, Aggregate)]`;
//! `inventory` (default) registers derived types in [`registry`]; `testing`
//! adds [`testing`]: the given/when/then kit and the store conformance suite.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
pub mod audit;
pub mod blocking;
mod cache;
mod checkpoint;
pub mod codec;
pub mod diff;
mod envelope;
mod error;
mod event;
pub mod evolution;
pub mod export;
mod gate;
mod id;
mod metadata;
pub mod name;
mod payload;
mod personal;
pub mod privacy;
pub mod projection;
pub mod registry;
mod repository;
pub mod shard;
mod snapshot;
pub mod store;
mod time;
mod trail;
pub mod upcast;
pub mod verify;
mod version;

#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{Aggregate, Apply, SnapshotPolicy};
pub use checkpoint::CheckpointStore;
pub use envelope::{Decoded, Envelope, EventRef, NewEvent, RecordedEvent};
pub use error::{BoxError, Conflict, Error, LimitError, Result};
pub use event::{DecodeError, Decoder, EncodeError, Event, EventKey, EventSet, Events, IntoEvents};
pub use id::{MAX_STREAM_ID_LEN, StreamId, StreamIdError};
pub use metadata::Metadata;
pub use payload::Payload;
pub use personal::Personal;
pub use projection::{Dispatch, Handle, Projected, Projection};
pub use registry::Registry;
pub use repository::{
    Command, CommandConflict, ConflictPolicy, ExecuteError, Executed, Loaded, Repository,
};
pub use shard::ShardedStore;
pub use snapshot::{Snapshot, SnapshotStore};
pub use store::memory::InMemoryStore;
pub use store::{
    AppendResult, EventStore, EventStream, Limits, StoredEventType, StreamWrite, Watch,
};
pub use time::{AsOf, Timestamp, TimestampError};
pub use trail::{Trail, TrailEntry};
pub use version::{ExpectedVersion, ReadRange};

/// The derive macros (with the default `derive` feature).
#[cfg(feature = "derive")]
pub use es_derive::{Aggregate, Event, Projection};

/// Re-exported so users need no direct dependency for event ids.
pub use uuid::Uuid;

/// Everything a domain module needs: `use es_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, Apply, AsOf, CheckpointStore, ConflictPolicy, Decoded, Envelope, Event,
        EventSet, EventStore, ExecuteError, ExpectedVersion, Handle, InMemoryStore, IntoEvents,
        Loaded, Metadata, Personal, Projection, Registry, Repository, SnapshotStore, StreamId,
        Timestamp, Trail,
    };
}
