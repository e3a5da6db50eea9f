//! Read models in PostgreSQL tables, fed from `$all` with the checkpoint in
//! the same transaction as the tables' changes.
//!
//! A [`ReadModel`] is a [`Projection`](es_core::Projection) derived with
//! `context = es_postgres::Db`, with a [`Handle<E, Db>`](es_core::Handle)
//! impl per event, and says how to create its tables.
//! [`PostgresStore::run_read_model`] starts a [`ReadModelRunner`]: a
//! thread with a connection of its own that reads batches of events after
//! the model's checkpoint, hands each to its handler inside one
//! transaction, and moves the checkpoint in that transaction. After any
//! crash (of the process or the server) each event has taken effect
//! exactly once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use es_core::blocking::block_on;
use es_core::privacy::{forgotten_subject, is_forgetting};
use es_core::projection::{ProjectionError, StopReason, panicked};
use es_core::store::next;
use es_core::{BoxError, Dispatch, EventStore, RecordedEvent};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::PostgresStore;

/// The connection of a read model's open transaction, as its handlers get
/// it: every statement runs in the transaction that also moves the
/// model's checkpoint. Statements are prepared once per connection.
///
/// A handler must not commit, roll back or begin transactions itself.
pub struct Db {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    fn new(client: Client) -> Self {
        Db {
            client: RefCell::new(client),
            statements: RefCell::default(),
        }
    }

    fn statement(&self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.borrow_mut().prepare(sql)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` with `params`; the number of rows it changed.
    ///
    /// # Errors
    ///
    /// What PostgreSQL reports.
    pub fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.borrow_mut().execute(&statement, params)
    }

    /// Runs the query `sql` with `params`; its rows.
    ///
    /// # Errors
    ///
    /// What PostgreSQL reports.
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.borrow_mut().query(&statement, params)
    }

    /// Runs the query `sql`; its one row, or `None`.
    ///
    /// # Errors
    ///
    /// What PostgreSQL reports, or an error when it returns several rows.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.borrow_mut().query_opt(&statement, params)
    }

    /// Runs several statements without parameters (`CREATE TABLE ...;
    /// CREATE INDEX ...`), as a model's [`create`](ReadModel::create) does.
    ///
    /// # Errors
    ///
    /// What PostgreSQL reports.
    pub fn batch_execute(&self, sql: &str) -> Result<(), postgres::Error> {
        self.client.borrow_mut().batch_execute(sql)
    }
}

/// A durable read model in PostgreSQL tables of the store's database and
/// schema: derive [`Projection`](es_core::Projection) with
/// `context = es_postgres::Db`, write a [`Handle<E, Db>`](es_core::Handle)
/// impl per event, and say here how its tables are made.
///
/// ```
/// use es_core::prelude::*;
/// use es_core::{BoxError, Envelope};
/// use es_postgres::Db;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Opened { pub title: String }
///
/// /// Tickets by title.
/// #[derive(Projection, Default)]
/// #[projection(name = "ticket-titles", events(Opened), context = Db)]
/// pub struct Titles;
///
/// impl es_postgres::ReadModel for Titles {
///     fn create(db: &Db) -> Result<(), es_postgres::postgres::Error> {
///         db.batch_execute("CREATE TABLE titles (ticket text PRIMARY KEY, title text NOT NULL)")
///     }
/// }
///
/// impl Handle<Opened, Db> for Titles {
///     fn handle(&mut self, db: &Db, e: &Envelope<Opened>) -> Result<(), BoxError> {
///         db.execute("INSERT INTO titles VALUES ($1, $2)", &[&e.aggregate_id(), &e.event.title])?;
///         Ok(())
///     }
/// }
/// ```
pub trait ReadModel: Dispatch<Db> {
    /// Creates the model's tables and indexes (in the transaction that
    /// records the model, before its first event). Table names starting
    /// with `es_` are the store's.
    ///
    /// # Errors
    ///
    /// What PostgreSQL reports; nothing of the model is recorded then.
    fn create(db: &Db) -> Result<(), postgres::Error>;

    /// Forgets the data subject `subject` (see [`es_core::privacy`]):
    /// called when the store records that it was forgotten, if the model
    /// has ever taken an event carrying personal data, in the transaction
    /// that moves the checkpoint past that event. Delete (or blank) every
    /// row holding the subject's data.
    ///
    /// The default refuses, which stops the runner at the forgetting: a
    /// model that took personal data must say how to forget it.
    ///
    /// # Errors
    ///
    /// What the model reports; the runner stops at the event.
    fn forget(&mut self, db: &Db, subject: &str) -> Result<(), BoxError> {
        let _ = (db, subject);
        Err(format!(
            "read model `{}` took personal data and does not implement ReadModel::forget",
            Self::NAME
        )
        .into())
    }
}

/// Why a read model stopped, or did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// An event stopped it: it does not decode, or its handler failed.
    /// Nothing of the batch it was in is committed.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// Reading the events failed.
    #[error("reading the events failed: {0}")]
    Store(#[from] es_core::Error),
    /// PostgreSQL failed around the handlers (the transaction, the
    /// checkpoint).
    #[error("PostgreSQL failed: {0}")]
    Postgres(#[from] postgres::Error),
    /// The model's tables were made by another version of it. Drop its
    /// tables and delete its row of `es_read_models` to rebuild it from
    /// the first event.
    #[error(
        "read model `{name}` is stored at version {stored}, this program's is {code}: drop its tables and its row of es_read_models to rebuild it"
    )]
    VersionChanged {
        /// The model.
        name: &'static str,
        /// The version its tables are at.
        stored: i32,
        /// The version of this program's model.
        code: u32,
    },
    /// Another runner (of this process or another) runs the model.
    #[error("read model `{0}` is already running")]
    AlreadyRunning(&'static str),
    /// The runner's thread panicked outside a handler.
    #[error("the read model's runner panicked")]
    Panicked,
}

/// How a [`ReadModelRunner`] reads.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RunOptions {
    /// Most events per transaction (default 500).
    pub batch: usize,
    /// How long it waits for new events before looking again (default 1 s;
    /// a commit of the store wakes it at once).
    pub poll_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch: 500,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A read model running on a thread of its own: see [`PostgresStore::run_read_model`].
pub struct ReadModelRunner<R> {
    thread: Option<JoinHandle<Result<R, ReadModelError>>>,
    shared: Arc<RunnerShared>,
}

#[derive(Default)]
struct RunnerShared {
    stop: AtomicBool,
    position: AtomicU64,
    finished: AtomicBool,
    /// Wakes `wait_for`.
    moved: (Mutex<()>, std::sync::Condvar),
}

impl RunnerShared {
    fn publish(&self, position: u64) {
        self.position.store(position, Ordering::SeqCst);
        let _guard = self.moved.0.lock().unwrap_or_else(PoisonError::into_inner);
        self.moved.1.notify_all();
    }
}

impl<R> std::fmt::Debug for ReadModelRunner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelRunner")
            .field("position", &self.shared.position.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<R: ReadModel> ReadModelRunner<R> {
    /// The position of the last event the model took (committed).
    pub fn position(&self) -> u64 {
        self.shared.position.load(Ordering::SeqCst)
    }

    /// Waits until the model has taken every event up to `position`, or
    /// `timeout` passed (`false`), or the runner stopped (`false`: see
    /// [`stop`](Self::stop) for why).
    pub fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .shared
            .moved
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.position() >= position {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.shared.finished.load(Ordering::SeqCst) {
                return false;
            }
            guard = self
                .shared
                .moved
                .1
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops the runner after the batch it is taking; the model, or why it
    /// had stopped.
    ///
    /// # Errors
    ///
    /// What stopped it before.
    pub fn stop(mut self) -> Result<R, ReadModelError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) | None => Err(ReadModelError::Panicked),
        }
    }
}

impl<R> Drop for ReadModelRunner<R> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl PostgresStore {
    /// Starts `model` with the default [`RunOptions`]: see
    /// [`run_read_model_with`](Self::run_read_model_with).
    ///
    /// # Errors
    ///
    /// As [`run_read_model_with`](Self::run_read_model_with).
    pub fn run_read_model<R: ReadModel>(
        &self,
        model: R,
    ) -> Result<ReadModelRunner<R>, ReadModelError> {
        self.run_read_model_with(model, RunOptions::default())
    }

    /// Starts `model` on a thread of its own, with a connection of its own
    /// to the store's database: its tables are made in the store's schema
    /// when it has none (the first run), and it takes every event after
    /// its checkpoint, then follows the store.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::AlreadyRunning`] when a runner of this model holds
    /// it (in any process); [`ReadModelError::VersionChanged`] when its
    /// tables are of another version; what PostgreSQL reports.
    pub fn run_read_model_with<R: ReadModel>(
        &self,
        model: R,
        options: RunOptions,
    ) -> Result<ReadModelRunner<R>, ReadModelError> {
        let client = self.connector().client()?;
        let db = Db::new(client);
        // Held for the connection's life: one runner per model.
        let locked: bool = db
            .query_opt(
                "SELECT pg_try_advisory_lock(hashtext('es-postgres read model ' || current_schema() || ' ' || $1::text))",
                &[&R::NAME],
            )?
            .is_some_and(|row| row.get(0));
        if !locked {
            return Err(ReadModelError::AlreadyRunning(R::NAME));
        }
        db.batch_execute("BEGIN")?;
        let stored = db.query_opt(
            "SELECT version, position, personal FROM es_read_models WHERE name = $1",
            &[&R::NAME],
        )?;
        let (position, personal) = if let Some(row) = stored {
            let stored: i32 = row.get(0);
            if i64::from(stored) != i64::from(R::VERSION) {
                db.batch_execute("ROLLBACK")?;
                return Err(ReadModelError::VersionChanged {
                    name: R::NAME,
                    stored,
                    code: R::VERSION,
                });
            }
            (u64::try_from(row.get::<_, i64>(1)).unwrap_or(0), row.get(2))
        } else {
            R::create(&db)?;
            db.execute(
                "INSERT INTO es_read_models (name, version, position) VALUES ($1, $2, 0)",
                &[&R::NAME, &i32::try_from(R::VERSION).unwrap_or(i32::MAX)],
            )?;
            (0, false)
        };
        db.batch_execute("COMMIT")?;
        let shared = Arc::new(RunnerShared::default());
        shared.publish(position);
        let mut run = Run {
            store: self.clone(),
            db,
            options,
            position,
            personal,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("es-postgres-read-model-{}", R::NAME))
            .spawn(move || {
                let mut model = model;
                let result = run.run(&mut model);
                run.shared.finished.store(true, Ordering::SeqCst);
                run.shared.publish(run.position);
                result.map(|()| model)
            })
            .map_err(|e| ReadModelError::Store(es_core::Error::backend(e)))?;
        Ok(ReadModelRunner {
            thread: Some(thread),
            shared,
        })
    }
}

/// The runner thread's state.
struct Run {
    store: PostgresStore,
    db: Db,
    options: RunOptions,
    position: u64,
    personal: bool,
    shared: Arc<RunnerShared>,
}

impl Run {
    fn run<R: ReadModel>(&mut self, model: &mut R) -> Result<(), ReadModelError> {
        let mut watch = self.store.watch();
        while !self.shared.stop.load(Ordering::SeqCst) {
            let events = self.page()?;
            if events.is_empty() {
                watch.wait_timeout(self.options.poll_interval);
                continue;
            }
            self.take(model, events)?;
        }
        Ok(())
    }

    /// The next events after the checkpoint, at most a batch.
    fn page(&self) -> Result<Vec<RecordedEvent>, ReadModelError> {
        block_on(async {
            let mut stream = self.store.read_all(self.position + 1);
            let mut events = Vec::new();
            while events.len() < self.options.batch {
                match next(&mut stream).await {
                    Some(event) => events.push(event?),
                    None => break,
                }
            }
            Ok(events)
        })
    }

    /// Takes `events` in one transaction with the checkpoint past them.
    fn take<R: ReadModel>(
        &mut self,
        model: &mut R,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ReadModelError> {
        let last = events.last().map_or(self.position, |e| e.position);
        let mut personal = self.personal;
        self.db.batch_execute("BEGIN")?;
        let taken = self.dispatch(model, events, &mut personal);
        if let Err(e) = taken {
            // Nothing of the batch stays.
            let _ = self.db.batch_execute("ROLLBACK");
            return Err(e);
        }
        self.db.execute(
            "UPDATE es_read_models SET position = $2, personal = $3 WHERE name = $1",
            &[
                &R::NAME,
                &i64::try_from(last).unwrap_or(i64::MAX),
                &personal,
            ],
        )?;
        self.db.batch_execute("COMMIT")?;
        self.position = last;
        self.personal = personal;
        self.shared.publish(last);
        Ok(())
    }

    fn dispatch<R: ReadModel>(
        &self,
        model: &mut R,
        events: Vec<RecordedEvent>,
        personal: &mut bool,
    ) -> Result<(), ReadModelError> {
        for recorded in events {
            let (position, stream, version) = (
                recorded.position,
                recorded.stream_id.clone(),
                recorded.version,
            );
            let failed = |reason| ProjectionError {
                projection: R::NAME,
                position,
                stream: stream.clone(),
                version,
                reason,
            };
            if is_forgetting(&recorded) {
                if *personal {
                    let subject = forgotten_subject(&recorded).unwrap_or_default();
                    let forgot =
                        catch_unwind(AssertUnwindSafe(|| model.forget(&self.db, &subject)))
                            .unwrap_or_else(|panic| Err(panicked(&*panic)));
                    forgot.map_err(|e| failed(StopReason::Handler(e)))?;
                }
                continue;
            }
            es_core::projection::feed(model, &self.db, recorded, |recorded| {
                if recorded.event.as_str().contains("\"$personal\"") {
                    *personal = true;
                }
                Ok(())
            })
            .map_err(failed)?;
        }
        Ok(())
    }
}
