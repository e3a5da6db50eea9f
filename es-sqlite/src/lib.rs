//! # es-sqlite: the embedded event store of `es`
//!
//! One SQLite file, no server. [`SqliteStore`] implements every store trait
//! of [`es_core`]: [`EventStore`](es_core::EventStore) (optimistic
//! concurrency, idempotent appends, atomic multi-stream appends, streaming
//! reads, `$all`), [`SnapshotStore`](es_core::SnapshotStore),
//! [`CheckpointStore`](es_core::CheckpointStore), and live notification of
//! new events.
//!
//! ```
//! use es_core::prelude::*;
//! use es_sqlite::SqliteStore;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Deposited { pub amount: u64 }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "account", events(Deposited))]
//! # pub struct Account { balance: u64 }
//! # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("bank.db"))?;
//! let accounts = es_core::blocking::Repository::<Account, _>::new(store);
//! accounts.execute("a-1", |_| Deposited { amount: 5 })?;
//! assert_eq!(accounts.load("a-1")?.balance, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Durability
//!
//! WAL mode with `synchronous = FULL` by default: every acknowledged append
//! is on disk. [`Durability::Normal`] trades the last moments of appends on
//! an operating-system crash or power loss for speed; see its docs.
//!
//! ## Threads and group commit
//!
//! One writer thread takes every queued request and commits them in one
//! `BEGIN IMMEDIATE` transaction (one flush for many appends); a request
//! that fails its own check (a conflict, a duplicate id) fails alone, and
//! every answer is given only once the transaction has committed, so what
//! it reports is readable at once.
//!
//! Which thread runs SQLite, for every call:
//!
//! - **Writes** (appends, snapshots, checkpoints) run on the writer thread;
//!   the caller's future only waits for the answer. A snapshot the
//!   repository queues ([`queue_snapshot`](es_core::SnapshotStore::queue_snapshot))
//!   rides along with the next batch: no command waits for it.
//! - **Short reads** run on the caller's thread, on a pooled read
//!   connection: a stream's version, the last position, a snapshot, a
//!   checkpoint, an event found by id (`find_event`), the first page (64
//!   events) of a stream, and folds (what
//!   `Repository::load` does). A fold reads one page (512 events, one
//!   statement, one short read transaction) at a time and yields to the
//!   executor between pages, so it holds the caller's thread for one page
//!   at most: about 0.3 ms for 512 Ticket events on this project's CI
//!   machine (`load_stream` folds about 1.7 million events per second).
//! - **Long reads** (the pages of `read_stream` and `read_all` after the
//!   first, and every page of `read_correlated`) run on reader threads, each with its own connection, one short
//!   read transaction per page, the next page asked for as soon as one
//!   arrives, so a slow consumer never holds a snapshot of the log open.
//!
//! A store closes when its last handle, and the last stream read from it,
//! is dropped: queued writes are committed, the readers close, and the
//! writer moves the write-ahead log into the database file, so the `.db`
//! file alone is then a complete copy.
//!
//! ## Integrity
//!
//! Every event row carries a checksum checked on every read; reads refuse
//! gaps in a stream's versions or in `$all`'s positions; opening checks the
//! file's structure ([`Verify`]). A damaged file is a typed error, never a
//! different answer.
//!
//! Once any read or write meets damage (`Error::Corrupt`), the store and
//! all its clones refuse every write with `Error::WritesRefused` until it
//! is opened again ([`SqliteStore::damage_found`] says what was found);
//! reads go on. [`SqliteStore::salvage`] reads past every damaged row
//! and page, to list the damage and recover every event that still reads
//! back whole. An existing empty (0-byte) file, perhaps a truncated copy,
//! is refused ([`OpenError::EmptyFile`]) unless a new store is asked for
//! ([`SqliteOptions::create_new`]).
//!
//! ## The audit chain
//!
//! A checksum finds damage, not a deliberate edit: whoever can write the
//! file can compute a new one. So every event also carries a SHA-256 hash
//! of its stored bytes chained with the hash of the event before it in
//! `$all` order, computed by the writer inside the append's transaction
//! (the format is below: any SHA-256 tool recomputes it).
//! [`SqliteStore::verify_chain`] recomputes the chain and names the first
//! position where a row was edited, deleted, inserted or reordered
//! ([`ChainError`], [`Tamper`]); [`SqliteStore::head`] gives the last
//! event's [`ChainHead`] for an auditor to keep elsewhere, and
//! [`SqliteStore::verify_chain_to`] later proves that nothing at or before
//! it changed, even if the whole chain after an edit was computed again.
//!
//! ```
//! use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
//! use es_core::blocking::block_on;
//!
//! let store = es_sqlite::SqliteStore::open_temporary()?;
//! let stream = StreamId::new("ticket-1")?;
//! block_on(store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("ticket", "opened", 1, "{}")]))?;
//! let kept = block_on(store.head())?;            // kept by the auditor, elsewhere
//! block_on(store.append(&stream, ExpectedVersion::Exact(1), vec![NewEvent::new("ticket", "closed", 1, "{}")]))?;
//! let report = block_on(store.verify_chain_to(kept))?;
//! assert_eq!((report.events, report.head), (1, kept));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the chain does not prove: whoever can write the file can also
//! compute every hash again from an edited event on, and the chain alone
//! then verifies; only a head kept out of their reach shows it
//! ([`ChainError::HeadMismatch`]). Deleting the last events leaves a
//! shorter chain that verifies, found only against a kept head too.
//!
#![doc = include_str!("chain_format.md")]
//!
//! ## A full disk
//!
//! An append that finds no room fails with `Error::StorageFull` and writes
//! nothing. The store needs free space for its data plus about 4 MB for the
//! write-ahead log between checkpoints (1,000 pages); after a full disk, the
//! first batch that commits again moves the log into the database file and
//! truncates it, so the store recovers fully once space is freed.
//!
//! ## I/O errors
//!
//! A read or write the disk refuses is `Error::Io`, and the store goes on.
//! A failed flush to disk (`fsync`) is `Error::SyncFailed`: the store then
//! refuses every write with it until it is reopened, since the data a
//! failed flush held may never reach the disk even if a retried flush
//! succeeds. The append that saw it may or may not be stored.
//!
//! ## The write-ahead log
//!
//! A reader holding a snapshot keeps the log from being moved into the
//! database file, so it grows meanwhile. Every writing connection sets
//! `journal_size_limit` to 4 MiB, so the log is cut back to 4 MiB when
//! SQLite starts it again after the reader; and a writer idle for 200 ms
//! with a larger log truncates it to nothing with a checkpoint that waits
//! for no reader.
//!
//! ## Several processes
//!
//! Processes on one machine may share a database file: every write
//! transaction begins `IMMEDIATE` and checks versions inside it, so two
//! processes appending to one stream still get exactly one winner per
//! version; a lock held by another process is waited for up to the busy
//! timeout, then reported as `Error::Busy`. Not for network file systems.

mod append;
mod chain;
mod checkpoints;
mod checksum;
mod damage;
mod error;
mod events;
mod inline;
mod keys;
mod options;
mod pool;
mod read_model;
mod read_models;
mod reader;
mod runner;
mod salvage;
mod schema;
mod snapshots;
mod status;
mod store;
mod stream;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod writer;

pub use chain::{ChainError, ChainHash, ChainHead, ChainReport, ParseChainError, Tamper};
pub use error::OpenError;
pub use keys::SqliteKeyStore;
pub use options::{Durability, SqliteOptions, Verify};
pub use read_model::{
    Forgetting, FromRow, OnError, Parked, ReadModel, ReadModelError, Retried, RunOptions, Status,
};
pub use read_models::ReadModels;
pub use runner::Runner;
/// The SQLite bindings read models are written with: a handler gets a
/// [`rusqlite::Connection`], and so does a query.
pub use rusqlite;
pub use salvage::{DamageKind, DamagedEvent, SalvageReport, Salvaged};
pub use status::{ProjectionKind, ProjectionStatus, ProjectionsError};
pub use store::SqliteStore;
pub use writer::{WriteStats, WriterPanic};

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
