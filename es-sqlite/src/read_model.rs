//! The read-model side of es-sqlite: what a read model is ([`ReadModel`]),
//! how its runner is configured ([`RunOptions`], [`OnError`]), what it
//! reports ([`Status`], [`Parked`]), and its errors ([`ReadModelError`]).
//! [`ReadModels`](crate::ReadModels) runs and queries them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::panic::{AssertUnwindSafe, catch_unwind};

use es_core::privacy::Keys;
use es_core::projection::{ProjectionError, StopReason};
use es_core::{BoxError, Dispatch, RecordedEvent, StreamId, Timestamp};
use rusqlite::Connection;

use crate::error::OpenError;

/// A durable read model in SQLite tables, fed from `$all` by a
/// [`Runner`](crate::Runner): derive [`Projection`](es_core::Projection)
/// with `context = rusqlite::Connection`, write a
/// [`Handle<E, Connection>`](es_core::Handle) impl per event, and say here
/// which tables it has.
///
/// Each handler gets the connection of the runner's open transaction: its
/// changes and the read model's checkpoint commit together, so after any
/// crash every event has taken effect exactly once. A handler must not
/// commit, roll back or begin transactions itself.
///
/// The model's tables are its state: when a batch is rolled back (a handler
/// failed part way), the events before the failing one are handed to the
/// handlers again. Fields of the struct are for what does not change with
/// events (settings, a cache the tables can rebuild).
///
/// ```
/// use es_core::prelude::*;
/// use es_core::{BoxError, Envelope};
/// use es_sqlite::rusqlite::{self, Connection};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Opened { pub title: String }
///
/// /// Open tickets by title.
/// #[derive(Projection, Default)]
/// #[projection(name = "ticket-titles", events(Opened), context = Connection)]
/// pub struct Titles;
///
/// impl es_sqlite::ReadModel for Titles {
///     fn create(db: &Connection) -> rusqlite::Result<()> {
///         db.execute_batch("CREATE TABLE titles (ticket TEXT PRIMARY KEY, title TEXT NOT NULL)")
///     }
/// }
///
/// impl Handle<Opened, Connection> for Titles {
///     fn handle(&mut self, db: &Connection, e: &Envelope<Opened>) -> Result<(), BoxError> {
///         db.prepare_cached("INSERT INTO titles VALUES (?1, ?2)")?
///             .execute((e.aggregate_id(), &e.event.title))?;
///         Ok(())
///     }
/// }
/// ```
pub trait ReadModel: Dispatch<Connection> {
    /// Creates the model's tables and indexes in its fresh file (in a
    /// transaction, before the first event). Table names starting with
    /// `_es_` are the runner's.
    ///
    /// # Errors
    ///
    /// What SQLite reports; the file is left without the model.
    fn create(db: &Connection) -> rusqlite::Result<()>;

    /// Forgets the data subject `subject` (see
    /// [`es_core::privacy`]): called when the store records that it was
    /// forgotten (its `es.subject-forgotten` event), if the model has ever
    /// taken an event carrying personal data, in the transaction that
    /// moves the checkpoint past that event.
    ///
    /// The subject is the one the forgetting names: a stream id
    /// (`lead-12`) by default, or the value of the field an event names
    /// with `#[personal(subject = field)]`.
    ///
    /// The default answers [`Forgetting::Rebuild`]: the model is built
    /// again from the first event in a new file beside the serving one
    /// (the subject's fields now read as
    /// [`Personal::Forgotten`](es_core::Personal::Forgotten)), swapped in
    /// once it has caught up, and the old file deleted. That is safe for
    /// any model, and costs a rebuild per forgetting. A model that can find
    /// the subject's rows deletes (or blanks) them here and answers
    /// [`Forgetting::Done`]; the runner then commits that with the
    /// checkpoint and truncates the file's write-ahead log (the file is
    /// written with `secure_delete`, so deleted bytes are overwritten).
    ///
    /// A model that caches anything from its tables in its own fields
    /// drops the subject's part here, whatever it answers. Changes made
    /// before answering `Rebuild`, or failing, are rolled back; a failure
    /// (or a panic) is logged and the model is rebuilt.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use es_core::{BoxError, Envelope};
    /// # use es_sqlite::rusqlite::{self, Connection};
    /// # use es_sqlite::Forgetting;
    /// # #[derive(Event, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
    /// # pub struct Joined { pub name: Personal<String> }
    /// /// Members by name; a member's rows are keyed by its stream, which is
    /// /// the subject of its personal fields.
    /// #[derive(Projection, Default)]
    /// #[projection(name = "member-names", events(Joined), context = Connection)]
    /// pub struct Names;
    ///
    /// impl es_sqlite::ReadModel for Names {
    ///     fn create(db: &Connection) -> rusqlite::Result<()> {
    ///         db.execute_batch("CREATE TABLE names (stream TEXT PRIMARY KEY, name TEXT)")
    ///     }
    ///
    ///     fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
    ///         db.execute("DELETE FROM names WHERE stream = ?1", [subject])?;
    ///         Ok(Forgetting::Done)
    ///     }
    /// }
    /// # impl Handle<Joined, Connection> for Names {
    /// #     fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
    /// #         db.execute("INSERT OR REPLACE INTO names VALUES (?1, ?2)",
    /// #             (e.stream_id.as_str(), e.event.name.as_known()))?;
    /// #         Ok(())
    /// #     }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// What SQLite reports: the model is then rebuilt instead.
    fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
        let _ = (db, subject);
        Ok(Forgetting::Rebuild)
    }
}

/// How a read model forgot a data subject: what its
/// [`forget`](ReadModel::forget) hook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forgetting {
    /// The hook deleted (or blanked) every row holding the subject's
    /// personal data itself.
    Done,
    /// The model cannot forget in place: build it again from the first
    /// event (the default).
    Rebuild,
}

/// What a runner does with an event its handler refuses (or that does not
/// decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnError {
    /// Stop the read model at the event, with a
    /// [`ProjectionError`] naming it (the default): nothing is skipped, and
    /// a restarted runner tries the event again.
    #[default]
    Stop,
    /// Park the event and go on: it is kept, with the error, in the model's
    /// `_es_parked` table, listed by [`ReadModels::parked`](crate::ReadModels::parked)
    /// and tried again by [`Runner::retry_parked`](crate::Runner::retry_parked).
    /// The read model then lacks the event until a retry takes it: use this
    /// only for a model that can live with that (a search index, not a
    /// balance).
    Park,
}

/// How a runner runs.
///
/// ```
/// use std::time::Duration;
/// use es_sqlite::{OnError, RunOptions};
///
/// let options = RunOptions::new().on_error(OnError::Park).poll_interval(Duration::from_millis(10));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub(crate) on_error: OnError,
    pub(crate) poll_interval: Duration,
    pub(crate) batch: usize,
    pub(crate) progress_every: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            on_error: OnError::Stop,
            poll_interval: Duration::from_millis(50),
            batch: 1024,
            progress_every: Duration::from_secs(5),
        }
    }
}

impl RunOptions {
    /// The defaults: stop on a failing event, look for other processes'
    /// appends every 50 ms, 1,024 events per transaction, log progress
    /// every 5 s while catching up.
    pub fn new() -> Self {
        RunOptions::default()
    }

    /// What to do with an event the handler refuses.
    #[must_use]
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// How often a live runner looks for events appended by other
    /// processes (in its own process, the store wakes it at once). Also
    /// bounds how long a stop request or a retry waits.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// At most this many events per transaction (1 or more).
    #[must_use]
    pub fn batch(mut self, events: usize) -> Self {
        self.batch = events.max(1);
        self
    }

    /// How often a catch-up logs its progress (`tracing`, level info).
    #[must_use]
    pub fn progress_every(mut self, every: Duration) -> Self {
        self.progress_every = every;
        self
    }
}

/// What a runner is doing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Status {
    /// Opening the model's file, or taking the events committed before it
    /// started.
    CatchingUp,
    /// Caught up, following new events as they are committed.
    Live,
    /// Stopped on request; a new runner resumes at its checkpoint.
    Stopped,
    /// A newer version of the read model serves now: this one stopped.
    Superseded {
        /// The serving version.
        serving: u32,
    },
    /// Stopped by an error: a failing event (with [`OnError::Stop`]), or
    /// the store or the model's file.
    Failed(Arc<ReadModelError>),
}

impl Status {
    /// Whether the runner has ended (stopped, superseded or failed).
    pub fn is_finished(&self) -> bool {
        !matches!(self, Status::CatchingUp | Status::Live)
    }
}

/// An event parked by [`OnError::Park`]: where it is and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Its position in `$all`.
    pub position: u64,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its name.
    pub name: String,
    /// The last error, as text (with its causes).
    pub error: String,
    /// How many times it was tried (1 when first parked).
    pub attempts: u32,
    /// When it was first parked.
    pub parked_at: Timestamp,
}

/// What [`Runner::retry_parked`](crate::Runner::retry_parked) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retried {
    /// Events taken this time (and no longer parked).
    pub taken: usize,
    /// Events that failed again and stay parked.
    pub still_parked: usize,
}

/// What can go wrong running or querying a read model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// An event failed: the read model stopped at it.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// No version of the read model has caught up yet: there is nothing to
    /// read (a model is served only once it has taken every event committed
    /// before it started).
    #[error("read model `{name}` is not serving yet: no version has caught up")]
    NotServing {
        /// The model's name.
        name: &'static str,
    },
    /// A newer version of the read model serves: this program's version of
    /// it is retired (versions only move forward; to go back, release the
    /// old logic under a newer version).
    #[error("read model `{name}` version {version} is superseded by version {serving}")]
    Superseded {
        /// The model's name.
        name: &'static str,
        /// This program's version.
        version: u32,
        /// The serving version.
        serving: u32,
    },
    /// The read model is not an inline model of this store (at this
    /// version): see [`SqliteOptions::inline`](crate::SqliteOptions::inline).
    #[error("read model `{name}` is not an inline read model of this store")]
    NotInline {
        /// The model's name.
        name: &'static str,
    },
    /// The runner ended before the position waited for was reached.
    #[error("the runner of read model `{name}` has ended")]
    Ended {
        /// The model's name.
        name: &'static str,
        /// Why, when it failed.
        #[source]
        cause: Option<Arc<ReadModelError>>,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] es_core::Error),
    /// SQLite failed on the model's file (a query, a table of the model).
    #[error("read model `{name}`: SQLite failed")]
    Sqlite {
        /// The model's name.
        name: &'static str,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The model's file (or the directory of read models) cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The model's file is not the model it should be (another name or
    /// version, a damaged checkpoint).
    #[error("`{}` is not a file of read model `{name}`: {detail}", path.display())]
    Foreign {
        /// The model's name.
        name: &'static str,
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
}

/// A row of a query result as a Rust value: implemented for tuples of up to
/// eight columns of any [`FromSql`](rusqlite::types::FromSql) types, so
/// [`ReadModels::rows`](crate::ReadModels::rows) returns `Vec<(String, i64)>`
/// for `SELECT name, count ...`.
pub trait FromRow: Sized {
    /// Reads the row.
    ///
    /// # Errors
    ///
    /// A column of another type, or a missing column.
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! from_row_tuples {
    ($($len:literal: ($($t:ident $i:tt),+);)+) => {$(
        impl<$($t: rusqlite::types::FromSql),+> FromRow for ($($t,)+) {
            fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    )+};
}

from_row_tuples! {
    1: (A 0);
    2: (A 0, B 1);
    3: (A 0, B 1, C 2);
    4: (A 0, B 1, C 2, D 3);
    5: (A 0, B 1, C 2, D 3, E 4);
    6: (A 0, B 1, C 2, D 3, E 4, F 5);
    7: (A 0, B 1, C 2, D 3, E 4, F 5, G 6);
    8: (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
}

pub(crate) fn sqlite(name: &'static str) -> impl Fn(rusqlite::Error) -> ReadModelError {
    move |source| ReadModelError::Sqlite { name, source }
}

/// Why a batch of events stopped at one.
pub(crate) struct Failed {
    /// The index of the event in the batch.
    pub(crate) index: usize,
    pub(crate) reason: StopReason,
}

/// What a model's runner keeps about it for forgetting, in the model's
/// own tables: a read-model file's `_es_read_model` row, or an inline
/// model's row of `_es_inline_personal`.
pub(crate) trait Ledger {
    /// Records, in the transaction, that the model took an event with
    /// personal data at `position` (kept when one is recorded already).
    fn mark_personal(&self, db: &Connection, position: u64) -> rusqlite::Result<()>;
    /// Whether the model has taken personal data, and the last position
    /// of the log when its tables were created (forgettings up to it
    /// happened before the model read its first event).
    fn state(&self, db: &Connection) -> rusqlite::Result<(bool, u64)>;
}

/// What [`dispatch_all`] needs for forgetting, and reports.
pub(crate) struct Feed<'a> {
    /// The store's keys: a forgotten subject's cached keys are evicted.
    pub(crate) keys: Option<&'a Keys>,
    pub(crate) ledger: &'a dyn Ledger,
    /// Whether the model is known to have taken personal data (recorded
    /// and committed, or recorded in this transaction): payloads are not
    /// looked at for it then.
    pub(crate) personal: bool,
    /// Set when a [`forget`](ReadModel::forget) hook forgot a subject in
    /// place: the file's log is to be truncated after the commit.
    pub(crate) forgot: bool,
}

/// How far [`dispatch_all`] went.
pub(crate) enum Fed {
    /// Every event was taken.
    All,
    /// The events before the one at `position` were taken; that one is a
    /// forgetting the model must be rebuilt for.
    Rebuild { position: u64 },
}

pub(crate) use es_core::privacy::{forgotten_subject, is_forgetting};

/// Decodes each event and hands it to the model's handler, in order; a
/// handler's panic is its event's failure. A forgetting is handed to the
/// model's [`forget`](ReadModel::forget) hook, when the model has taken
/// personal data and its tables are older than the forgetting; it stops
/// the batch when the model must be rebuilt.
pub(crate) fn dispatch_all<R: ReadModel>(
    model: &mut R,
    tx: &Connection,
    events: Vec<RecordedEvent>,
    feed: &mut Feed<'_>,
) -> Result<Fed, Failed> {
    for (index, recorded) in events.into_iter().enumerate() {
        fail::fail_point!("es-sqlite::runner::between-events");
        let failed = |reason| Failed { index, reason };
        if is_forgetting(&recorded) {
            let position = recorded.position;
            match forget(model, tx, &recorded, feed).map_err(|e| failed(StopReason::Handler(e)))? {
                Forgetting::Done => continue,
                Forgetting::Rebuild => return Ok(Fed::Rebuild { position }),
            }
        }
        let personal = &mut feed.personal;
        let ledger = feed.ledger;
        es_core::projection::feed(model, tx, recorded, |recorded| {
            if !*personal && recorded.event.as_str().contains("\"$personal\"") {
                ledger.mark_personal(tx, recorded.position)?;
                *personal = true;
            }
            Ok(())
        })
        .map_err(failed)?;
    }
    Ok(Fed::All)
}

/// What a forgetting means for the model: nothing (`Done`) when its tables
/// never held the subject's data, or the hook forgot it; else `Rebuild`.
/// An error is SQLite failing around the hook (not the hook's own).
fn forget<R: ReadModel>(
    model: &mut R,
    tx: &Connection,
    event: &RecordedEvent,
    feed: &mut Feed<'_>,
) -> Result<Forgetting, BoxError> {
    let subject = forgotten_subject(event);
    if let (Some(keys), Some(subject)) = (feed.keys, &subject) {
        // Another process may have forgotten it: stop opening its values
        // with keys cached here.
        keys.evict(subject);
    }
    let (personal, created_at_head) = feed.ledger.state(tx)?;
    if event.position <= created_at_head || !(personal || feed.personal) {
        return Ok(Forgetting::Done);
    }
    let Some(subject) = subject else {
        tracing::warn!(
            position = event.position,
            "a forgetting without a subject: rebuilding the read model"
        );
        return Ok(Forgetting::Rebuild);
    };
    tx.execute_batch("SAVEPOINT es_forget")?;
    let answer = catch_unwind(AssertUnwindSafe(|| model.forget(tx, &subject)));
    let answer = match answer {
        Ok(Ok(Forgetting::Done)) => {
            tx.execute_batch("RELEASE es_forget")?;
            feed.forgot = true;
            return Ok(Forgetting::Done);
        }
        Ok(Ok(rebuild)) => rebuild,
        Ok(Err(error)) => {
            tracing::warn!(position = event.position, error = %display_chain(&error),
                "the read model's forget hook failed: rebuilding it");
            Forgetting::Rebuild
        }
        Err(panic) => {
            tracing::warn!(position = event.position, panic = %panicked(&*panic),
                "the read model's forget hook panicked: rebuilding it");
            Forgetting::Rebuild
        }
    };
    tx.execute_batch("ROLLBACK TO es_forget; RELEASE es_forget")?;
    Ok(answer)
}

pub(crate) use es_core::projection::panicked;

/// The error and its causes, `: `-separated, for the parked table and logs.
pub(crate) fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
