//! [`ReadModels`]: the directory of read-model files beside an event store,
//! their runners, and queries.
//!
//! # Where read models live, and why
//!
//! Each read model version is a file of its own, `<name>.v<version>.db`, in
//! a directory beside the events file (`events.db` → `events.read-models/`),
//! with a small registry, `serving.db`, naming the version that serves
//! queries (and its generation, see below). Not in the events file, because SQLite lets one writer at a time
//! into a file: a runner committing there would queue behind the event
//! writer's group commits and make appends wait behind read-model work;
//! in files of their own, both commit side by side, a rebuild's bulk writes
//! stay out of the events file's log, and retiring a version is deleting a
//! file (no `VACUUM`). The price: a read model's commit is not the append's
//! commit (read your writes with [`Runner::wait_for`]), and a query that
//! joins two read models attaches the other file itself.
//!
//! # Blue/green rebuilds
//!
//! A runner of version N opens (or creates) N's file and catches up in it
//! while the serving version keeps serving; once N has taken every event up
//! to the head, the registry is switched to N in one transaction, and the
//! files of older versions are deleted. Queries that began before the switch
//! finish on the old file; those after it read N. A model is served only
//! once a version has caught up: before that, a query is
//! [`ReadModelError::NotServing`], never an empty or half-built model.
//!
//! # Forgetting a data subject
//!
//! Read models hold personal data decrypted, so when the store forgets a
//! subject ([`Forget`](es_core::privacy::Forget)) they must forget it too.
//! Its `es.subject-forgotten` event reaches every runner, whatever events
//! the model lists. A model that has never taken an event carrying
//! personal data (recorded in its file, in the transaction that took the
//! first one) passes it by: it is not rebuilt. For the others, the runner
//! calls the model's [`forget`](ReadModel::forget) hook in the transaction
//! that moves the checkpoint past the forgetting:
//!
//! - [`Forgetting::Done`](crate::Forgetting::Done): the hook deleted the
//!   subject's rows. Every read-model file is written with
//!   `secure_delete` on, so the deleted bytes are overwritten with zeros,
//!   and after the commit the runner checkpoints the file's write-ahead
//!   log and truncates it, so no old copy of a page is left there either.
//! - [`Forgetting::Rebuild`](crate::Forgetting::Rebuild) (the default):
//!   the file is marked to be replaced, in that same transaction, and the
//!   runner builds the version again from the first event into a file of a
//!   new *generation*, `<name>.v<version>.g<generation>.db`, beside the
//!   serving one, which keeps serving meanwhile. The subject's fields now
//!   read as [`Personal::Forgotten`](es_core::Personal::Forgotten). Once
//!   caught up, it is swapped in as a new version is (readers never see
//!   the model go back in time) and the older files are deleted, with
//!   their logs. A file made after a subject was forgotten never held its
//!   data: the forgettings up to the log's head at its creation are passed
//!   by. Forgettings that arrive during a rebuild start it again, so a
//!   model forgetting often should delete its rows in its hook.
//!
//! Deleting a file leaves its blocks to the file system, as any deletion
//! does, and SQLite cannot reach copies a disk keeps of its own: only
//! destroyed keys are a promise about the device itself.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use es_core::{Projection, StreamId, Timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::OpenError;
use crate::events;
use crate::options::{Durability, SqliteOptions};
use crate::read_model::{FromRow, Parked, ReadModel, ReadModelError, RunOptions, sqlite};
use crate::runner::Runner;
use crate::schema::{self, Role};
use crate::store::SqliteStore;

/// `PRAGMA application_id` of a read-model file: "esRM".
pub(crate) const MODEL_APP_ID: i64 = 0x6573_524D;
/// The read-model file format (`PRAGMA user_version`).
pub(crate) const MODEL_FORMAT: i64 = 2;
const MODEL_SCHEMA_1: &str = include_str!("sql/read_models/model_0001.sql");
const MODEL_SCHEMA_2: &str = include_str!("sql/read_models/model_0002.sql");

/// `PRAGMA application_id` of the registry: "esRR".
pub(crate) const REGISTRY_APP_ID: i64 = 0x6573_5252;
/// The registry format (`PRAGMA user_version`).
pub(crate) const REGISTRY_FORMAT: i64 = 2;
const REGISTRY_SCHEMA_1: &str = include_str!("sql/read_models/registry_0001.sql");
const REGISTRY_SCHEMA_2: &str = include_str!("sql/read_models/registry_0002.sql");

/// A version and generation of a read model: which file it is, and which
/// one serves. Ordered: a later version, or the same with a later
/// generation, replaces an earlier one.
pub(crate) type Edition = (u32, u64);

/// A read-model file as its runner opened it: its `_es_read_model` row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelFile {
    pub(crate) generation: u64,
    /// Every event up to it is taken.
    pub(crate) checkpoint: u64,
    /// Whether the model has taken an event carrying personal data.
    pub(crate) personal: bool,
    /// Set when the file is to be replaced by a new generation: the
    /// position of the forgetting.
    pub(crate) rebuild_for: Option<u64>,
}

/// Read models beside one [`SqliteStore`]: starts their runners, answers
/// queries from the serving version of each.
///
/// Cloning is cheap; clones share the registry and the query connections.
///
/// ```
/// use es_core::prelude::*;
/// use es_core::{BoxError, Envelope};
/// use es_sqlite::rusqlite::{self, Connection};
/// use es_sqlite::{ReadModel, ReadModels, SqliteStore};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Opened { pub title: String }
/// # #[derive(Aggregate, Default, Debug)]
/// # #[aggregate(name = "ticket", events(Opened))]
/// # pub struct Ticket;
/// # impl Apply<Opened> for Ticket { fn apply(&mut self, _: &Opened) {} }
///
/// #[derive(Projection, Default)]
/// #[projection(name = "ticket-titles", events(Opened), context = Connection)]
/// pub struct Titles;
///
/// impl ReadModel for Titles {
///     fn create(db: &Connection) -> rusqlite::Result<()> {
///         db.execute_batch("CREATE TABLE titles (ticket TEXT PRIMARY KEY, title TEXT NOT NULL)")
///     }
/// }
/// impl Handle<Opened, Connection> for Titles {
///     fn handle(&mut self, db: &Connection, e: &Envelope<Opened>) -> Result<(), BoxError> {
///         db.prepare_cached("INSERT INTO titles VALUES (?1, ?2)")?
///             .execute((e.aggregate_id(), &e.event.title))?;
///         Ok(())
///     }
/// }
///
/// # es_core::blocking::block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("tickets.db"))?;
/// let models = ReadModels::open(&store)?;
/// let titles = models.start(Titles)?;
///
/// let tickets = Repository::<Ticket, _>::new(store.clone());
/// let done = tickets.execute("t-1", |_| Opened { title: "printer".into() }).await?;
/// titles.wait_for(done.position.unwrap_or(0)).await?; // read your write
///
/// let rows: Vec<(String, String)> = models.rows::<Titles, _>("SELECT ticket, title FROM titles", [])?;
/// assert_eq!(rows, [("t-1".to_string(), "printer".to_string())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ReadModels {
    inner: Arc<Inner>,
}

struct Inner {
    store: SqliteStore,
    dir: PathBuf,
    options: SqliteOptions,
    registry: Mutex<Connection>,
    /// Idle read connections per (model, version, generation) file.
    idle: Mutex<HashMap<IdleKey, Vec<Connection>>>,
}

/// A read-model file: its model's name, version and generation.
type IdleKey = (String, u32, u64);

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModels")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl ReadModels {
    /// The read models of `store`, in the directory beside its file
    /// (`events.db` → `events.read-models/`), created (owner-only) when
    /// missing.
    ///
    /// # Errors
    ///
    /// When the directory or its registry cannot be created or opened, or
    /// the registry is not one.
    pub fn open(store: &SqliteStore) -> Result<Self, ReadModelError> {
        Self::open_in(store, default_dir(store.path()))
    }

    /// The read models of `store`, in `dir`.
    ///
    /// # Errors
    ///
    /// As [`open`](ReadModels::open).
    pub fn open_in(store: &SqliteStore, dir: impl Into<PathBuf>) -> Result<Self, ReadModelError> {
        let dir = dir.into();
        create_dir(&dir)?;
        // Read models are rebuilt from the events: a commit they lose to a
        // power cut is taken again from their checkpoint, so they need no
        // flush per commit (`synchronous = NORMAL` keeps them consistent).
        let mut options = store.opened_with().clone();
        options.durability = Durability::Normal;
        options.max_page_count = None;
        let registry = open_registry(&dir.join("serving.db"), &options)?;
        let models = ReadModels {
            inner: Arc::new(Inner {
                store: store.clone(),
                dir,
                options,
                registry: Mutex::new(registry),
                idle: Mutex::new(HashMap::new()),
            }),
        };
        Ok(models)
    }

    /// The directory of the read-model files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The event store the models are fed from.
    pub fn store(&self) -> &SqliteStore {
        &self.inner.store
    }

    /// Starts a runner for `model` with the default [`RunOptions`]: it
    /// catches up from the model's checkpoint, then follows new events.
    ///
    /// # Errors
    ///
    /// When the model's file cannot be opened or created (its `create`
    /// failed, it belongs to another model), or a newer version serves.
    pub fn start<R: ReadModel>(&self, model: R) -> Result<Runner<R>, ReadModelError> {
        self.start_with(model, RunOptions::default())
    }

    /// [`start`](ReadModels::start) with `options`.
    ///
    /// # Errors
    ///
    /// As [`start`](ReadModels::start).
    pub fn start_with<R: ReadModel>(
        &self,
        model: R,
        options: RunOptions,
    ) -> Result<Runner<R>, ReadModelError> {
        if let Some(serving) = self.serving_version(R::NAME)?
            && serving > R::VERSION
        {
            return Err(ReadModelError::Superseded {
                name: R::NAME,
                version: R::VERSION,
                serving,
            });
        }
        let (conn, file) = self.open_model::<R>(0)?;
        Runner::spawn(self.clone(), model, conn, file, options)
    }

    /// Runs `model` until it has taken every event committed before this
    /// call, then stops it and gives it back: for command-line tools and
    /// jobs that bring a model up to date, query, and exit.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use es_sqlite::{ReadModel, ReadModels, SqliteStore, rusqlite::{self, Connection}};
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Opened;
    /// # #[derive(Projection, Default)]
    /// # #[projection(name = "opened", events(Opened), context = Connection)]
    /// # pub struct Count;
    /// # impl ReadModel for Count {
    /// #     fn create(db: &Connection) -> rusqlite::Result<()> { db.execute_batch("CREATE TABLE n (n INTEGER)") }
    /// # }
    /// # impl Handle<Opened, Connection> for Count {
    /// #     fn handle(&mut self, db: &Connection, _: &Envelope<Opened>) -> Result<(), es_core::BoxError> {
    /// #         db.execute("INSERT INTO n VALUES (1)", [])?; Ok(())
    /// #     }
    /// # }
    /// # let store = SqliteStore::open_temporary()?;
    /// # let stream = StreamId::new("t-1")?;
    /// # let opened = es_core::NewEvent::new("ticket", "opened", 1, "null");
    /// # es_core::blocking::block_on(store.append(&stream, ExpectedVersion::Any, vec![opened]))?;
    /// let models = ReadModels::open(&store)?;
    /// es_core::blocking::block_on(models.catch_up(Count))?;
    /// let n: Vec<(i64,)> = models.rows::<Count, _>("SELECT count(*) FROM n", [])?;
    /// assert_eq!(n, [(1,)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](ReadModels::start) and [`Runner::caught_up`].
    pub fn catch_up<R: ReadModel>(
        &self,
        model: R,
    ) -> impl Future<Output = Result<R, ReadModelError>> + Send + 'static {
        let runner = self.start(model);
        async move {
            let runner = runner?;
            runner.caught_up().await?;
            runner.stop()
        }
    }

    /// The version of read model `name` that serves queries, if one does.
    ///
    /// # Errors
    ///
    /// When the registry cannot be read.
    pub fn serving_version(&self, name: &str) -> Result<Option<u32>, ReadModelError> {
        Ok(self.serving(name)?.map(|(version, _)| version))
    }

    /// The version and generation of read model `name` that serve.
    pub(crate) fn serving(&self, name: &str) -> Result<Option<Edition>, ReadModelError> {
        let registry = self.registry();
        serving(&registry, name).map_err(|e| self.registry_error(e))
    }

    /// The file that serves queries of read model `name`, if a version
    /// does: `<name>.v<version>.db`, or `<name>.v<version>.g<generation>.db`
    /// once the version was rebuilt to forget a data subject (see
    /// [`ReadModel::forget`]). For a backup, or a look with the `sqlite3`
    /// shell.
    ///
    /// # Errors
    ///
    /// When the registry cannot be read.
    pub fn serving_file(&self, name: &str) -> Result<Option<PathBuf>, ReadModelError> {
        Ok(self
            .serving(name)?
            .map(|(version, generation)| self.file_of(name, version, generation)))
    }

    /// Runs `read` on a read-only connection to the serving version of
    /// `R`'s tables, in one read transaction: plain SQL over the tables the
    /// model's [`create`](ReadModel::create) made.
    ///
    /// During a rebuild, the serving version is the older one until the new
    /// one has caught up.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::NotServing`] before any version has caught up;
    /// [`ReadModelError::Superseded`] when a newer version than `R`'s
    /// serves; what `read` fails with.
    pub fn query<R: Projection, T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadModelError> {
        // A swap may delete the file between reading the registry and
        // opening it: read the registry again, once.
        let conn = match self.serving_connection::<R>() {
            Err(ReadModelError::Open(_)) => self.serving_connection::<R>()?,
            other => other?,
        };
        let result = in_read_transaction(&conn.1, read).map_err(sqlite(R::NAME));
        self.give_back(conn);
        result
    }

    /// The rows of `sql` over the serving version of `R`, each read as a
    /// tuple ([`FromRow`]).
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use es_sqlite::{ReadModel, ReadModels, SqliteStore, rusqlite::{self, Connection}};
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Opened;
    /// # #[derive(Projection, Default)]
    /// # #[projection(name = "counts", events(Opened), context = Connection)]
    /// # pub struct Counts;
    /// # impl ReadModel for Counts {
    /// #     fn create(db: &Connection) -> rusqlite::Result<()> {
    /// #         db.execute_batch("CREATE TABLE counts (kind TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    /// #     }
    /// # }
    /// # impl Handle<Opened, Connection> for Counts {
    /// #     fn handle(&mut self, _: &Connection, _: &Envelope<Opened>) -> Result<(), es_core::BoxError> { Ok(()) }
    /// # }
    /// # let store = SqliteStore::open_temporary()?;
    /// # let models = ReadModels::open(&store)?;
    /// # let counts = models.start(Counts)?;
    /// # es_core::blocking::block_on(counts.wait_for(0))?;
    /// let rows: Vec<(String, i64)> =
    ///     models.rows::<Counts, _>("SELECT kind, n FROM counts WHERE n > ?1", [10])?;
    /// # assert!(rows.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`query`](ReadModels::query).
    pub fn rows<R: Projection, T: FromRow>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>, ReadModelError> {
        self.query::<R, _>(|db| rows_of(db, sql, params))
    }

    /// The events of `R`'s version parked by [`OnError::Park`](crate::OnError::Park),
    /// in position order.
    ///
    /// # Errors
    ///
    /// When the model's file cannot be read.
    pub fn parked<R: Projection>(&self) -> Result<Vec<Parked>, ReadModelError> {
        let generation = self.generations(R::NAME, R::VERSION).into_iter().max();
        let path = self.file_of(R::NAME, R::VERSION, generation.unwrap_or(0));
        if !path.exists() {
            return Ok(Vec::new());
        }
        let conn = schema::connect(&path, &self.inner.options, Role::Reader)?;
        parked(&conn, R::NAME)
    }

    /// The file of version `version` of read model `name` as first built,
    /// `<name>.v<version>.db` (generation 0: a version rebuilt to forget a
    /// subject moves to another file, see
    /// [`serving_file`](ReadModels::serving_file)).
    pub fn model_path(&self, name: &str, version: u32) -> PathBuf {
        self.file_of(name, version, 0)
    }

    /// The file of generation `generation` of version `version` of `name`.
    pub(crate) fn file_of(&self, name: &str, version: u32, generation: u64) -> PathBuf {
        self.inner
            .dir
            .join(model_file_name(name, version, generation))
    }

    /// The generations of version `version` of `name` that have a file.
    fn generations(&self, name: &str, version: u32) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name();
                let (v, generation, suffix) = parse_model_file(name, file.to_str()?)?;
                (v == version && suffix.is_empty()).then_some(generation)
            })
            .collect()
    }

    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn registry_error(&self, e: rusqlite::Error) -> ReadModelError {
        ReadModelError::Open(OpenError::sqlite(&self.inner.dir.join("serving.db"), e))
    }

    /// Makes `version` of `name` the serving one, if the registry still
    /// says `expected` (another runner may have swapped first), once it has
    /// taken every event the serving version has: readers never see the
    /// model go back in time. The serving version's file is write-locked
    /// from the comparison to the switch, and its runner checks the
    /// registry inside each of its write transactions, so it commits
    /// nothing past the position compared; meanwhile `catch_up(target)`
    /// takes the new version to at least `target` and returns where it is.
    /// Then deletes the files of older versions. Returns the version serving
    /// after, or `None` when the new one could not catch up (a parked or
    /// failing event: the runner sees it next round).
    pub(crate) fn swap(
        &self,
        name: &'static str,
        expected: Option<Edition>,
        version: Edition,
        catch_up: &mut dyn FnMut(u64) -> Result<u64, ReadModelError>,
    ) -> Result<Option<Edition>, ReadModelError> {
        // The serving version's write lock, held across the switch.
        let old_file = expected.map(|(v, g)| self.file_of(name, v, g));
        let mut old = match old_file {
            Some(path) if path.exists() => {
                Some(schema::connect(&path, &self.inner.options, Role::Writer)?)
            }
            _ => None,
        };
        let old_lock = match &mut old {
            Some(conn) => {
                let lock = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite(name))?;
                let theirs: i64 = lock
                    .query_row("SELECT position FROM _es_read_model", [], |r| r.get(0))
                    .map_err(sqlite(name))?;
                let theirs = u64::try_from(theirs).unwrap_or(0);
                if catch_up(theirs)? < theirs {
                    return Ok(None);
                }
                Some(lock)
            }
            None => None,
        };
        let serving_now = {
            let mut registry = self.registry();
            let swapped = (|| {
                let tx = registry.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let current = serving(&tx, name)?;
                if current != expected {
                    return Ok(current.unwrap_or(version));
                }
                tx.execute(
                    "INSERT INTO serving (name, version, generation, since) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                     generation = excluded.generation, since = excluded.since",
                    (
                        name,
                        version.0,
                        events::to_i64(version.1),
                        Timestamp::now().as_unix_micros(),
                    ),
                )?;
                tx.commit()?;
                Ok(version)
            })();
            swapped.map_err(|e| self.registry_error(e))?
        };
        drop(old_lock);
        drop(old);
        if serving_now == version {
            self.retire_below(name, version);
        }
        Ok(Some(serving_now))
    }

    /// Deletes the files of the versions and generations of `name` older
    /// than `version` (with their logs) and forgets their idle
    /// connections. A file still open elsewhere (a query that began before
    /// the swap) stays readable to it until closed.
    fn retire_below(&self, name: &str, version: Edition) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(n, v, g), _| n != name || (*v, *g) >= version);
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some((v, g, suffix)) = parse_model_file(name, file) else {
                continue;
            };
            if (v, g) < version && matches!(suffix, "" | "-wal" | "-shm" | "-journal") {
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file, %error, "cannot delete a retired read-model file");
                } else {
                    tracing::info!(file, "deleted a retired read-model file");
                }
            }
        }
    }

    /// Opens the file of `R`'s version for its runner: its newest
    /// generation (at least `generation`, and at least the serving one),
    /// created when new; a file to be replaced by a new generation is
    /// passed for the next.
    pub(crate) fn open_model<R: ReadModel>(
        &self,
        generation: u64,
    ) -> Result<(Connection, ModelFile), ReadModelError> {
        let serving = match self.serving(R::NAME)? {
            Some((version, generation)) if version == R::VERSION => generation,
            _ => 0,
        };
        let newest = self.generations(R::NAME, R::VERSION).into_iter().max();
        let mut generation = generation.max(serving).max(newest.unwrap_or(0));
        loop {
            let (conn, file) = self.open_generation::<R>(generation)?;
            match file.rebuild_for {
                None => return Ok((conn, file)),
                Some(_) => generation += 1,
            }
        }
    }

    /// Opens (creating when new) generation `generation` of the file of
    /// `R`'s version.
    fn open_generation<R: ReadModel>(
        &self,
        generation: u64,
    ) -> Result<(Connection, ModelFile), ReadModelError> {
        let path = self.file_of(R::NAME, R::VERSION, generation);
        let store = &self.inner.store;
        let mut conn = schema::connect(&path, &self.inner.options, Role::Writer)?;
        let name = R::NAME;
        let foreign = |detail: String| ReadModelError::Foreign {
            name,
            path: path.clone(),
            detail,
        };
        let wal = schema::switch_to_wal(&conn).map_err(|e| OpenError::sqlite(&path, e))?;
        if !wal.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode = %wal, "cannot switch a read model to WAL mode");
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| OpenError::sqlite(&path, e))?;
        let app: i64 = tx
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(sqlite(name))?;
        let format: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite(name))?;
        if app == 0 && format == 0 {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(sqlite(name))?;
            if tables != 0 {
                return Err(foreign("it holds tables of another application".into()));
            }
            let file = self.create_file::<R>(&tx, generation)?;
            tx.commit().map_err(sqlite(name))?;
            tracing::info!(read_model = name, version = R::VERSION, generation, path = %path.display(), "created a read-model file");
            return Ok((conn, file));
        }
        if app != MODEL_APP_ID {
            return Err(foreign("not a read-model file".into()));
        }
        let migrate = format == 1;
        if migrate {
            // Format 1 kept nothing for forgetting: whether the model took
            // personal data is unknown (so it may), and a subject forgotten
            // before its checkpoint may still be in it: rebuilt then.
            tx.execute_batch(MODEL_SCHEMA_2).map_err(sqlite(name))?;
            let checkpoint: i64 = tx
                .query_row("SELECT position FROM _es_read_model", [], |r| r.get(0))
                .map_err(|e| foreign(format!("no checkpoint row: {e}")))?;
            let checkpoint = u64::try_from(checkpoint).unwrap_or(0);
            let forgotten = store
                .pool()
                .with(|conn| events::first_forgetting(conn, checkpoint))?;
            tx.execute(
                "UPDATE _es_read_model SET personal_at = CASE WHEN position > 0 THEN 0 END, \
                 rebuild_for = ?1",
                [forgotten.map(events::to_i64)],
            )
            .map_err(sqlite(name))?;
            tx.pragma_update(None, "user_version", MODEL_FORMAT)
                .map_err(sqlite(name))?;
        } else if format != MODEL_FORMAT {
            return Err(foreign(format!(
                "read-model file format {format}; this program knows {MODEL_FORMAT}"
            )));
        }
        let file = read_file::<R>(&tx, generation).map_err(foreign)?;
        if migrate {
            tx.commit().map_err(sqlite(name))?;
            tracing::info!(read_model = name, version = R::VERSION, path = %path.display(),
                rebuild_for = ?file.rebuild_for, "migrated a read-model file to format 2");
        } else {
            drop(tx);
        }
        Ok((conn, file))
    }

    /// Makes a new file of generation `generation` of `R`'s version, in
    /// its first transaction `tx`.
    fn create_file<R: ReadModel>(
        &self,
        tx: &Connection,
        generation: u64,
    ) -> Result<ModelFile, ReadModelError> {
        let name = R::NAME;
        let store = &self.inner.store;
        // The head first, then the cached keys dropped: every subject
        // forgotten up to the head has lost its keys in the key store, and
        // this process reads them from there again, so the file never
        // holds its data (another process may have forgotten it).
        let head = store.pool().with(events::last_position)?;
        if let Some(keys) = store.keys() {
            keys.evict_all();
        }
        tx.execute_batch(MODEL_SCHEMA_1).map_err(sqlite(name))?;
        tx.execute_batch(MODEL_SCHEMA_2).map_err(sqlite(name))?;
        tx.execute(
            "INSERT INTO _es_read_model (name, version, position, created_at, generation, created_at_head) \
             VALUES (?1, ?2, 0, ?3, ?4, ?5)",
            (
                name,
                R::VERSION,
                Timestamp::now().as_unix_micros(),
                events::to_i64(generation),
                events::to_i64(head),
            ),
        )
        .map_err(sqlite(name))?;
        R::create(tx).map_err(sqlite(name))?;
        tx.pragma_update(None, "application_id", MODEL_APP_ID)
            .map_err(sqlite(name))?;
        tx.pragma_update(None, "user_version", MODEL_FORMAT)
            .map_err(sqlite(name))?;
        Ok(ModelFile {
            generation,
            checkpoint: 0,
            personal: false,
            rebuild_for: None,
        })
    }

    /// An idle (or new) read connection to the serving file of `R`.
    fn serving_connection<R: Projection>(&self) -> Result<(IdleKey, Connection), ReadModelError> {
        let (version, generation) = self
            .serving(R::NAME)?
            .ok_or(ReadModelError::NotServing { name: R::NAME })?;
        if version > R::VERSION {
            return Err(ReadModelError::Superseded {
                name: R::NAME,
                version: R::VERSION,
                serving: version,
            });
        }
        let key = (R::NAME.to_owned(), version, generation);
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&key)
            .and_then(Vec::pop);
        let conn = match idle {
            Some(conn) => conn,
            None => schema::connect(
                &self.file_of(R::NAME, version, generation),
                &self.inner.options,
                Role::Reader,
            )?,
        };
        Ok((key, conn))
    }

    fn give_back(&self, (key, conn): (IdleKey, Connection)) {
        // A file retired during the query is not kept open.
        if !self.file_of(&key.0, key.1, key.2).exists() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let pool = idle.entry(key).or_default();
        if pool.len() < self.inner.options.readers.max(1) {
            pool.push(conn);
        }
    }
}

/// Runs `read` in one read transaction: its statements see one snapshot.
pub(crate) fn in_read_transaction<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let snapshot = conn.unchecked_transaction()?;
    let result = read(&snapshot)?;
    snapshot.finish()?;
    Ok(result)
}

/// The rows of `sql`, each read as `T`.
pub(crate) fn rows_of<T: FromRow>(
    db: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = db.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| T::from_row(row))?;
    rows.collect()
}

fn create_dir(dir: &Path) -> Result<(), OpenError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn open_registry(path: &Path, options: &SqliteOptions) -> Result<Connection, OpenError> {
    let mut conn = schema::connect(path, options, Role::Writer)?;
    let sqlite = |e| OpenError::sqlite(path, e);
    let mode = schema::switch_to_wal(&conn).map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "cannot switch the registry to WAL mode");
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let app: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sqlite)?;
    let format: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    match (app, format) {
        (REGISTRY_APP_ID, REGISTRY_FORMAT) => {}
        (REGISTRY_APP_ID, 1) => {
            tx.execute_batch(REGISTRY_SCHEMA_2).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", REGISTRY_FORMAT)
                .map_err(sqlite)?;
        }
        (REGISTRY_APP_ID, found) if found > REGISTRY_FORMAT => {
            return Err(OpenError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: REGISTRY_FORMAT,
            });
        }
        (0, 0) => {
            tx.execute_batch(REGISTRY_SCHEMA_1).map_err(sqlite)?;
            tx.execute_batch(REGISTRY_SCHEMA_2).map_err(sqlite)?;
            tx.pragma_update(None, "application_id", REGISTRY_APP_ID)
                .map_err(sqlite)?;
            tx.pragma_update(None, "user_version", REGISTRY_FORMAT)
                .map_err(sqlite)?;
        }
        _ => {
            return Err(OpenError::ForeignDatabase {
                path: path.to_path_buf(),
            });
        }
    }
    tx.commit().map_err(sqlite)?;
    Ok(conn)
}

/// The `_es_read_model` row of a read-model file of format 2, as stored.
#[derive(Debug)]
pub(crate) struct ModelRow {
    pub(crate) name: String,
    pub(crate) version: i64,
    pub(crate) generation: i64,
    pub(crate) position: i64,
    pub(crate) created_at_head: i64,
    pub(crate) personal_at: Option<i64>,
    pub(crate) rebuild_for: Option<i64>,
}

/// Reads the `_es_read_model` row of a file of format 2; what is wrong
/// with it otherwise.
pub(crate) fn model_row(conn: &Connection) -> Result<ModelRow, String> {
    conn.query_row(
        "SELECT name, version, generation, position, created_at_head, personal_at, rebuild_for \
         FROM _es_read_model",
        [],
        |r| {
            Ok(ModelRow {
                name: r.get(0)?,
                version: r.get(1)?,
                generation: r.get(2)?,
                position: r.get(3)?,
                created_at_head: r.get(4)?,
                personal_at: r.get(5)?,
                rebuild_for: r.get(6)?,
            })
        },
    )
    .map_err(|e| format!("no checkpoint row: {e}"))
}

/// The `_es_read_model` row of a file that should hold generation
/// `generation` of `R`'s version; what is wrong with it otherwise.
fn read_file<R: ReadModel>(conn: &Connection, generation: u64) -> Result<ModelFile, String> {
    let row = model_row(conn)?;
    if row.created_at_head < 0 {
        return Err(format!("a negative head {}", row.created_at_head));
    }
    if row.name != R::NAME || row.version != i64::from(R::VERSION) {
        return Err(format!("it holds `{}` version {}", row.name, row.version));
    }
    if row.generation != events::to_i64(generation) {
        return Err(format!(
            "it holds generation {} of `{}` version {}",
            row.generation, row.name, row.version
        ));
    }
    let non_negative = |n: i64| u64::try_from(n).map_err(|_| format!("a negative position {n}"));
    Ok(ModelFile {
        generation,
        checkpoint: non_negative(row.position)?,
        personal: row.personal_at.is_some(),
        rebuild_for: row.rebuild_for.map(non_negative).transpose()?,
    })
}

pub(crate) fn serving(conn: &Connection, name: &str) -> rusqlite::Result<Option<Edition>> {
    conn.prepare_cached("SELECT version, generation FROM serving WHERE name = ?1")?
        .query_row([name], |r| {
            let generation: i64 = r.get(1)?;
            let generation = u64::try_from(generation)
                .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(1, generation))?;
            Ok((r.get(0)?, generation))
        })
        .optional()
}

/// The directory of read models beside the events file `events`:
/// `events.db` → `events.read-models/`.
pub(crate) fn default_dir(events: &Path) -> PathBuf {
    events.with_extension("read-models")
}

/// The name of the file of generation `generation` of version `version`
/// of read model `name`: `<name>.v<version>.db` (generation 0) or
/// `<name>.v<version>.g<generation>.db`.
pub(crate) fn model_file_name(name: &str, version: u32, generation: u64) -> String {
    if generation == 0 {
        format!("{name}.v{version}.db")
    } else {
        format!("{name}.v{version}.g{generation}.db")
    }
}

/// The version, generation and suffix (`""`, `-wal`, `-shm`) of a file of
/// read model `name`: `<name>.v<version>.db<suffix>` (generation 0) or
/// `<name>.v<version>.g<generation>.db<suffix>`.
pub(crate) fn parse_model_file<'f>(name: &str, file: &'f str) -> Option<(u32, u64, &'f str)> {
    let rest = file.strip_prefix(name)?.strip_prefix(".v")?;
    let (edition, suffix) = rest.split_once(".db")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match edition.split_once(".g") {
        Some((v, g)) if digits(v) && digits(g) => Some((v.parse().ok()?, g.parse().ok()?, suffix)),
        None if digits(edition) => Some((edition.parse().ok()?, 0, suffix)),
        _ => None,
    }
}

pub(crate) fn parked(conn: &Connection, name: &'static str) -> Result<Vec<Parked>, ReadModelError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT position, stream_id, version, name, error, attempts, parked_at \
             FROM _es_parked ORDER BY position",
        )
        .map_err(sqlite(name))?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, u32>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(sqlite(name))?;
    let mut found = Vec::new();
    for row in rows {
        let (position, stream, version, event, error, attempts, at) = row.map_err(sqlite(name))?;
        let stream = StreamId::new(&stream).map_err(|e| ReadModelError::Store(e.into()))?;
        let (Ok(position), Ok(version)) = (u64::try_from(position), u64::try_from(version)) else {
            return Err(ReadModelError::Store(es_core::Error::Corrupt {
                detail: format!("read model `{name}` parked an event at a negative position"),
            }));
        };
        found.push(Parked {
            position,
            stream,
            version,
            name: event,
            error,
            attempts,
            parked_at: Timestamp::from_unix_micros(at),
        });
    }
    Ok(found)
}
