//! [`PostgresStore`]: the event store in PostgreSQL.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use es_core::privacy::{Erased, Forget, Keys};
use es_core::store::backend::{Notifier, check_append};
use es_core::store::{StoredEventType, Watch};
use es_core::{
    AppendResult, CheckpointStore, Error, EventStore, EventStream, Limits, ReadRange,
    RecordedEvent, Result, Snapshot, SnapshotStore, StreamId, StreamWrite, Timestamp, Uuid,
};

use crate::conn::Connector;
use crate::error::{OpenError, corrupt, unsigned};
use crate::keys::PostgresKeyStore;
use crate::listen::{Listener, channel};
use crate::options::{KeysOption, PostgresOptions};
use crate::read::{FIND_EVENT, Paged, ReadJob, Source, event, on_reader, opened, spawn_readers};
use crate::writer::{Counters, Job, Outcome, Work, Writer};

/// Events read per page of a stream.
const STREAM_PAGE: i64 = 256;
/// Events read per page of `$all`.
const ALL_PAGE: i64 = 1024;

/// An event store in a PostgreSQL database: the store for applications
/// that outgrow one SQLite file, or that run on several machines.
///
/// It keeps every promise of [`EventStore`] (it passes es-core's
/// conformance suite and model check, unchanged), with these choices:
///
/// - **Threads of its own.** The synchronous `postgres` client runs on
///   threads the store owns: one writer, a pool of readers
///   ([`readers`](PostgresOptions::readers)), one listener. Its futures
///   only wait for their answers, so any executor can await them (or the
///   blocking facade, [`es_core::blocking`]).
/// - **Gapless positions in commit order**, across processes: see the
///   writer's design (each write transaction takes its positions while
///   holding the one row `es_head`, after the previous writer committed).
/// - **Group commit.** Appends that arrive while a commit is under way
///   share the next transaction (up to
///   [`max_batch`](PostgresOptions::max_batch)); [`write_stats`](Self::write_stats)
///   counts them.
/// - **Watches across processes.** [`watch`](EventStore::watch) wakes on
///   this process's commits at once, and on other processes' through
///   `LISTEN/NOTIFY`, with a poll of the head every
///   [`poll_interval`](PostgresOptions::poll_interval) as the fallback.
/// - **An unknown commit is [`Error::SyncFailed`].** A connection lost
///   while its `COMMIT` was on the way leaves the outcome unknown; the
///   append may be stored. A retry with the same event ids is safe: it is
///   answered as a repeat when the first one committed. Unlike es-sqlite,
///   the store does not refuse writes afterwards (PostgreSQL itself stops
///   on a failed flush of its files).
///
/// Clones share one store; the threads stop when the last clone (and the
/// last stream read from it) is dropped.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
/// use es_postgres::PostgresStore;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let url = std::env::var("ES_POSTGRES_URL")?;
/// # let schema = format!("doc_{}", es_core::Uuid::now_v7().simple());
/// let store = PostgresStore::options().schema(schema).connect(&url)?;
/// let opened = NewEvent::new("ticket", "ticket-opened", 1, r#"{"title":"printer"}"#);
/// let stream = StreamId::new("ticket-1")?;
/// let done = es_core::blocking::block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
/// assert_eq!((done.version, done.first_position), (1, Some(1)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    writer: flume::Sender<Job>,
    readers: flume::Sender<ReadJob>,
    notifier: Notifier,
    keys: Option<Keys>,
    limits: Limits,
    schema: String,
    counters: Arc<Counters>,
    /// Held while the store lives: the listener stops once it is gone.
    _alive: Arc<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.schema)
            .finish_non_exhaustive()
    }
}

/// How many commits the writer made, and how many requests they carried:
/// `requests / commits` is the mean size of a group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Appends, snapshot and checkpoint writes they carried.
    pub requests: u64,
}

impl PostgresStore {
    /// Connects with the default [`PostgresOptions`] to the database `url`
    /// names, making the store's tables in schema `es` when they are
    /// missing.
    ///
    /// # Errors
    ///
    /// As [`PostgresOptions::connect`].
    pub fn connect(url: &str) -> std::result::Result<Self, OpenError> {
        PostgresOptions::new().connect(url)
    }

    /// The options, to set before connecting.
    pub fn options() -> PostgresOptions {
        PostgresOptions::new()
    }

    /// The PostgreSQL schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.shared.schema
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    /// The writer's commits so far, for measuring group commit.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            commits: self.shared.counters.commits.load(Ordering::Relaxed),
            requests: self.shared.counters.requests.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn start(
        options: &PostgresOptions,
        connector: Connector,
    ) -> std::result::Result<Self, OpenError> {
        let mut client = connector.client().map_err(OpenError::Connect)?;
        crate::schema::prepare(&mut client, &connector.schema)?;
        let head: i64 = client
            .query_one("SELECT position FROM es_head", &[])
            .map_err(|source| OpenError::Schema {
                schema: connector.schema.clone(),
                source,
            })?
            .get(0);
        drop(client);
        let keys = match &options.keys {
            None => None,
            Some(KeysOption::Here(kek)) => {
                Some(Keys::new(PostgresKeyStore::open(&connector, kek.clone())?))
            }
            Some(KeysOption::Given(store)) => Some(Keys::new(SharedKeyStore(store.clone()))),
        };
        let notifier = Notifier::new(u64::try_from(head).unwrap_or(0));
        let channel = channel(&connector.schema);
        let counters = Arc::new(Counters::default());
        let (writer, jobs) = flume::bounded(options.max_batch * 4);
        let thread = Writer {
            connector: connector.clone(),
            jobs,
            max_batch: options.max_batch,
            notifier: notifier.clone(),
            channel: channel.clone(),
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("es-postgres-writer".into())
            .spawn(move || thread.run())
            .map_err(OpenError::Threads)?;
        let (readers, read_jobs) = flume::unbounded();
        spawn_readers(options.readers, &connector, &read_jobs).map_err(OpenError::Threads)?;
        let alive = Arc::new(());
        let listener = Listener {
            connector: connector.clone(),
            channel,
            listen: options.listen,
            poll_interval: options.poll_interval,
            notifier: notifier.clone(),
            alive: Arc::downgrade(&alive),
        };
        std::thread::Builder::new()
            .name("es-postgres-listener".into())
            .spawn(move || listener.run())
            .map_err(OpenError::Threads)?;
        Ok(PostgresStore {
            shared: Arc::new(Shared {
                connector: connector.clone(),
                writer,
                readers,
                notifier,
                keys,
                limits: options.limits,
                schema: connector.schema,
                counters,
                _alive: alive,
            }),
        })
    }

    /// Sends `work` to the writer; its outcome, once committed.
    fn write(&self, work: Work) -> impl Future<Output = Result<Outcome>> + Send + 'static {
        let (reply, answer) = flume::bounded(1);
        let sent = self
            .shared
            .writer
            .send(Job {
                work,
                reply: Some(reply),
            })
            .map_err(|_| Error::Closed);
        async move {
            sent?;
            answer.recv_async().await.map_err(|_| Error::Closed)?
        }
    }

    fn write_done(&self, work: Work) -> impl Future<Output = Result<()>> + Send + 'static {
        let written = self.write(work);
        async move { written.await.map(drop) }
    }

    fn read<T, F>(&self, read: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::conn::Conn) -> Result<T> + Send + 'static,
    {
        on_reader(&self.shared.readers, read)
    }

    fn paged(&self, source: Source, start: u64, page: i64) -> EventStream {
        Box::pin(Paged::new(
            self.shared.readers.clone(),
            self.shared.keys.clone(),
            source,
            start,
            page,
        ))
    }

    fn append_checked(
        &self,
        mut writes: Vec<StreamWrite>,
    ) -> Result<impl Future<Output = Result<Outcome>> + Send + 'static> {
        if let Some(keys) = &self.shared.keys {
            keys.seal_writes(&mut writes)?;
        }
        let checked = check_append(&self.shared.limits, writes)?;
        // PostgreSQL's text holds no NUL character; every other text is
        // checked by the name and stream id rules, or is serialized JSON.
        if let Some(event) = checked
            .writes
            .iter()
            .flat_map(|w| &w.events)
            .find(|e| e.payload.as_str().contains('\0'))
        {
            return Err(Error::InvalidEvent {
                name: event.name.to_string(),
                reason: "the payload holds a NUL character, which PostgreSQL cannot store in text",
            });
        }
        Ok(self.write(Work::Append(checked)))
    }
}

/// A caller's key store, shared by the clones of the options.
struct SharedKeyStore(Arc<dyn es_core::privacy::KeyStore>);

impl es_core::privacy::KeyStore for SharedKeyStore {
    fn current_key(
        &self,
        subject: &str,
    ) -> std::result::Result<es_core::privacy::DataKey, es_core::privacy::PrivacyError> {
        self.0.current_key(subject)
    }

    fn key(
        &self,
        subject: &str,
        id: Uuid,
    ) -> std::result::Result<Option<es_core::privacy::DataKey>, es_core::privacy::PrivacyError>
    {
        self.0.key(subject, id)
    }

    fn forget(&self, subject: &str) -> std::result::Result<usize, es_core::privacy::PrivacyError> {
        self.0.forget(subject)
    }
}

impl EventStore for PostgresStore {
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send {
        let written = self.append_checked(writes);
        async move {
            match written?.await? {
                Outcome::Appended(results) => Ok(results),
                Outcome::Count(_) | Outcome::Done => {
                    Err(corrupt("the writer answered an append with no result"))
                }
            }
        }
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        let source = Source::Stream {
            id: stream.clone(),
            end: range.end.unwrap_or(u64::MAX),
        };
        self.paged(source, range.first(), STREAM_PAGE)
    }

    fn read_all(&self, from: u64) -> EventStream {
        self.paged(Source::All, from, ALL_PAGE)
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send {
        let stream = stream.clone();
        self.read(move |conn| {
            let rows = conn.query(
                "SELECT version FROM es_streams WHERE stream_id = $1",
                &[&stream.as_str()],
            )?;
            rows.first()
                .map_or(Ok(0), |row| unsigned(row.get(0), "version"))
        })
    }

    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send {
        self.read(|conn| {
            let rows = conn.query("SELECT position FROM es_head", &[])?;
            let row = rows
                .first()
                .ok_or_else(|| corrupt("the head row es_head is missing"))?;
            unsigned(row.get(0), "position")
        })
    }

    fn watch(&self) -> Watch {
        self.shared.notifier.watch()
    }

    /// Looked up in the index of event ids.
    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        let keys = self.shared.keys.clone();
        self.read(move |conn| {
            let rows = conn.query(FIND_EVENT, &[&event_id])?;
            rows.first()
                .map(|row| opened(keys.as_ref(), event(row, &mut None)?))
                .transpose()
        })
    }

    /// Filtered in the query, by an index of correlation ids.
    fn read_correlated(&self, correlation_id: Uuid) -> EventStream {
        self.paged(Source::Correlated(correlation_id), 1, ALL_PAGE)
    }

    /// Read from the summary the writer keeps with each commit: no payload
    /// is read.
    fn event_types(&self) -> impl Future<Output = Result<Vec<StoredEventType>>> + Send {
        self.read(|conn| {
            let rows = conn.query(
                "SELECT aggregate_type, name, schema_version, count FROM es_event_types WHERE count > 0",
                &[],
            )?;
            let mut counts = Vec::with_capacity(rows.len());
            for row in rows {
                let schema_version: i32 = row.get(2);
                let count: i64 = row.get(3);
                counts.push((
                    (row.get(0), row.get(1), u32::try_from(schema_version).map_err(|_| corrupt("a negative schema version"))?),
                    unsigned(count, "count")?,
                ));
            }
            Ok(StoredEventType::from_counts(counts))
        })
    }
}

impl SnapshotStore for PostgresStore {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        let stream = stream.clone();
        self.read(move |conn| {
            let rows = conn.query(
                "SELECT aggregate_type, version, schema_version, state, taken_at
                 FROM es_snapshots WHERE stream_id = $1",
                &[&stream.as_str()],
            )?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let (version, schema_version): (i64, i32) = (row.get(1), row.get(2));
            // A snapshot that does not read is not an error: the events
            // are replayed instead.
            let (Ok(version), Ok(schema_version)) =
                (u64::try_from(version), u32::try_from(schema_version))
            else {
                return Ok(None);
            };
            Ok(Some(Snapshot {
                stream_id: stream,
                aggregate_type: row.get(0),
                version,
                schema_version,
                state: row.get(3),
                taken_at: Timestamp::from_unix_micros(row.get(4)),
            }))
        })
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        self.write_done(Work::SaveSnapshot(snapshot))
    }

    fn queue_snapshot(&self, snapshot: Snapshot) {
        let job = Job {
            work: Work::SaveSnapshot(snapshot),
            reply: None,
        };
        if self.shared.writer.try_send(job).is_err() {
            tracing::debug!("the writer's queue is full; a snapshot is dropped");
        }
    }

    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        self.write_done(Work::DeleteSnapshot(stream.clone()))
    }
}

impl CheckpointStore for PostgresStore {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        let name = name.to_owned();
        self.read(move |conn| {
            let rows = conn.query(
                "SELECT position FROM es_checkpoints WHERE name = $1",
                &[&name],
            )?;
            rows.first()
                .map(|row| unsigned(row.get(0), "checkpoint"))
                .transpose()
        })
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write_done(Work::SaveCheckpoint {
            name: name.to_owned(),
            position,
        })
    }
}

/// [`Forget::forget`] is the default: [`erase`](Forget::erase), then the
/// `es.subject-forgotten` event.
impl Forget for PostgresStore {
    /// Destroys the subject's keys and deletes every snapshot, recording
    /// nothing: one shard's part of a sharded store's forgetting.
    fn erase(&self, subject: &str) -> impl Future<Output = Result<Erased>> + Send {
        let keys_destroyed = self
            .shared
            .keys
            .as_ref()
            .map_or(Ok(0), |keys| keys.forget(subject));
        let deleted = self.write(Work::DeleteAllSnapshots);
        async move {
            let keys_destroyed = keys_destroyed?;
            let snapshots_deleted = match deleted.await? {
                Outcome::Count(n) => n,
                Outcome::Appended(_) | Outcome::Done => 0,
            };
            Ok(Erased::new(keys_destroyed, snapshots_deleted))
        }
    }
}
