//! Where a run's events are: a fresh SQLite file in the run's directory
//! (or one file per shard, behind [`ShardedStore`]), or a fresh schema in a
//! PostgreSQL database; the store the workloads run on, the bare
//! connections their `raw_` twins run on, and the removal of it all after
//! the run.

use std::future::Future;
use std::path::{Path, PathBuf};

use es_core::{EventStore, ShardedStore, SnapshotStore, Uuid};
use es_postgres::PostgresStore;
use es_sqlite::SqliteStore;
use ticket::Ticket;

use crate::{Failure, Sync, raw, raw_pg};

/// Where a run's events are.
#[derive(Clone)]
pub(crate) enum Target {
    /// One SQLite file.
    Sqlite { db: PathBuf, sync: Sync },
    /// A [`ShardedStore`] over `shards` SQLite files beside `db` (see
    /// [`shard_path`]).
    Sharded {
        db: PathBuf,
        sync: Sync,
        shards: u32,
    },
    /// A schema of the run's own in a PostgreSQL database.
    Postgres {
        config: Box<postgres::Config>,
        schema: String,
    },
}

/// The store a run is on, as one of the types the workloads are generic
/// over (see [`on_store!`]).
pub(crate) enum Store {
    Sqlite(SqliteStore),
    Sharded(ShardedStore<SqliteStore>),
    Postgres(PostgresStore),
}

/// Runs `$body` with `$s` bound to the store of `$store`, whichever type
/// it is: the same generic code, compiled once per store.
macro_rules! on_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            $crate::target::Store::Sqlite($s) => $body,
            $crate::target::Store::Sharded($s) => $body,
            $crate::target::Store::Postgres($s) => $body,
        }
    };
}
pub(crate) use on_store;

/// What the workloads need of a store beyond the repository's traits.
pub(crate) trait Backend: EventStore + SnapshotStore + Clone {
    /// The events stored (in every shard).
    fn stored(&self) -> impl Future<Output = Result<u64, Failure>> + Send;

    /// The commits of the store's group commit so far, and the requests
    /// they carried; `None` for a store that does not count them.
    fn write_stats(&self) -> Option<(u64, u64)> {
        None
    }
}

impl Backend for SqliteStore {
    async fn stored(&self) -> Result<u64, Failure> {
        Ok(self.last_position().await?)
    }
}

impl Backend for ShardedStore<SqliteStore> {
    /// The sum of the shards' last positions: the sharded store's own is
    /// an encoded position, not a count.
    async fn stored(&self) -> Result<u64, Failure> {
        let mut events = 0;
        for shard in self.shards() {
            events += shard.last_position().await?;
        }
        Ok(events)
    }
}

impl Backend for PostgresStore {
    async fn stored(&self) -> Result<u64, Failure> {
        Ok(self.last_position().await?)
    }

    fn write_stats(&self) -> Option<(u64, u64)> {
        let stats = PostgresStore::write_stats(self);
        Some((stats.commits, stats.requests))
    }
}

/// Shard `i`'s file: `workload-<id>.shard-<i>.db` beside `db`.
pub(crate) fn shard_path(db: &Path, i: u32) -> PathBuf {
    db.with_extension(format!("shard-{i}.db"))
}

/// One task's bare connections to a run's store, for the `raw_` twins.
pub(crate) trait Twin {
    /// Folds a ticket: from its snapshot when `snapshots`, then the events
    /// after it.
    fn load(&mut self, stream: &str, snapshots: bool) -> Result<(Ticket, u64), Failure>;

    /// Load, decide, append with the version checked inside the write
    /// transaction; on a conflict, start again. Returns the conflicts met.
    fn execute_message(
        &mut self,
        stream: &str,
        body: &str,
        snapshots: bool,
    ) -> Result<u64, Failure>;
}

impl Target {
    /// A fresh schema name for a PostgreSQL run.
    pub(crate) fn fresh_schema() -> String {
        format!("w_{}", Uuid::now_v7().simple())
    }

    /// The SQLite file of a single-file run.
    pub(crate) fn sqlite_db(&self) -> Option<(&Path, Sync)> {
        match self {
            Target::Sqlite { db, sync } => Some((db, *sync)),
            _ => None,
        }
    }

    /// Opens the run's store (the first time, makes it).
    pub(crate) fn open(&self) -> Result<Store, Failure> {
        match self {
            Target::Sqlite { db, sync } => Ok(Store::Sqlite(crate::open(db, *sync)?)),
            Target::Sharded { db, sync, shards } => {
                let files = (0..*shards)
                    .map(|i| crate::open(&shard_path(db, i), *sync))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Store::Sharded(ShardedStore::new(files)?))
            }
            Target::Postgres { config, schema } => {
                // The synchronous client runs a runtime of its own, which
                // cannot start on a thread of the workloads' runtime.
                let (config, schema) = (config.clone(), schema.clone());
                off_runtime(move || {
                    let store = PostgresStore::options()
                        .schema(schema)
                        .connect_config(*config)?;
                    Ok(Store::Postgres(store))
                })
            }
        }
    }

    /// Bare connections for one task of a `raw_` twin. Call it on a thread
    /// of its own, not on the runtime.
    pub(crate) fn twin(&self) -> Result<Box<dyn Twin>, Failure> {
        match self {
            Target::Sqlite { db, sync } => Ok(Box::new(raw::connect(db, *sync)?)),
            Target::Sharded { db, sync, shards } => Ok(Box::new(raw::Shards::connect(
                &(0..*shards).map(|i| shard_path(db, i)).collect::<Vec<_>>(),
                *sync,
            )?)),
            Target::Postgres { config, schema } => {
                Ok(Box::new(raw_pg::Conn::connect(config, schema)?))
            }
        }
    }

    /// Removes what the run made: its files, or its schema.
    pub(crate) fn remove(&self) -> Result<(), Failure> {
        match self {
            Target::Sqlite { db, .. } => {
                remove_sqlite(db);
                remove_sqlite(&crate::catchup::raw_model_path(db));
                let _ = std::fs::remove_dir_all(db.with_extension("read-models"));
                Ok(())
            }
            Target::Sharded { db, shards, .. } => {
                for i in 0..*shards {
                    remove_sqlite(&shard_path(db, i));
                }
                Ok(())
            }
            Target::Postgres { config, schema } => {
                let (config, schema) = (config.clone(), schema.clone());
                off_runtime(move || {
                    let mut client = config.connect(postgres::NoTls)?;
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))?;
                    Ok(())
                })
            }
        }
    }
}

/// Removes an SQLite file and its `-wal` and `-shm` files.
fn remove_sqlite(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// Runs `f` on a new thread and waits for it: for the synchronous
/// PostgreSQL client, which must not run on a thread of the runtime.
pub(crate) fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    std::thread::spawn(f)
        .join()
        .map_err(|_| Failure::from("a thread panicked"))?
}
