//! [`SqliteStore::projections`]: every projection's checkpoint and how far
//! behind the head it is, read without creating or writing anything.
//!
//! Three places keep checkpoints:
//!
//! - the read-model files in the directory beside the events file
//!   (`events.db` → `events.read-models/`, see
//!   [`ReadModels`](crate::ReadModels)), one per version and generation of
//!   each model, with the registry `serving.db` naming the one that serves;
//! - the `inline_read_models` table of the events file, for the inline read
//!   models ([`SqliteOptions::inline`](crate::SqliteOptions::inline));
//! - the `checkpoints` table of the events file, where the
//!   [`CheckpointStore`](es_core::CheckpointStore) keeps the positions of
//!   the projections es-core's runner feeds.
//!
//! Every file is opened `SQLITE_OPEN_READ_ONLY`, on connections that only
//! query: a store opened with
//! [`SqliteOptions::read_only`](crate::SqliteOptions::read_only) (an
//! inspector's) can list them, a missing directory is no read models (it is
//! not created), and no file is migrated. The one thing a reader leaves is
//! SQLite's own: reading a database in WAL mode makes its `-wal` and
//! `-shm` companions when no other connection has them open (an empty log
//! and its index, holding no data), as every reader of such a file does.

use std::path::{Path, PathBuf};

use es_core::Timestamp;
use rusqlite::{Connection, OptionalExtension};

use crate::error::{OpenError, store_error};
use crate::events;
use crate::options::SqliteOptions;
use crate::read_models::{
    self, Edition, MODEL_APP_ID, MODEL_FORMAT, REGISTRY_APP_ID, REGISTRY_FORMAT,
};
use crate::schema::{self, Role};
use crate::store::SqliteStore;

/// One projection's checkpoint as stored, and how far behind the store's
/// head it is: what [`SqliteStore::projections`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// What keeps its checkpoint: a read-model file, an inline read model,
    /// or the checkpoint store.
    pub kind: ProjectionKind,
    /// The position of the last event it has taken (its checkpoint; 0 when
    /// it has taken none yet).
    pub position: u64,
    /// The store's last position, read after the checkpoint (so never
    /// before it, unless the events file was replaced by a shorter one).
    pub head: u64,
    /// How much later the event at the head was recorded than the last
    /// event the projection has taken, in microseconds: 0 when it is caught
    /// up; `None` when it has taken no event yet (there is no event of its
    /// own to compare with).
    pub lag_micros: Option<i64>,
    /// How many events are parked in its `_es_parked` table
    /// ([`OnError::Park`](crate::OnError::Park)); always 0 for inline read
    /// models and checkpoints, which do not park.
    pub parked: u64,
}

impl ProjectionStatus {
    /// How many events the projection is behind the head.
    pub fn lag_events(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }

    /// Whether it has taken every event up to the head.
    pub fn caught_up(&self) -> bool {
        self.position >= self.head
    }
}

/// What keeps a projection's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionKind {
    /// A durable read model's file in the directory of read models: one
    /// per version and generation, so a model being rebuilt beside its
    /// serving version is listed twice.
    ReadModel {
        /// The version of the model the file holds.
        version: u32,
        /// Its generation (0 for `<name>.v<version>.db`; a version rebuilt
        /// to forget a data subject moves to a new generation).
        generation: u64,
        /// Whether the registry names this file as the one serving queries.
        serving: bool,
        /// Set when the file is to be replaced by a new generation (a
        /// rebuild is pending): the position of the forgetting that asked
        /// for it. The file takes no more events.
        rebuild_for: Option<u64>,
        /// The file.
        file: PathBuf,
    },
    /// An inline read model: tables in the events file, moved in each
    /// append's transaction by a process that registered it.
    Inline {
        /// The version its tables were built by.
        version: u32,
    },
    /// A position in the checkpoint store (the `checkpoints` table).
    Checkpoint,
}

/// Why [`SqliteStore::projections`] could not list the projections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionsError {
    /// The events file cannot be read.
    #[error(transparent)]
    Store(#[from] es_core::Error),
    /// The directory of read models, a model's file or the registry
    /// cannot be opened or read (damaged, locked past the busy timeout, of
    /// a newer format).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A file named as a read-model file (or the registry) is not one, or
    /// holds another model than its name says.
    #[error("`{}` is not a read-model file: {detail}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
}

impl SqliteStore {
    /// Every projection's checkpoint and lag: the read-model files in the
    /// directory beside the events file (`events.db` →
    /// `events.read-models/`), then the inline read models, then the
    /// checkpoint store's positions, each group sorted by name (read-model
    /// files then by version and generation).
    ///
    /// A read model is listed once per file, that is per version and
    /// generation: one being rebuilt beside its serving version shows
    /// twice. Inline read models are moved only by processes that register
    /// them ([`SqliteOptions::inline`](crate::SqliteOptions::inline)), so
    /// appends of others leave them behind until one opens the store.
    ///
    /// Creates and writes nothing, so it works on a store opened
    /// [`read_only`](crate::SqliteOptions::read_only), and while runners
    /// of other processes write: every file is opened
    /// `SQLITE_OPEN_READ_ONLY` on connections that only query, a missing
    /// directory is no read models, a file being created (still empty) is
    /// passed by, and nothing is migrated. The one thing left behind is
    /// SQLite's own: reading a database in WAL mode makes its `-wal` and
    /// `-shm` companions when no other connection has them open (an empty
    /// log and its index, holding no data), as every reader of such a
    /// file does. The read-model files are read first, then the head:
    /// the lag is never negative.
    ///
    /// ```
    /// use es_core::{CheckpointStore, EventStore, ExpectedVersion, NewEvent, StreamId};
    /// use es_core::blocking::block_on;
    /// use es_sqlite::{ProjectionKind, SqliteStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("events.db");
    /// let store = SqliteStore::open(&path)?;
    /// let stream = StreamId::new("ticket-1")?;
    /// let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
    /// let closed = NewEvent::new("ticket", "ticket-closed", 1, "{}");
    /// block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened, closed]))?;
    /// block_on(store.save_checkpoint("mailer", 1))?;
    /// drop(store);
    ///
    /// let inspected = SqliteStore::options().read_only().open(&path)?;
    /// let listed = inspected.projections()?;
    /// assert_eq!(listed.len(), 1);
    /// assert_eq!((listed[0].name.as_str(), &listed[0].kind), ("mailer", &ProjectionKind::Checkpoint));
    /// assert_eq!((listed[0].position, listed[0].head, listed[0].lag_events()), (1, 2, 1));
    /// assert!(!dir.path().join("events.read-models").exists(), "nothing is created");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ProjectionsError::Store`] when the events file cannot be read;
    /// [`ProjectionsError::Open`] when the directory, a model's file or the
    /// registry cannot; [`ProjectionsError::Foreign`] for a file named as a
    /// read-model file that is not one.
    pub fn projections(&self) -> Result<Vec<ProjectionStatus>, ProjectionsError> {
        self.projections_in(read_models::default_dir(self.path()))
    }

    /// [`projections`](SqliteStore::projections) with the read models in
    /// `dir` (as [`ReadModels::open_in`](crate::ReadModels::open_in) keeps
    /// them).
    ///
    /// # Errors
    ///
    /// As [`projections`](SqliteStore::projections).
    pub fn projections_in(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<Vec<ProjectionStatus>, ProjectionsError> {
        let mut options = self.opened_with().clone();
        options.read_only = true;
        let mut found = model_files(dir.as_ref(), &options)?;
        let listed = self.pool().with(|conn| {
            let snapshot = conn.unchecked_transaction().map_err(store_error)?;
            let listed = from_events_file(&snapshot, &mut found);
            snapshot.finish().map_err(store_error)?;
            listed
        })?;
        Ok(listed)
    }
}

/// What a read-model file holds, before the head is known.
struct ModelFile {
    name: String,
    version: u32,
    generation: u64,
    position: u64,
    rebuild_for: Option<u64>,
    parked: u64,
    serving: bool,
    file: PathBuf,
}

/// Reads the head, the inline models and the checkpoints in `db`'s read
/// transaction, and completes the read-model files' statuses with it.
fn from_events_file(
    db: &Connection,
    files: &mut Vec<ModelFile>,
) -> es_core::Result<Vec<ProjectionStatus>> {
    let head = events::last_position(db)?;
    let head_at = recorded_at(db, head)?;
    let lag = |position: u64| -> es_core::Result<Option<i64>> {
        if position >= head {
            return Ok(Some(0));
        }
        if position == 0 {
            return Ok(None);
        }
        Ok(match (head_at, recorded_at(db, position)?) {
            (Some(head_at), Some(at)) => {
                Some((head_at.as_unix_micros() - at.as_unix_micros()).max(0))
            }
            _ => None,
        })
    };
    let mut listed = Vec::new();
    for file in files.drain(..) {
        listed.push(ProjectionStatus {
            lag_micros: lag(file.position)?,
            name: file.name,
            kind: ProjectionKind::ReadModel {
                version: file.version,
                generation: file.generation,
                serving: file.serving,
                rebuild_for: file.rebuild_for,
                file: file.file,
            },
            position: file.position,
            head,
            parked: file.parked,
        });
    }
    let inline = named_positions(
        db,
        "SELECT name, position, version FROM inline_read_models ORDER BY name",
    )?;
    let checkpoints = named_positions(
        db,
        "SELECT name, position, NULL FROM checkpoints ORDER BY name",
    )?;
    for (name, position, version) in inline.into_iter().chain(checkpoints) {
        let kind = match version {
            Some(version) => ProjectionKind::Inline { version },
            None => ProjectionKind::Checkpoint,
        };
        listed.push(ProjectionStatus {
            lag_micros: lag(position)?,
            name,
            kind,
            position,
            head,
            parked: 0,
        });
    }
    Ok(listed)
}

/// The rows of `sql`: a name, a position, and a version or NULL.
fn named_positions(db: &Connection, sql: &str) -> es_core::Result<Vec<(String, u64, Option<u32>)>> {
    let mut query = db.prepare(sql).map_err(store_error)?;
    let rows = query
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<u32>>(2)?,
            ))
        })
        .map_err(store_error)?;
    let mut found = Vec::new();
    for row in rows {
        let (name, position, version) = row.map_err(store_error)?;
        let position = u64::try_from(position).map_err(|_| {
            crate::error::corrupt(format!("the checkpoint of `{name}` is negative"))
        })?;
        found.push((name, position, version));
    }
    Ok(found)
}

/// When the event at `position` was recorded, if there is one.
fn recorded_at(db: &Connection, position: u64) -> es_core::Result<Option<Timestamp>> {
    if position == 0 {
        return Ok(None);
    }
    db.prepare_cached("SELECT recorded_at FROM events WHERE position = ?1")
        .and_then(|mut q| {
            q.query_row([events::to_i64(position)], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|at| at.map(Timestamp::from_unix_micros))
        .map_err(store_error)
}

/// Whether `file` is named as a read-model file: `<name>.v<version>.db` or
/// `<name>.v<version>.g<generation>.db` for some name (names may hold
/// dots, so every `.v` is tried).
fn is_model_file(file: &str) -> bool {
    file.match_indices(".v").any(|(at, _)| {
        let name = &file[..at];
        !name.is_empty() && matches!(read_models::parse_model_file(name, file), Some((_, _, "")))
    })
}

/// The read-model files in `dir`, sorted by name, version and generation,
/// each marked serving or not from the registry.
fn model_files(dir: &Path, options: &SqliteOptions) -> Result<Vec<ModelFile>, ProjectionsError> {
    let io = |source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e).into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_model_file(name) {
            continue;
        }
        if let Some(file) = model_file(&entry.path(), name, options)? {
            files.push(file);
        }
    }
    files.sort_by(|a, b| {
        (&a.name, a.version, a.generation).cmp(&(&b.name, b.version, b.generation))
    });
    let registry = dir.join("serving.db");
    if registry.exists() {
        let conn = schema::connect(&registry, options, Role::Reader)?;
        let sqlite = |e| OpenError::sqlite(&registry, e);
        let format = match identity(&conn).map_err(sqlite)? {
            (REGISTRY_APP_ID, format) if format > REGISTRY_FORMAT => {
                return Err(OpenError::SchemaTooNew {
                    path: registry,
                    found: format,
                    supported: REGISTRY_FORMAT,
                }
                .into());
            }
            (REGISTRY_APP_ID, format) => Some(format),
            // Being created by a runner's first open: nothing serves yet.
            (0, 0) => None,
            _ => {
                return Err(ProjectionsError::Foreign {
                    path: registry,
                    detail: "not a registry of read models".into(),
                });
            }
        };
        if let Some(format) = format {
            for file in &mut files {
                let serving = serving(&conn, format, &file.name).map_err(sqlite)?;
                file.serving = serving == Some((file.version, file.generation));
            }
        }
    }
    Ok(files)
}

/// The version and generation of `name` that serve, in a registry of
/// format `format` (format 1 has no generations: 0).
fn serving(conn: &Connection, format: i64, name: &str) -> rusqlite::Result<Option<Edition>> {
    if format >= 2 {
        return read_models::serving(conn, name);
    }
    conn.query_row("SELECT version FROM serving WHERE name = ?1", [name], |r| {
        Ok((r.get(0)?, 0))
    })
    .optional()
}

/// `PRAGMA application_id` and `PRAGMA user_version`.
fn identity(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    Ok((
        conn.query_row("PRAGMA application_id", [], |r| r.get(0))?,
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
    ))
}

/// The checkpoint row and parked count of the read-model file at `path`
/// (named `file`); `None` for a file being created (no tables yet).
fn model_file(
    path: &Path,
    file: &str,
    options: &SqliteOptions,
) -> Result<Option<ModelFile>, ProjectionsError> {
    let conn = schema::connect(path, options, Role::Reader)?;
    let sqlite = |e| OpenError::sqlite(path, e);
    let foreign = |detail: String| ProjectionsError::Foreign {
        path: path.to_path_buf(),
        detail,
    };
    let snapshot = conn.unchecked_transaction().map_err(sqlite)?;
    let (app, format) = identity(&snapshot).map_err(sqlite)?;
    if app == 0 && format == 0 {
        let tables: i64 = snapshot
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(sqlite)?;
        if tables == 0 {
            return Ok(None);
        }
    }
    if app != MODEL_APP_ID {
        return Err(foreign("not a read-model file".into()));
    }
    let (name, version, generation, position, rebuild_for) = match format {
        MODEL_FORMAT => {
            let row = read_models::model_row(&snapshot).map_err(foreign)?;
            (
                row.name,
                row.version,
                row.generation,
                row.position,
                row.rebuild_for,
            )
        }
        // Format 1 (migrated by the next runner that opens it) has no
        // generations and nothing for forgetting.
        1 => snapshot
            .query_row(
                "SELECT name, version, position FROM _es_read_model",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, 0, r.get(2)?, None)),
            )
            .map_err(|e| foreign(format!("no checkpoint row: {e}")))?,
        found if found > MODEL_FORMAT => {
            return Err(OpenError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: MODEL_FORMAT,
            }
            .into());
        }
        found => return Err(foreign(format!("read-model file format {found}"))),
    };
    let parked: i64 = snapshot
        .query_row("SELECT count(*) FROM _es_parked", [], |r| r.get(0))
        .map_err(sqlite)?;
    snapshot.finish().map_err(sqlite)?;
    let edition = (u32::try_from(version), u64::try_from(generation));
    let (Ok(version), Ok(generation)) = edition else {
        return Err(foreign(format!(
            "it holds version {version}, generation {generation}"
        )));
    };
    if read_models::parse_model_file(&name, file) != Some((version, generation, "")) {
        return Err(foreign(format!(
            "it holds `{name}` version {version} generation {generation}"
        )));
    }
    let non_negative =
        |n: i64| u64::try_from(n).map_err(|_| foreign(format!("a negative position {n}")));
    Ok(Some(ModelFile {
        name,
        version,
        generation,
        position: non_negative(position)?,
        rebuild_for: rebuild_for.map(non_negative).transpose()?,
        parked: u64::try_from(parked).unwrap_or(0),
        serving: false,
        file: path.to_path_buf(),
    }))
}
