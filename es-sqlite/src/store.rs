//! [`SqliteStore`]: the handle applications hold.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use es_core::store::watch::{Notifier, Watch};
use es_core::{
    AppendResult, CheckpointStore, Error, EventRef, EventStore, EventStream, Limits, ReadRange,
    Result, Snapshot, SnapshotStore, StreamId, StreamWrite,
};

use crate::error::OpenError;
use crate::options::SqliteOptions;
use crate::pool::Pool;
use crate::reader::{self, ReadJob};
use crate::schema::{self, Role};
use crate::stream::{PagedStream, Source};
use crate::writer::{self, WriteJob};

/// The embedded SQLite event store: one file, no server.
///
/// Cloning is cheap; clones share the threads and connections. The store
/// owns one writer thread (group commit) and a few reader threads; its
/// futures complete on any executor, or on none through
/// [`es_core::blocking`].
///
/// ```
/// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
/// use es_sqlite::SqliteStore;
///
/// let store = SqliteStore::open_temporary()?;
/// let stream = StreamId::new("ticket-1")?;
/// let opened = NewEvent::new("ticket", "ticket-opened", 1, br#"{"title":"printer"}"#.to_vec());
/// let done = es_core::blocking::block_on(store.append(&stream, ExpectedVersion::NoStream, vec![opened]))?;
/// assert_eq!(done.version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Option<flume::Sender<WriteJob>>,
    readers: Option<flume::Sender<ReadJob>>,
    pool: Arc<Pool>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    notifier: Notifier,
    limits: Limits,
    page_size: usize,
    path: PathBuf,
    /// Keeps a temporary database's directory until the store is dropped.
    _temporary: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queues ends the threads; wait for the writer so that
        // every accepted request is committed before the store is gone.
        self.writer = None;
        self.readers = None;
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
    /// (readable by its owner only) or migrating its schema as needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        SqliteOptions::default().open(path)
    }

    /// Opens a new database in a temporary directory, deleted with the store.
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

    pub(crate) fn open_with(
        path: &Path,
        options: &SqliteOptions,
        temporary: Option<tempfile::TempDir>,
    ) -> Result<Self, OpenError> {
        let mut writer_conn = schema::connect(path, options, Role::Writer)?;
        schema::migrate(&mut writer_conn, path)?;
        let last: i64 = writer_conn
            .query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(|e| OpenError::sqlite(path, e))?;
        let notifier = Notifier::new(u64::try_from(last).unwrap_or(0));

        let pool_conn = schema::connect(path, options, Role::Reader)?;
        let (read_tx, read_rx) = flume::unbounded();
        for n in 0..options.readers {
            let conn = schema::connect(path, options, Role::Reader)?;
            let jobs = read_rx.clone();
            std::thread::Builder::new()
                .name(format!("es-sqlite-reader-{n}"))
                .spawn(move || reader::run(&conn, &jobs))
                .map_err(|source| OpenError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let (write_tx, write_rx) = flume::bounded(1024);
        let thread_notifier = notifier.clone();
        let max_batch = options.max_batch;
        let writer_thread = std::thread::Builder::new()
            .name("es-sqlite-writer".into())
            .spawn(move || writer::run(writer_conn, &write_rx, thread_notifier, max_batch))
            .map_err(|source| OpenError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Some(write_tx),
                readers: Some(read_tx),
                pool: Arc::new(Pool::new(path.to_path_buf(), options.clone(), pool_conn)),
                writer_thread: Mutex::new(Some(writer_thread)),
                notifier,
                limits: options.limits,
                page_size: options.page_size,
                path: path.to_path_buf(),
                _temporary: temporary,
            }),
        })
    }

    fn write<T>(
        &self,
        job: impl FnOnce(flume::Sender<Result<T>>) -> WriteJob + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
    {
        let writer = self.inner.writer.clone();
        async move {
            let writer = writer.ok_or(Error::Closed)?;
            let (reply, answer) = flume::bounded(1);
            writer
                .send_async(job(reply))
                .await
                .map_err(|_| Error::Closed)?;
            answer.recv_async().await.map_err(|_| Error::Closed)?
        }
    }

    /// A short read on the calling thread.
    fn read_now<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T>,
    ) -> std::future::Ready<Result<T>> {
        std::future::ready(self.inner.pool.with(read))
    }

    fn paged(&self, source: Source, start: u64) -> EventStream {
        match &self.inner.readers {
            Some(readers) => Box::pin(PagedStream::new(
                readers.clone(),
                self.inner.pool.clone(),
                source,
                start,
                self.inner.page_size,
            )),
            None => es_core::store::stream_of(Some(Error::Closed)),
        }
    }
}

impl EventStore for SqliteStore {
    fn append_to_streams(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send {
        let checked = self.inner.limits.check(&writes);
        let empty = writes.is_empty();
        let append = self.write(move |reply| WriteJob::Append { writes, reply });
        async move {
            checked?;
            if empty {
                return Ok(Vec::new());
            }
            append.await
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
        let pool = self.inner.pool.clone();
        let page = self.inner.page_size;
        let stream = stream.clone();
        let end = range.end.unwrap_or(u64::MAX);
        async move {
            let mut next = range.first();
            while next <= end {
                let (read, stopped) = pool.with(|conn| {
                    let mut last = None;
                    let outcome = reader::fold_page(
                        conn,
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
                        next = v + 1;
                    }
                    outcome
                })?;
                if stopped || read < page {
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
        self.read_now(|conn| reader::stream_version(conn, stream))
    }

    fn last_position(&self) -> impl Future<Output = Result<u64>> + Send {
        self.read_now(reader::last_position)
    }

    fn watch(&self) -> Watch {
        self.inner.notifier.watch()
    }
}

impl SnapshotStore for SqliteStore {
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        self.read_now(|conn| reader::snapshot(conn, stream))
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        self.write(move |reply| WriteJob::Snapshot { snapshot, reply })
    }
}

impl CheckpointStore for SqliteStore {
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        self.read_now(|conn| reader::checkpoint(conn, name))
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> impl Future<Output = Result<()>> + Send {
        let name = name.to_owned();
        self.write(move |reply| WriteJob::Checkpoint {
            name,
            position,
            reply,
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
