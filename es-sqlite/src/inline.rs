//! Inline read models: tables in the events file, updated by the writer
//! inside the append's own transaction, so the caller of an append reads
//! its write as soon as the append returns (and a handler's refusal refuses
//! the append).
//!
//! Registered with [`SqliteOptions::inline`](crate::SqliteOptions::inline).
//! At open, each is brought up to date before the store takes a write:
//! created (its tables made by [`ReadModel::create`]) when new, rebuilt from
//! the first event when its version changed (the objects its older version
//! made are dropped first), and caught up when events were appended while it
//! was not registered. That work holds the open: an inline model suits
//! small, cheap tables that must be exact at every commit; a model that
//! takes time to build is a durable read model
//! ([`ReadModels`](crate::ReadModels)), rebuilt beside the old one without
//! downtime.
//!
//! # Forgetting
//!
//! An `es.subject-forgotten` event is appended like any other, so inline
//! models see it in the transaction that records it, whatever they list.
//! A model that has taken an event carrying personal data (recorded in
//! `_es_inline_personal`, beside `inline_read_models`) has its
//! [`forget`](ReadModel::forget) hook called there; when the hook answers
//! [`Rebuild`](crate::Forgetting::Rebuild) (the default), the model is
//! rebuilt in place in that same transaction: its tables dropped (the
//! writer runs with `secure_delete`, so their pages are overwritten) and
//! made again from the first event, which now reads the subject's fields
//! as forgotten. Readers see the model before the forgetting or after it,
//! never in between, and the store's `forget` then truncates the log. The
//! rebuild holds the writer, as every inline model's work does: a model
//! that holds personal data of many subjects deletes their rows in its
//! hook instead.

use es_core::privacy::Keys;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use es_core::projection::ProjectionError;
use es_core::{Error, RecordedEvent};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{OpenError, store_error};
use crate::events;
use crate::read_model::{Failed, Fed, Feed, Ledger, ReadModel, dispatch_all};

/// What forgetting needs to know of each inline model: the last position
/// of the log when its tables were made (subjects forgotten up to it had
/// lost their keys before it read its first event), and the position of
/// the first event with personal data it took (NULL: none; 0: unknown,
/// for a model made by an earlier es-sqlite). Made when a store with
/// inline models opens.
const PERSONAL_TABLE: &str = "
    CREATE TABLE IF NOT EXISTS _es_inline_personal (
        name            TEXT    PRIMARY KEY,
        created_at_head INTEGER NOT NULL CHECK (created_at_head >= 0),
        personal_at     INTEGER CHECK (personal_at >= 0)
    ) STRICT, WITHOUT ROWID;
";

/// An inline read model with its type erased, for the writer.
pub(crate) trait Inline: Send {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Which events it takes.
    fn filter(&self) -> &events::Filter;
    fn create(&self, db: &Connection) -> rusqlite::Result<()>;
    /// Hands `events` (of positions up to `upto`) to the model's handlers,
    /// in order; rebuilds the model up to `upto` when a forgetting among
    /// them says so.
    fn take(
        &mut self,
        db: &Connection,
        keys: Option<&Keys>,
        events: Vec<RecordedEvent>,
        upto: u64,
    ) -> Result<(), Error>;
}

struct Typed<R> {
    model: R,
    filter: events::Filter,
}

impl<R: ReadModel> Inline for Typed<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn version(&self) -> u32 {
        R::VERSION
    }

    fn filter(&self) -> &events::Filter {
        &self.filter
    }

    fn create(&self, db: &Connection) -> rusqlite::Result<()> {
        R::create(db)
    }

    fn take(
        &mut self,
        db: &Connection,
        keys: Option<&Keys>,
        events: Vec<RecordedEvent>,
        upto: u64,
    ) -> Result<(), Error> {
        match self.dispatch(db, keys, events)? {
            Fed::All => Ok(()),
            Fed::Rebuild { position } => {
                tracing::info!(
                    read_model = R::NAME,
                    forgetting = position,
                    "a data subject was forgotten: rebuilding an inline read model"
                );
                self.rebuild(db, keys, upto)
            }
        }
    }
}

impl<R: ReadModel> Typed<R> {
    fn dispatch(
        &mut self,
        db: &Connection,
        keys: Option<&Keys>,
        events: Vec<RecordedEvent>,
    ) -> Result<Fed, Error> {
        let at: Vec<_> = events
            .iter()
            .map(|e| (e.position, e.stream_id.clone(), e.version))
            .collect();
        let ledger = InlineLedger(R::NAME);
        // Whether the model took personal data is read in the transaction
        // (an append rolled back may have recorded it): each batch with
        // personal data records it again, a no-op once recorded.
        let mut feed = Feed {
            keys,
            ledger: &ledger,
            personal: false,
            forgot: false,
        };
        dispatch_all(&mut self.model, db, events, &mut feed).map_err(|Failed { index, reason }| {
            let (position, stream, version) = at[index].clone();
            Error::Projection(Box::new(ProjectionError {
                projection: R::NAME,
                position,
                stream,
                version,
                reason,
            }))
        })
    }

    /// Makes the model's tables again and takes every event up to `upto`,
    /// in the caller's transaction.
    fn rebuild(&mut self, db: &Connection, keys: Option<&Keys>, upto: u64) -> Result<(), Error> {
        const PAGE: usize = 4096;
        remake(db, self, keys)?;
        let mut after = 0;
        while after < upto {
            let page = events::named_rows(db, keys, after, upto, &self.filter, PAGE)?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            // Every forgetting up to `upto` is older than the tables now:
            // none asks for another rebuild.
            if let Fed::Rebuild { position } = self.dispatch(db, keys, page)? {
                return Err(Error::Corrupt {
                    detail: format!(
                        "inline read model `{}`: a forgetting at {position} after its rebuild began",
                        R::NAME
                    ),
                });
            }
            after = last;
        }
        set_position(db, R::NAME, upto).map_err(store_error)
    }
}

/// An inline model's record of itself, for forgetting: its row of
/// `_es_inline_personal`.
struct InlineLedger(&'static str);

impl Ledger for InlineLedger {
    fn mark_personal(&self, db: &Connection, position: u64) -> rusqlite::Result<()> {
        db.prepare_cached(
            "UPDATE _es_inline_personal SET personal_at = ?2 WHERE name = ?1 AND personal_at IS NULL",
        )?
        .execute((self.0, events::to_i64(position)))?;
        Ok(())
    }

    fn state(&self, db: &Connection) -> rusqlite::Result<(bool, u64)> {
        let row: Option<(bool, i64)> = db
            .prepare_cached(
                "SELECT personal_at IS NOT NULL, created_at_head FROM _es_inline_personal WHERE name = ?1",
            )?
            .query_row([self.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // No row (it is made at open): as if it held personal data.
        Ok(row.map_or((true, 0), |(personal, head)| {
            (personal, u64::try_from(head).unwrap_or(0))
        }))
    }
}

/// The inline read models of a store, shared by the options that
/// registered them and the writer that runs them.
#[derive(Clone, Default)]
pub(crate) struct InlineModels(Vec<Arc<Mutex<Box<dyn Inline>>>>, Option<Keys>);

impl std::fmt::Debug for InlineModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|m| lock(m).name()))
            .finish()
    }
}

fn lock(model: &Mutex<Box<dyn Inline>>) -> MutexGuard<'_, Box<dyn Inline>> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InlineModels {
    pub(crate) fn push<R: ReadModel>(&mut self, model: R) {
        self.0.push(Arc::new(Mutex::new(Box::new(Typed {
            model,
            filter: events::Filter::of::<R>(),
        }))));
    }

    /// The models opening personal fields with `keys`.
    pub(crate) fn with_keys(mut self, keys: Option<Keys>) -> Self {
        self.1 = keys;
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names and versions registered.
    pub(crate) fn versions(&self) -> Vec<(&'static str, u32)> {
        self.0
            .iter()
            .map(|m| {
                let m = lock(m);
                (m.name(), m.version())
            })
            .collect()
    }

    /// Brings every model up to date (see the module docs), before the
    /// writer starts.
    pub(crate) fn prepare(&self, conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
        if self.0.is_empty() {
            return Ok(());
        }
        conn.execute_batch(PERSONAL_TABLE)
            .map_err(|e| OpenError::sqlite(path, e))?;
        for model in &self.0 {
            let mut model = lock(model);
            let name = model.name();
            let failed = |detail: String| OpenError::InlineReadModel {
                path: path.to_path_buf(),
                name,
                detail,
            };
            let position = create_or_rebuild(conn, self.1.as_ref(), &**model)
                .map_err(|e| failed(display(&e)))?;
            catch_up(conn, self.1.as_ref(), &mut **model, position)
                .map_err(|e| failed(display(&e)))?;
        }
        Ok(())
    }

    /// Hands the events of positions `after + 1..=upto`, just inserted in
    /// the writer's transaction, to every model that lists them.
    ///
    /// # Errors
    ///
    /// [`Error::Projection`] when a handler refuses one: the caller undoes
    /// the request.
    pub(crate) fn take(&self, conn: &Connection, after: u64, upto: u64) -> Result<(), Error> {
        if upto <= after {
            return Ok(());
        }
        for model in &self.0 {
            let mut model = lock(model);
            let events = events::named_rows(
                conn,
                self.1.as_ref(),
                after,
                upto,
                model.filter(),
                usize::MAX,
            )?;
            if !events.is_empty() {
                model.take(conn, self.1.as_ref(), events, upto)?;
            }
        }
        Ok(())
    }

    /// Records, in the writer's transaction, that every model has taken the
    /// events up to `position`.
    pub(crate) fn advance(&self, conn: &Connection, position: u64) -> Result<(), Error> {
        for model in &self.0 {
            let name = lock(model).name();
            set_position(conn, name, position).map_err(crate::error::store_error)?;
        }
        Ok(())
    }
}

/// Creates the model's tables (when new or of another version); returns its
/// position.
fn create_or_rebuild(
    conn: &mut Connection,
    keys: Option<&Keys>,
    model: &dyn Inline,
) -> Result<u64, Error> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error)?;
    let stored: Option<(u32, i64)> = tx
        .query_row(
            "SELECT version, position FROM inline_read_models WHERE name = ?1",
            [model.name()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(store_error)?;
    match stored {
        Some((version, position)) if version == model.version() => {
            let position = u64::try_from(position).unwrap_or(0);
            let ledger: Option<i64> = tx
                .query_row(
                    "SELECT created_at_head FROM _es_inline_personal WHERE name = ?1",
                    [model.name()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(store_error)?;
            if ledger.is_some() {
                return Ok(position);
            }
            // Made by an earlier es-sqlite, which kept nothing for
            // forgetting: whether it took personal data is unknown (so it
            // may have), and a subject forgotten before its position may
            // still be in its tables: rebuilt then.
            if events::first_forgetting(&tx, position)?.is_none() {
                tx.execute(
                    "INSERT INTO _es_inline_personal (name, created_at_head, personal_at) \
                     VALUES (?1, 0, CASE WHEN ?2 > 0 THEN 0 END)",
                    (model.name(), events::to_i64(position)),
                )
                .map_err(store_error)?;
                tx.commit().map_err(store_error)?;
                return Ok(position);
            }
            tracing::info!(
                read_model = model.name(),
                "rebuilding an inline read model: it may hold data of a subject forgotten since it was made"
            );
        }
        Some((version, _)) => {
            tracing::info!(
                read_model = model.name(),
                from = version,
                to = model.version(),
                "rebuilding an inline read model"
            );
        }
        None => {}
    }
    remake(&tx, model, keys)?;
    tx.commit().map_err(store_error)?;
    Ok(0)
}

/// Drops the objects the model's tables were made with (when it has
/// some), makes them again, and records it at position 0, made at the
/// current head, with no personal data taken.
fn remake(tx: &Connection, model: &dyn Inline, keys: Option<&Keys>) -> Result<(), Error> {
    let stored: Option<String> = tx
        .query_row(
            "SELECT objects FROM inline_read_models WHERE name = ?1",
            [model.name()],
            |r| r.get(0),
        )
        .optional()
        .map_err(store_error)?;
    if let Some(objects) = stored {
        let objects: Vec<(String, String)> =
            serde_json::from_str(&objects).map_err(|e| es_core::Error::Corrupt {
                detail: format!("the objects of inline read model `{}`: {e}", model.name()),
            })?;
        drop_objects(tx, objects).map_err(store_error)?;
    }
    // The head first, then the cached keys dropped: every subject
    // forgotten up to the head has lost its keys in the key store, and
    // this process reads them from there again.
    let head = events::last_position(tx)?;
    if let Some(keys) = keys {
        keys.evict_all();
    }
    let before = schema_objects(tx).map_err(store_error)?;
    model.create(tx).map_err(store_error)?;
    let created: Vec<(String, String)> = schema_objects(tx)
        .map_err(store_error)?
        .difference(&before)
        .cloned()
        .collect();
    let objects = serde_json::to_string(&created).map_err(|e| es_core::Error::Corrupt {
        detail: format!("the objects of inline read model `{}`: {e}", model.name()),
    })?;
    tx.execute(
        "INSERT INTO inline_read_models (name, version, position, objects) VALUES (?1, ?2, 0, ?3) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = 0, objects = excluded.objects",
        (model.name(), model.version(), objects),
    )
    .map_err(store_error)?;
    tx.execute(
        "INSERT INTO _es_inline_personal (name, created_at_head, personal_at) VALUES (?1, ?2, NULL) \
         ON CONFLICT (name) DO UPDATE SET created_at_head = excluded.created_at_head, personal_at = NULL",
        (model.name(), events::to_i64(head)),
    )
    .map_err(store_error)?;
    Ok(())
}

/// Drops `objects`: triggers and views first, since a table's drop takes
/// its own indexes and triggers, but a view over it would be left broken.
fn drop_objects(tx: &Connection, mut objects: Vec<(String, String)>) -> rusqlite::Result<()> {
    objects.sort_by_key(|(kind, _)| match kind.as_str() {
        "trigger" => 0,
        "view" => 1,
        "index" => 2,
        _ => 3,
    });
    for (kind, name) in &objects {
        let kind = match kind.as_str() {
            "table" => "TABLE",
            "index" => "INDEX",
            "view" => "VIEW",
            "trigger" => "TRIGGER",
            _ => continue,
        };
        tx.execute_batch(&format!(
            "DROP {kind} IF EXISTS \"{}\"",
            name.replace('"', "\"\"")
        ))?;
    }
    Ok(())
}

fn schema_objects(conn: &Connection) -> rusqlite::Result<BTreeSet<(String, String)>> {
    conn.prepare(
        "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Takes every event after `position`, a page per transaction.
fn catch_up(
    conn: &mut Connection,
    keys: Option<&Keys>,
    model: &mut dyn Inline,
    mut position: u64,
) -> Result<(), Error> {
    const PAGE: usize = 4096;
    let store = crate::error::store_error;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store)?;
        let head = events::last_position(&tx)?;
        if head <= position {
            return Ok(());
        }
        let page = events::named_rows(&tx, keys, position, head, model.filter(), PAGE)?;
        let to = match page.last() {
            Some(last) if page.len() >= PAGE => last.position,
            _ => head,
        };
        if !page.is_empty() {
            model.take(&tx, keys, page, to)?;
        }
        set_position(&tx, model.name(), to).map_err(store)?;
        tx.commit().map_err(store)?;
        position = to;
    }
}

fn set_position(conn: &Connection, name: &str, position: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE inline_read_models SET position = ?2 WHERE name = ?1")?
        .execute((name, events::to_i64(position)))?;
    Ok(())
}

fn display(error: &Error) -> String {
    crate::read_model::display_chain(error)
}
