//! The PostgreSQL event store for [es](es_core): for applications that
//! outgrow one SQLite file, or that run on several machines.
//!
//! [`PostgresStore`] implements every store trait of es-core (events,
//! snapshots, checkpoints, forgetting with [`PostgresKeyStore`], the
//! deploy check's summary), and passes the same conformance suite and
//! model check as es-sqlite. Its tables live in one PostgreSQL schema
//! (`es` by default), so several stores share a database.
//!
//! ```
//! use es_core::prelude::*;
//! use es_postgres::PostgresStore;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Deposited { pub amount: u64 }
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "account", events(Deposited))]
//! # pub struct Account { balance: u64 }
//! # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
//!
//! // e.g. postgresql://app@127.0.0.1/app
//! let url = std::env::var("ES_POSTGRES_URL")?;
//! # let schema = format!("doc_{}", es_core::Uuid::now_v7().simple());
//! let store = PostgresStore::options().schema(schema).connect(&url)?;
//! let accounts = es_core::blocking::Repository::<Account, _>::new(store);
//! accounts.execute("a-1", |_| Deposited { amount: 5 })?;
//! assert_eq!(accounts.load("a-1")?.balance, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Read models live in tables of the same database, updated in the
//! transaction that moves their checkpoint: see [`ReadModel`] and
//! [`PostgresStore::run_read_model`].
//!
//! Connections without TLS are allowed to a server on this machine only;
//! see [`PostgresOptions::tls`].

#![forbid(unsafe_code)]

mod conn;
mod error;
mod keys;
mod listen;
mod options;
mod read;
mod read_model;
mod schema;
mod store;
mod writer;

pub use error::OpenError;
pub use keys::PostgresKeyStore;
pub use options::PostgresOptions;
pub use read_model::{Db, ReadModel, ReadModelError, ReadModelRunner, RunOptions};
pub use store::{PostgresStore, WriteStats};

/// The `postgres` client crate, whose types appear in this crate's API
/// ([`PostgresOptions::connect_config`], [`OpenError`]).
pub use postgres;
