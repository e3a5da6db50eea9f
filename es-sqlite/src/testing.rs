//! A test kit for SQLite read models (feature `testing`): run a read model
//! over a [`History`] of events of any aggregates, in a temporary store,
//! and assert its rows.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::testing::history;
//! use es_core::{BoxError, Envelope};
//! use es_sqlite::rusqlite::{self, Connection};
//! use es_sqlite::{ReadModel, testing::given};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Opened { pub title: String }
//! # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Closed;
//! # #[derive(Aggregate, Default, Debug)]
//! # #[aggregate(name = "ticket", events(Opened, Closed))]
//! # pub struct Ticket;
//! # impl Apply<Opened> for Ticket { fn apply(&mut self, _: &Opened) {} }
//! # impl Apply<Closed> for Ticket { fn apply(&mut self, _: &Closed) {} }
//!
//! /// Open tickets.
//! #[derive(Projection, Default)]
//! #[projection(name = "open-tickets", events(Opened, Closed), context = Connection)]
//! pub struct OpenTickets;
//! impl ReadModel for OpenTickets {
//!     fn create(db: &Connection) -> rusqlite::Result<()> {
//!         db.execute_batch("CREATE TABLE open (ticket TEXT PRIMARY KEY, title TEXT NOT NULL)")
//!     }
//! }
//! impl Handle<Opened, Connection> for OpenTickets {
//!     fn handle(&mut self, db: &Connection, e: &Envelope<Opened>) -> Result<(), BoxError> {
//!         db.execute("INSERT INTO open VALUES (?1, ?2)", (e.aggregate_id(), &e.event.title))?;
//!         Ok(())
//!     }
//! }
//! impl Handle<Closed, Connection> for OpenTickets {
//!     fn handle(&mut self, db: &Connection, e: &Envelope<Closed>) -> Result<(), BoxError> {
//!         db.execute("DELETE FROM open WHERE ticket = ?1", [e.aggregate_id()])?;
//!         Ok(())
//!     }
//! }
//!
//! let opened = |title: &str| Opened { title: title.into() };
//! given(history().of::<Ticket>("1", (opened("printer"), Closed)).of::<Ticket>("2", opened("fax")))
//!     .then_read_model(OpenTickets)
//!     .assert_rows("SELECT ticket, title FROM open", [("2".to_string(), "fax".to_string())]);
//! ```

// A test kit reports by panicking and takes its inputs by value for
// one-line calls.
#![allow(
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::needless_pass_by_value
)]

use std::fmt::Debug;
use std::sync::Arc;

use es_core::blocking::block_on;
use es_core::testing::History;
use rusqlite::Connection;

use crate::{
    FromRow, OnError, Parked, ReadModel, ReadModelError, ReadModels, RunOptions, Runner,
    SqliteStore, Status,
};

/// Starts a read-model scenario: `history` to be appended, in order, to a
/// new temporary store.
pub fn given(history: History) -> Given {
    Given { history }
}

/// A history waiting for the read model to run over it.
#[derive(Debug)]
pub struct Given {
    history: History,
}

impl Given {
    /// Runs `model` as a durable read model ([`ReadModels`]) over the
    /// history, until it has caught up.
    ///
    /// # Panics
    ///
    /// When the history does not append, or the model stops on an event
    /// (the panic names it).
    #[track_caller]
    pub fn then_read_model<R: ReadModel>(self, model: R) -> Outcome<R> {
        self.run(model, RunOptions::new())
    }

    /// [`then_read_model`](Given::then_read_model) with
    /// [`OnError::Park`]: events the model refuses are parked, listed by
    /// [`Outcome::parked`].
    ///
    /// # Panics
    ///
    /// As [`then_read_model`](Given::then_read_model).
    #[track_caller]
    pub fn then_read_model_parking<R: ReadModel>(self, model: R) -> Outcome<R> {
        self.run(model, RunOptions::new().on_error(OnError::Park))
    }

    /// Runs `model` over the history, expecting it to stop on an event;
    /// returns why.
    ///
    /// # Panics
    ///
    /// When the model takes every event.
    #[track_caller]
    pub fn then_read_model_stops<R: ReadModel>(self, model: R) -> Arc<ReadModelError> {
        let (store, models, runner) = self.start(model, RunOptions::new());
        match block_on(runner.caught_up()) {
            Ok(()) => panic!(
                "expected read model `{}` to stop, but it took every event",
                R::NAME
            ),
            Err(_) => match runner.status() {
                Status::Failed(error) => {
                    drop((models, store));
                    error
                }
                other => panic!("read model `{}` ended as {other:?}", R::NAME),
            },
        }
    }

    /// Registers `model` as an inline read model of the store
    /// ([`SqliteOptions::inline`](crate::SqliteOptions::inline)) and appends
    /// the history through it.
    ///
    /// # Panics
    ///
    /// When the store does not open, or an append fails (an inline model's
    /// refusal refuses its append).
    #[track_caller]
    pub fn then_inline<R: ReadModel>(self, model: R) -> Outcome<R> {
        let store = SqliteStore::options()
            .inline(model)
            .open_temporary()
            .expect("a temporary store opens");
        block_on(self.history.append_to(&store)).expect("the history appends");
        Outcome {
            source: Source::Inline(store),
        }
    }

    #[track_caller]
    fn run<R: ReadModel>(self, model: R, options: RunOptions) -> Outcome<R> {
        let (store, models, runner) = self.start(model, options);
        if let Err(error) = block_on(runner.caught_up()) {
            panic!(
                "read model `{}` did not catch up: {}",
                R::NAME,
                chain(&error)
            );
        }
        drop(store);
        Outcome {
            source: Source::Durable(models, runner),
        }
    }

    #[track_caller]
    fn start<R: ReadModel>(
        self,
        model: R,
        options: RunOptions,
    ) -> (SqliteStore, ReadModels, Runner<R>) {
        let store = SqliteStore::open_temporary().expect("a temporary store opens");
        block_on(self.history.append_to(&store)).expect("the history appends");
        let models = ReadModels::open(&store).expect("the read models open");
        let runner = models
            .start_with(model, options)
            .expect("the read model starts");
        (store, models, runner)
    }
}

/// A read model that has taken the history: its rows, to assert on.
pub struct Outcome<R> {
    source: Source<R>,
}

enum Source<R> {
    /// The runner stays live until the outcome is dropped.
    Durable(ReadModels, #[allow(dead_code)] Runner<R>),
    Inline(SqliteStore),
}

impl<R> Debug for Outcome<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome").finish_non_exhaustive()
    }
}

impl<R: ReadModel> Outcome<R> {
    /// Runs `read` on the model's tables.
    ///
    /// # Panics
    ///
    /// When `read` fails.
    #[track_caller]
    pub fn query<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> T {
        let result = match &self.source {
            Source::Durable(models, _) => models.query::<R, T>(read),
            Source::Inline(store) => store.query::<R, T>(read),
        };
        result.unwrap_or_else(|error| panic!("the query failed: {}", chain(&error)))
    }

    /// The rows of `sql`, each read as a tuple ([`FromRow`]).
    ///
    /// # Panics
    ///
    /// When the query fails.
    #[track_caller]
    pub fn rows<T: FromRow>(&self, sql: &str, params: impl rusqlite::Params) -> Vec<T> {
        self.query(|db| crate::read_models::rows_of(db, sql, params))
    }

    /// Asserts that `sql` (without parameters) returns exactly `expected`,
    /// in order.
    ///
    /// # Panics
    ///
    /// When the rows differ, or the query fails.
    #[track_caller]
    pub fn assert_rows<T>(&self, sql: &str, expected: impl IntoIterator<Item = T>) -> &Self
    where
        T: FromRow + Debug + PartialEq,
    {
        let expected: Vec<T> = expected.into_iter().collect();
        let rows: Vec<T> = self.rows(sql, []);
        assert_eq!(rows, expected, "the rows of `{sql}`");
        self
    }

    /// The events parked by a parking model, in position order (none for
    /// an inline model: it refuses instead).
    ///
    /// # Panics
    ///
    /// When the model's file cannot be read.
    #[track_caller]
    pub fn parked(&self) -> Vec<Parked> {
        match &self.source {
            Source::Durable(models, _) => models.parked::<R>().expect("the parked events read"),
            Source::Inline(_) => Vec::new(),
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    crate::read_model::display_chain(error)
}

/// Every file under `dir` (its subdirectories too), with its length and a
/// CRC-32 of its bytes: taken before and after a program that only reads
/// (an inspector, a read-only store), equal when it wrote nothing.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.db"), b"events")?;
/// let before = es_sqlite::testing::file_digests(dir.path());
/// assert_eq!(before.len(), 1);
/// std::fs::write(dir.path().join("a.db"), b"edited")?;
/// assert_ne!(es_sqlite::testing::file_digests(dir.path()), before);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn file_digests(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<std::path::PathBuf, (usize, u32)> {
    let mut found = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("the directory reads") {
        let path = entry.expect("the directory reads").path();
        if path.is_dir() {
            found.extend(file_digests(&path));
        } else {
            let bytes = std::fs::read(&path).expect("the file reads");
            found.insert(path, (bytes.len(), crc32fast::hash(&bytes)));
        }
    }
    found
}
