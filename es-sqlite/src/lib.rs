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
//! `BEGIN IMMEDIATE` transaction (one flush for many appends); each request
//! runs in its own savepoint, so a conflict in one never fails another.
//! Reader threads, each with its own connection, answer reads one page per
//! short read transaction.
//!
//! ## Several processes
//!
//! Processes on one machine may share a database file: every write
//! transaction begins `IMMEDIATE` and checks versions inside it, so two
//! processes appending to one stream still get exactly one winner per
//! version; a lock held by another process is waited for up to the busy
//! timeout, then reported as `Error::Busy`. Not for network file systems.

mod append;
mod checkpoints;
mod checksum;
mod error;
mod events;
mod options;
mod pool;
mod reader;
mod schema;
mod snapshots;
mod store;
mod stream;
mod writer;

pub use error::OpenError;
pub use options::{Durability, SqliteOptions, Verify};
pub use store::SqliteStore;
pub use writer::WriterPanic;

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
