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

use es_core::privacy::Keys;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use es_core::projection::ProjectionError;
use es_core::{Error, RecordedEvent};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::OpenError;
use crate::events;
use crate::read_model::{Failed, ReadModel, dispatch_all};

/// An inline read model with its type erased, for the writer.
pub(crate) trait Inline: Send {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Which events it takes.
    fn filter(&self) -> &events::Filter;
    fn create(&self, db: &Connection) -> rusqlite::Result<()>;
    /// Hands `events` to the model's handlers, in order.
    fn take(&mut self, db: &Connection, events: Vec<RecordedEvent>) -> Result<(), ProjectionError>;
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

    fn take(&mut self, db: &Connection, events: Vec<RecordedEvent>) -> Result<(), ProjectionError> {
        let at: Vec<_> = events
            .iter()
            .map(|e| (e.position, e.stream_id.clone(), e.version))
            .collect();
        dispatch_all(&mut self.model, db, events).map_err(|Failed { index, reason }| {
            let (position, stream, version) = at[index].clone();
            ProjectionError {
                projection: R::NAME,
                position,
                stream,
                version,
                reason,
            }
        })
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
        for model in &self.0 {
            let mut model = lock(model);
            let name = model.name();
            let failed = |detail: String| OpenError::InlineReadModel {
                path: path.to_path_buf(),
                name,
                detail,
            };
            let position = create_or_rebuild(conn, &**model).map_err(|e| failed(e.to_string()))?;
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
                model
                    .take(conn, events)
                    .map_err(|e| Error::Projection(Box::new(e)))?;
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
fn create_or_rebuild(conn: &mut Connection, model: &dyn Inline) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<(u32, i64, String)> = tx
        .query_row(
            "SELECT version, position, objects FROM inline_read_models WHERE name = ?1",
            [model.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((version, position, _)) = &stored
        && *version == model.version()
    {
        return Ok(u64::try_from(*position).unwrap_or(0));
    }
    if let Some((version, _, objects)) = &stored {
        tracing::info!(
            read_model = model.name(),
            from = version,
            to = model.version(),
            "rebuilding an inline read model"
        );
        let objects: Vec<(String, String)> = serde_json::from_str(objects).map_err(|e| {
            rusqlite::Error::ToSqlConversionFailure(
                format!("the objects of inline read model `{}`: {e}", model.name()).into(),
            )
        })?;
        // Triggers and views first: a table's drop takes its own indexes
        // and triggers, but a view over it would be left broken.
        let mut objects = objects;
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
    }
    let before = schema_objects(&tx)?;
    model.create(&tx)?;
    let created: Vec<(String, String)> =
        schema_objects(&tx)?.difference(&before).cloned().collect();
    let objects = serde_json::to_string(&created)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    tx.execute(
        "INSERT INTO inline_read_models (name, version, position, objects) VALUES (?1, ?2, 0, ?3) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = 0, objects = excluded.objects",
        (model.name(), model.version(), objects),
    )?;
    tx.commit()?;
    Ok(0)
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
            model
                .take(&tx, page)
                .map_err(|e| Error::Projection(Box::new(e)))?;
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
