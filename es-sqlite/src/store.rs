//! [`SqliteStore`]: the handle applications hold.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use es_core::store::backend::{Notifier, check_append, stream_of};
use es_core::{
    AppendResult, CheckpointStore, Error, EventRef, EventStore, EventStream, Limits, Projection,
    ReadRange, RecordedEvent, Result, Snapshot, SnapshotStore, StoredEventType, StreamId,
    StreamWrite, Uuid, Watch,
};

use crate::chain::{self, ChainError, ChainHead, ChainReport};
use crate::damage::Damage;
use crate::error::OpenError;
use crate::events;
use crate::keys::SqliteKeyStore;
use crate::options::{PersonalData, SqliteOptions};
use crate::pool::Pool;
use crate::read_model::{FromRow, ReadModelError};
use crate::reader::{self, ReadJob};
use crate::salvage::{self, SalvageReport, Salvaged};
use crate::schema::{self, Role};
use crate::stream::{PagedStream, Source};
use crate::writer::{self, Job, Outcome, Work};
use crate::{checkpoints, snapshots};
use es_core::privacy::{Erased, Forget, Forgotten, Keys};

/// The embedded SQLite event store: one file, no server.
///
/// Cloning is cheap; clones share the threads and connections. The store
/// owns one writer thread (group commit) and a few reader threads; its
/// futures complete on any executor, or on none through
/// [`es_core::blocking`]. See the crate docs for which thread runs what.
///
/// When the last clone (and the last stream read from it) is dropped, the
/// store closes cleanly: queued writes are committed, the readers close,
/// and the writer moves the write-ahead log into the database file, so the
/// `.db` file alone is then a complete copy.
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
/// use es_sqlite::SqliteStore;
///
/// let store = SqliteStore::open_temporary()?;
/// let stream = StreamId::new("ticket-1")?;
/// let opened = NewEvent::new("ticket", "ticket-opened", 1, r#"{"title":"printer"}"#);
/// let done = es_core::blocking::block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
/// assert_eq!(done.version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Option<flume::Sender<Job>>,
    readers: Option<flume::Sender<ReadJob>>,
    pool: Pool,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    reader_threads: Mutex<Vec<JoinHandle<()>>>,
    notifier: Notifier,
    limits: Limits,
    page_size: usize,
    options: SqliteOptions,
    path: PathBuf,
    /// Seals and opens personal fields, when the store has keys.
    keys: Option<Keys>,
    /// What the writer committed.
    counters: Arc<writer::WriteCounters>,
    /// Set after a failed flush to disk: writes are refused.
    sync_failed: Arc<writer::SyncFailed>,
    /// The first damage found in the file, shared with the pool, the
    /// streams and the writer: once set, every write is refused.
    damage: Arc<Damage>,
    /// Keeps a temporary database's directory until the store is dropped.
    _temporary: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    /// Closes in order: the readers first (nothing reads any more: every
    /// stream holds a clone of the store), then the writer, which commits
    /// what is queued and, as the last connection, checkpoints the log.
    fn drop(&mut self) {
        self.readers = None;
        let readers = std::mem::take(
            &mut *self
                .reader_threads
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for handle in readers {
            if handle.join().is_err() {
                tracing::error!("a reader thread panicked");
            }
        }
        self.pool.close();
        self.writer = None;
        let handle = self
            .writer_thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path` with the default options, creating it
    /// (readable by its owner only) or migrating its schema as needed. A
    /// new store is made whole beside `path` and moved into place, so a
    /// file at `path` is never a store half made.
    ///
    /// # Errors
    ///
    /// An [`OpenError`] naming the file: not an es database, a newer
    /// schema, insecure permissions, a lock held past the busy timeout, an
    /// existing empty file ([`OpenError::EmptyFile`]: perhaps a truncated
    /// copy; see [`SqliteOptions::create_new`]), ... Nothing is written to
    /// a file that cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        SqliteOptions::default().open(path)
    }

    /// Opens a new database in a temporary directory, deleted with the store.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn open_temporary() -> Result<Self, OpenError> {
        SqliteOptions::default().open_temporary()
    }

    /// Options to open a store with.
    pub fn options() -> SqliteOptions {
        SqliteOptions::default()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Waits until every write queued before this call is committed: the
    /// snapshots the repository queues without waiting
    /// ([`SnapshotStore::queue_snapshot`]), most of all.
    ///
    /// ```
    /// # use es_core::{SnapshotStore, Snapshot, StreamId, Timestamp};
    /// # let store = es_sqlite::SqliteStore::open_temporary()?;
    /// # let stream = StreamId::new("s-1")?;
    /// # let snapshot = Snapshot { stream_id: stream.clone(), aggregate_type: "s".into(), version: 1,
    /// #     schema_version: 1, state: b"{}".to_vec(), taken_at: Timestamp::now() };
    /// store.queue_snapshot(snapshot);
    /// es_core::blocking::block_on(store.flush())?;
    /// assert!(es_core::blocking::block_on(store.load_snapshot(&stream))?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the store's writer has stopped; what the
    /// writer's transaction failed with.
    pub fn flush(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.write_done(Work::Flush)
    }

    /// The head of the audit chain as stored: the last event's position
    /// and hash ([`ChainHead::GENESIS`] when the store is empty). Read, not
    /// verified: an auditor keeps it somewhere else, and
    /// [`verify_chain_to`](SqliteStore::verify_chain_to) later proves that
    /// nothing at or before it changed.
    ///
    /// # Errors
    ///
    /// When the store cannot be read; `Error::Corrupt` when the last
    /// event's hash is not 32 bytes.
    pub fn head(&self) -> impl Future<Output = Result<ChainHead>> + Send {
        self.read_now(chain::stored_head)
    }

    /// Recomputes the audit chain from the first event to the last (the
    /// last when the call starts), and proves that no stored event was
    /// edited, deleted, inserted or reordered since it was written, short
    /// of a rewrite of the whole chain from the first changed event on
    /// (which a head kept elsewhere catches: see
    /// [`verify_chain_to`](SqliteStore::verify_chain_to)).
    ///
    /// Runs on a thread of its own with its own read connection, one short
    /// read transaction per page of events (appends go on meanwhile).
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
    /// use es_core::blocking::block_on;
    ///
    /// let store = es_sqlite::SqliteStore::open_temporary()?;
    /// let stream = StreamId::new("ticket-1")?;
    /// let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
    /// block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
    /// let report = block_on(store.verify_chain())?;
    /// assert_eq!(report.events, 1);
    /// assert_eq!(report.head, block_on(store.head())?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ChainError::Broken`] naming the first position that does not
    /// verify and what the chain tells of it ([`Tamper`](crate::Tamper));
    /// [`ChainError::Store`] when the store cannot be read.
    pub fn verify_chain(&self) -> impl Future<Output = Result<ChainReport, ChainError>> + Send {
        self.verify_on_thread(None, None)
    }

    /// Proves that nothing at or before a kept head changed: the chain
    /// recomputed from the first event reaches `kept`'s hash at its
    /// position. Events after it are not read.
    ///
    /// # Errors
    ///
    /// As [`verify_chain`](SqliteStore::verify_chain), and
    /// [`ChainError::HeadMismatch`] when the chain verifies but does not
    /// reach `kept`: the events up to it were rewritten, hashes and all
    /// (or the head is of another store). Events missing from the end,
    /// up to `kept`, are `Broken` with [`Tamper::Missing`](crate::Tamper::Missing).
    pub fn verify_chain_to(
        &self,
        kept: ChainHead,
    ) -> impl Future<Output = Result<ChainReport, ChainError>> + Send {
        self.verify_on_thread(None, Some(kept))
    }

    /// Verifies only the events after a kept head, for an auditor who
    /// verified up to it before: the event at `kept.position` must still
    /// have `kept.hash`, and every event after it, to the last, must chain
    /// from it. The report counts the events after `kept`.
    ///
    /// # Errors
    ///
    /// As [`verify_chain`](SqliteStore::verify_chain), and
    /// [`ChainError::HeadMismatch`] when the event at `kept.position` has
    /// another hash.
    pub fn verify_chain_from(
        &self,
        kept: ChainHead,
    ) -> impl Future<Output = Result<ChainReport, ChainError>> + Send {
        self.verify_on_thread(Some(kept), None)
    }

    /// Runs a verification on a new thread with its own read connection.
    fn verify_on_thread(
        &self,
        from: Option<ChainHead>,
        to: Option<ChainHead>,
    ) -> impl Future<Output = Result<ChainReport, ChainError>> + Send + 'static {
        let store = self.clone();
        async move {
            let (reply, answer) = flume::bounded(1);
            let path = store.inner.path.clone();
            let options = store.inner.options.clone();
            std::thread::Builder::new()
                .name("es-sqlite-verify".into())
                .spawn(move || {
                    let verified = schema::connect(&path, &options, Role::Reader)
                        .map_err(|e| ChainError::Store(crate::error::connect_error(e)))
                        .and_then(|conn| chain::verify(&conn, from, to));
                    drop(reply.send(verified));
                })
                .map_err(|e| ChainError::Store(Error::backend(e)))?;
            let verified = answer
                .recv_async()
                .await
                .map_err(|_| ChainError::Store(Error::Closed));
            if let Ok(Err(ChainError::Store(error))) = &verified {
                store.damage().note(error);
            }
            // The store (and a temporary one's directory) lives until the
            // verification is done.
            drop(store);
            verified?
        }
    }

    pub(crate) fn open_with(
        path: &Path,
        options: &SqliteOptions,
        temporary: Option<tempfile::TempDir>,
    ) -> Result<Self, OpenError> {
        let keys = match &options.personal {
            None => None,
            Some(PersonalData::Keys(keys)) => Some(keys.clone()),
            Some(PersonalData::Beside(kek)) => {
                let mut file = path.as_os_str().to_owned();
                file.push(".keys");
                Some(Keys::new(SqliteKeyStore::open(
                    PathBuf::from(file),
                    kek.clone(),
                )?))
            }
        };
        if !options.read_only {
            schema::prepare_events_file(path, options)?;
        }
        let mut writer_conn = schema::connect(path, options, Role::Writer)?;
        let sync_failed = Arc::new(writer::SyncFailed::default());
        if !options.read_only {
            writer::watch_checkpoints(&mut writer_conn, sync_failed.clone())
                .map_err(|e| OpenError::sqlite(path, e))?;
        }
        schema::verify(&writer_conn, path, options.verify)?;
        let inline = options.inline.clone().with_keys(keys.clone());
        if options.read_only {
            schema::check_current(&writer_conn, path)?;
        } else {
            schema::migrate(&mut writer_conn, path)?;
            inline.prepare(&mut writer_conn, path)?;
        }
        let last = events::last_position(&writer_conn).map_err(|e| OpenError::of_read(path, e))?;
        let notifier = Notifier::new(last);
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };

        let damage = Arc::new(Damage::default());
        let pool = Pool::new(
            path.to_path_buf(),
            options.clone(),
            schema::connect(path, options, Role::Reader)?,
            damage.clone(),
        );
        let (read_tx, read_rx) = flume::unbounded();
        let mut reader_threads = Vec::with_capacity(options.readers);
        for n in 0..options.readers {
            let conn = schema::connect(path, options, Role::Reader)?;
            let jobs = read_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("es-sqlite-reader-{n}"))
                .spawn(move || reader::run(&conn, &jobs))
                .map_err(io)?;
            reader_threads.push(handle);
        }
        let (write_tx, write_rx) = flume::bounded(1024);
        let thread_notifier = notifier.clone();
        let limits = (options.max_batch, options.busy_timeout);
        let counters = Arc::new(writer::WriteCounters::default());
        let thread_counters = (counters.clone(), sync_failed.clone());
        let thread_damage = damage.clone();
        let writer_thread = std::thread::Builder::new()
            .name("es-sqlite-writer".into())
            .spawn(move || {
                writer::run(
                    writer_conn,
                    &write_rx,
                    thread_notifier,
                    (last, limits),
                    inline,
                    thread_counters,
                    thread_damage,
                );
            })
            .map_err(io)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Some(write_tx),
                readers: Some(read_tx),
                pool,
                writer_thread: Mutex::new(Some(writer_thread)),
                reader_threads: Mutex::new(reader_threads),
                notifier,
                limits: options.limits,
                page_size: options.page_size,
                options: options.clone(),
                path: path.to_path_buf(),
                keys,
                counters,
                sync_failed,
                damage,
                _temporary: temporary,
            }),
        })
    }

    /// The first damage this store found in its file since it was opened
    /// (what [`Error::Corrupt`] said), or `None`. Once it is `Some`, every
    /// write of the store and of all its clones (appends, snapshots,
    /// checkpoints, [`flush`](SqliteStore::flush)) fails with
    /// [`Error::WritesRefused`] and writes nothing; reads go on, and report
    /// the damage they meet. For a health check.
    ///
    /// What an operator does then: stop the program (or drop every handle
    /// of the store); run `es verify FILE`, which lists every damaged range
    /// of positions; restore the file from a backup, or salvage it (`es
    /// export --salvage FILE --out salvage.jsonl`, then `es --db NEW import
    /// --renumber salvage.jsonl`) and put the new file in its place; open
    /// the store again. A store opened again on the same damaged file
    /// accepts writes until a read meets the damage again: the refusal
    /// lives in the open store, not in the file.
    pub fn damage_found(&self) -> Option<&str> {
        self.inner.damage.found()
    }

    /// Salvages the log: calls `each` with what each position of `$all`
    /// from `from` holds, in position order, to the end of the log (or
    /// until `each` breaks): an event that reads back whole
    /// ([`Salvaged::Event`]: its checksum holds, its stream's row is
    /// sound) or the damage found there ([`Salvaged::Damaged`]). Unlike
    /// [`read_all`](EventStore::read_all), which stops at the first
    /// damage, a salvage reads past every damaged row and page; `es
    /// verify` and `es export --salvage` are built on it. Open the store
    /// with [`Verify::Off`](crate::Verify::Off) to salvage a file whose
    /// structure is damaged (the default check at open refuses it).
    /// Personal fields stay sealed, as stored.
    ///
    /// Runs on the calling thread, to the end, in one read transaction
    /// (the write-ahead log is not checkpointed past it meanwhile): a
    /// tool's read, not one for a serving program's executor. Damage found
    /// is recorded as any read's is (see
    /// [`damage_found`](SqliteStore::damage_found)).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
    /// use es_core::blocking::block_on;
    /// use es_sqlite::Salvaged;
    ///
    /// let store = es_sqlite::SqliteStore::open_temporary()?;
    /// let stream = StreamId::new("ticket-1")?;
    /// let opened = NewEvent::new("ticket", "ticket-opened", 1, "{}");
    /// block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
    /// let mut events = Vec::new();
    /// let report = block_on(store.salvage(1, |item| {
    ///     if let Salvaged::Event(event) = item {
    ///         events.push(event);
    ///     }
    ///     ControlFlow::Continue(())
    /// }))?;
    /// assert_eq!((events.len(), report.damaged, report.end), (1, 0, 1));
    /// assert!(report.is_complete());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the store cannot be read at all, or neither the `event_types`
    /// summary nor the events table says where the log ends
    /// (`Error::Corrupt`).
    pub fn salvage<F>(
        &self,
        from: u64,
        mut each: F,
    ) -> impl Future<Output = Result<SalvageReport>> + Send + 'static
    where
        F: FnMut(Salvaged) -> ControlFlow<()>,
    {
        let mut first = None;
        let salvaged = self.pool().with(|conn| {
            salvage::run(conn, from, &mut |item| {
                if let (None, Salvaged::Damaged(found)) = (&first, &item) {
                    first = Some(crate::error::corrupt(format!(
                        "position {}: {}",
                        found.position, found.detail
                    )));
                }
                each(item)
            })
        });
        if let Some(found) = &first {
            self.damage().note(found);
        }
        std::future::ready(salvaged)
    }

    /// Where reads and writes record the damage they meet.
    pub(crate) fn damage(&self) -> &Damage {
        &self.inner.damage
    }

    /// What this store's writer has committed since it was opened: commits,
    /// appends and events (see [`WriteStats`](crate::WriteStats)). Appends
    /// of other processes on the same file are theirs, not counted here.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use es_core::{NewEvent, Payload};
    /// use es_sqlite::SqliteStore;
    /// # es_core::blocking::block_on(async {
    /// let store = SqliteStore::open_temporary()?;
    /// let stream = StreamId::new("note-1")?;
    /// let noted = || NewEvent::new("note", "noted", 1, Payload::new("{}"));
    /// store.append(&stream, ExpectedVersion::NoStream, vec![noted(), noted()]).await?;
    /// let stats = store.write_stats();
    /// assert_eq!((stats.commits, stats.appends, stats.events), (1, 1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_stats(&self) -> crate::WriteStats {
        self.inner.counters.stats()
    }

    /// Sends `work` to the writer; the future waits for its answer.
    fn write(&self, work: Work) -> impl Future<Output = Result<Outcome>> + Send + 'static {
        let writer = self.inner.writer.clone();
        async move {
            let writer = writer.ok_or(Error::Closed)?;
            let (reply, answer) = flume::bounded(1);
            let job = Job {
                work,
                reply: Some(reply),
            };
            writer.send_async(job).await.map_err(|_| Error::Closed)?;
            answer.recv_async().await.map_err(|_| Error::Closed)?
        }
    }

    /// A write whose outcome is only success or failure.
    fn write_done(&self, work: Work) -> impl Future<Output = Result<()>> + Send + 'static {
        let done = self.write(work);
        async move { done.await.map(drop) }
    }

    /// Runs `read` on a read-only connection to the events file, in one
    /// read transaction: plain SQL over the tables of the store's inline
    /// read models ([`SqliteOptions::inline`]), which reflect every append
    /// that has returned.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::NotInline`] when `R` (at its version) is not an
    /// inline model of this store; what `read` fails with.
    pub fn query<R: Projection, T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadModelError> {
        if !self
            .inner
            .options
            .inline
            .versions()
            .contains(&(R::NAME, R::VERSION))
        {
            return Err(ReadModelError::NotInline { name: R::NAME });
        }
        let mut result = None;
        self.pool().with(|conn| {
            let outcome = crate::read_models::in_read_transaction(conn, read);
            result = Some(outcome);
            Ok(())
        })?;
        result
            .unwrap_or(Err(rusqlite::Error::InvalidQuery))
            .map_err(crate::read_model::sqlite(R::NAME))
    }

    /// The rows of `sql` over the store's inline read models, each read as
    /// a tuple ([`FromRow`]); see [`query`](SqliteStore::query).
    ///
    /// # Errors
    ///
    /// As [`query`](SqliteStore::query).
    pub fn rows<R: Projection, T: FromRow>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>, ReadModelError> {
        self.query::<R, _>(|db| crate::read_models::rows_of(db, sql, params))
    }

    /// The options the store was opened with.
    pub(crate) fn opened_with(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// The pool of connections for reads on the calling thread.
    /// The keys that seal and open personal fields, if the store has them.
    pub(crate) fn keys(&self) -> Option<&Keys> {
        self.inner.keys.as_ref()
    }

    /// Checkpoints the write-ahead log into the file and truncates it, on a
    /// connection of its own, waiting for readers up to the busy timeout.
    fn truncate_log(&self) -> Result<()> {
        if self.inner.sync_failed.is_set() {
            return Err(Error::SyncFailed);
        }
        let truncated = self.truncate_log_now();
        if let Err(Error::SyncFailed) = truncated {
            self.inner.sync_failed.set();
        }
        truncated
    }

    /// The checkpoint of [`truncate_log`](SqliteStore::truncate_log).
    fn truncate_log_now(&self) -> Result<()> {
        let options = &self.inner.options;
        let conn = schema::connect(&self.inner.path, options, Role::Writer)
            .map_err(crate::error::connect_error)?;
        let deadline = std::time::Instant::now() + options.busy_timeout;
        loop {
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(crate::error::store_error)?;
            if busy == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Busy);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A short read on the calling thread.
    fn read_now<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T>,
    ) -> std::future::Ready<Result<T>> {
        std::future::ready(self.pool().with(read))
    }

    fn paged(&self, source: Source, start: u64) -> EventStream {
        match &self.inner.readers {
            Some(readers) => Box::pin(PagedStream::new(
                self.clone(),
                readers.clone(),
                source,
                start,
                self.inner.page_size,
            )),
            None => stream_of(Some(Error::Closed)),
        }
    }
}

impl EventStore for SqliteStore {
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send {
        let empty = writes.is_empty();
        let mut writes = writes;
        let sealed = match self.keys() {
            Some(keys) => keys.seal_writes(&mut writes).map_err(Error::from),
            None => Ok(()),
        };
        let checked = sealed.and_then(|()| check_append(&self.inner.limits, writes));
        let store = self.clone();
        async move {
            let checked = checked?;
            if empty {
                return Ok(Vec::new());
            }
            match store.write(Work::Append(checked)).await? {
                Outcome::Appended(results) => Ok(results),
                Outcome::Count(_) | Outcome::Done => Ok(Vec::new()),
            }
        }
    }

    fn read_stream(&self, stream: &StreamId, range: ReadRange) -> EventStream {
        let source = Source::Stream {
            id: stream.clone(),
            end: range.end.unwrap_or(u64::MAX),
        };
        self.paged(source, range.first())
    }

    /// Folds on the calling thread, one page (one short read transaction)
    /// at a time, decoding straight from SQLite's row buffers; between pages
    /// the future yields to the executor, so a long stream does not hold a
    /// worker thread.
    fn fold_stream<F>(
        &self,
        stream: &StreamId,
        range: ReadRange,
        mut fold: F,
    ) -> impl Future<Output = Result<()>> + Send
    where
        F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>> + Send,
    {
        let store = self.clone();
        let page = self.inner.page_size;
        let stream = stream.clone();
        let end = range.end.unwrap_or(u64::MAX);
        async move {
            let mut next = range.first();
            while next <= end {
                let (read, stopped) = store.pool().with(|conn| {
                    let mut last = None;
                    let outcome = events::fold_page(
                        conn,
                        store.keys(),
                        &stream,
                        next,
                        end,
                        page,
                        &mut |e: EventRef<'_>| {
                            last = Some(e.version);
                            fold(e)
                        },
                    );
                    if let Some(v) = last {
                        next = v.saturating_add(1);
                    }
                    outcome
                })?;
                if stopped || read < page || next == u64::MAX {
                    break;
                }
                YieldNow(false).await;
            }
            Ok(())
        }
    }

    fn read_all(&self, from: u64) -> EventStream {
        self.paged(Source::All, from.max(1))
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64>> + Send {
        self.read_now(|conn| events::stream_version(conn, stream))
    }

    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send {
        self.read_now(events::last_position)
    }

    fn watch(&self) -> Watch {
        self.inner.notifier.watch()
    }

    /// Looked up by the unique index on event ids, on the calling thread.
    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>>> + Send {
        self.read_now(|conn| events::by_id(conn, self.keys(), event_id))
    }

    /// Filtered in the query, on reader threads, a page at a time: the
    /// events of other transactions are not decoded, but every row is read
    /// (no index on correlation ids; see
    /// [`audit::trail_of`](es_core::audit::trail_of)).
    fn read_correlated(&self, correlation_id: Uuid) -> EventStream {
        self.paged(Source::Correlated(correlation_id), 1)
    }

    /// Read from the `event_types` summary the writer keeps: no event is
    /// read.
    fn event_types(&self) -> impl Future<Output = Result<Vec<StoredEventType>>> + Send {
        self.read_now(events::event_types)
    }
}

impl SnapshotStore for SqliteStore {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        self.read_now(|conn| snapshots::load(conn, stream))
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        self.write_done(Work::SaveSnapshot(snapshot))
    }

    /// Queues the snapshot for the writer's next batch, which it shares
    /// with the appends waiting then: no extra flush for any command. When
    /// the writer's queue is full, the snapshot is dropped (the next load
    /// takes another).
    fn queue_snapshot(&self, snapshot: Snapshot) {
        let Some(writer) = &self.inner.writer else {
            return;
        };
        if self.damage_found().is_some() {
            tracing::debug!("the store refuses writes; a snapshot is dropped");
            return;
        }
        let job = Job {
            work: Work::SaveSnapshot(snapshot),
            reply: None,
        };
        if writer.try_send(job).is_err() {
            tracing::debug!("the writer's queue is full; a snapshot is dropped");
        }
    }

    fn delete_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        self.write_done(Work::DeleteSnapshot(stream.clone()))
    }
}

impl Forget for SqliteStore {
    /// Destroys the subject's keys in the key store, deletes every snapshot
    /// (overwritten with zeros: the writer runs with `secure_delete`),
    /// records the `es.subject-forgotten` event, then checkpoints the
    /// write-ahead log into the file and truncates it, so no old copy of a
    /// deleted page remains in the `-wal` file.
    ///
    /// # Errors
    ///
    /// The key store's, the writer's, or [`Error::Busy`] when another
    /// process's readers kept the log from being truncated past the busy
    /// timeout: the keys are destroyed then, and running `forget` again
    /// finishes the rest.
    fn forget(
        &self,
        subject: &str,
        metadata: es_core::Metadata,
    ) -> impl Future<Output = Result<Forgotten>> + Send {
        let destroyed = self.destroy(subject);
        let store = self.clone();
        let subject = subject.to_owned();
        async move {
            let erased = destroyed.await?;
            let forgotten = es_core::privacy::record_forgotten(
                &store,
                &subject,
                erased.keys_destroyed,
                erased.snapshots_deleted,
                metadata,
            )
            .await?;
            store.truncate_log()?;
            Ok(forgotten)
        }
    }

    /// Destroys the subject's keys in the key store and deletes every
    /// snapshot, as [`forget`](Forget::forget) does, then checkpoints and
    /// truncates the write-ahead log; records no event.
    ///
    /// # Errors
    ///
    /// As [`forget`](Forget::forget).
    fn erase(&self, subject: &str) -> impl Future<Output = Result<Erased>> + Send {
        let destroyed = self.destroy(subject);
        let store = self.clone();
        async move {
            let erased = destroyed.await?;
            store.truncate_log()?;
            Ok(erased)
        }
    }
}

impl SqliteStore {
    /// What forgetting and erasing share: the subject's keys destroyed in
    /// the key store (at once), then every snapshot deleted.
    fn destroy(&self, subject: &str) -> impl Future<Output = Result<Erased>> + Send + 'static {
        let keys_destroyed = self.keys().map_or(Ok(0), |keys| keys.forget(subject));
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

impl CheckpointStore for SqliteStore {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        self.read_now(|conn| checkpoints::load(conn, name))
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

/// Lets the executor run other tasks once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
