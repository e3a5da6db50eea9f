//! Reads: the reader threads (the store's pool of connections), the queries,
//! and [`EventStream`](es_core::EventStream)s read a page at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use es_core::privacy::Keys;
use es_core::{Error, Metadata, Payload, RecordedEvent, Result, StreamId, Timestamp, Uuid};
use futures_core::Stream;
use postgres::Row;

use crate::conn::{Conn, Connector};
use crate::error::{corrupt, stored_stream, unsigned};

/// Work for a reader thread, run with its connection.
pub(crate) type ReadJob = Box<dyn FnOnce(&mut Conn) + Send>;

/// Starts `count` reader threads serving `jobs` until every sender is gone.
pub(crate) fn spawn_readers(
    count: usize,
    connector: &Connector,
    jobs: &flume::Receiver<ReadJob>,
) -> std::io::Result<()> {
    for i in 0..count {
        let mut conn = Conn::new(connector.clone());
        let jobs = jobs.clone();
        std::thread::Builder::new()
            .name(format!("es-postgres-reader-{i}"))
            .spawn(move || {
                while let Ok(job) = jobs.recv() {
                    job(&mut conn);
                }
            })?;
    }
    Ok(())
}

/// Runs `read` on a reader thread; its answer, once there.
pub(crate) fn on_reader<T, F>(
    readers: &flume::Sender<ReadJob>,
    read: F,
) -> impl Future<Output = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&mut Conn) -> Result<T> + Send + 'static,
{
    let (reply, answer) = flume::bounded(1);
    let sent = readers
        .send(Box::new(move |conn: &mut Conn| {
            // The caller may have stopped waiting.
            let _ = reply.send(read(conn));
        }))
        .map_err(|_| Error::Closed);
    async move {
        sent?;
        answer.recv_async().await.map_err(|_| Error::Closed)?
    }
}

/// The columns of an event, in the order [`event`] reads them.
macro_rules! select_events {
    ($($rest:literal)*) => {
        concat!(
            "SELECT e.position, e.stream_id, s.aggregate_type, e.version, e.event_id, e.recorded_at, \
             e.occurred_at, e.name, e.schema_version, e.payload, e.metadata \
             FROM es_events e JOIN es_streams s ON s.stream_id = e.stream_id ",
            $($rest),*
        )
    };
}

const STREAM_PAGE: &str = select_events!(
    "WHERE e.stream_id = $1 AND e.version >= $2 AND e.version <= $3 ORDER BY e.version LIMIT $4"
);
const ALL_PAGE: &str = select_events!("WHERE e.position >= $1 ORDER BY e.position LIMIT $2");
const CORRELATED_PAGE: &str = concat!(
    "SELECT * FROM (",
    select_events!("WHERE e.correlation_id = $1 AND e.position >= $2"),
    " UNION ALL ",
    select_events!(
        "WHERE e.event_id = $1 AND e.position >= $2 AND e.correlation_id IS DISTINCT FROM $1"
    ),
    ") t ORDER BY position LIMIT $3"
);
pub(crate) const FIND_EVENT: &str = select_events!("WHERE e.event_id = $1");

/// What a stream reads.
#[derive(Clone)]
pub(crate) enum Source {
    /// A stream's versions up to `end`.
    Stream { id: StreamId, end: u64 },
    /// `$all`.
    All,
    /// The events of one business transaction.
    Correlated(Uuid),
}

/// A number of ours as PostgreSQL's `bigint`, saturated: a bound above
/// every stored value reads the same as `i64::MAX`.
pub(crate) fn bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The event of a row of [`select_events!`].
pub(crate) fn event(row: &Row, aggregate: &mut Option<Arc<str>>) -> Result<RecordedEvent> {
    let get_error = |e: postgres::Error| corrupt(format!("an event row does not read: {e}"));
    let position: i64 = row.try_get(0).map_err(get_error)?;
    let stream: String = row.try_get(1).map_err(get_error)?;
    let aggregate_type: &str = row.try_get(2).map_err(get_error)?;
    let version: i64 = row.try_get(3).map_err(get_error)?;
    let recorded_at = Timestamp::from_unix_micros(row.try_get(5).map_err(get_error)?);
    let occurred_at: Option<i64> = row.try_get(6).map_err(get_error)?;
    let schema_version: i32 = row.try_get(8).map_err(get_error)?;
    let metadata: Option<&str> = row.try_get(10).map_err(get_error)?;
    // Consecutive events mostly share one aggregate type: one allocation.
    let aggregate_type = match aggregate {
        Some(known) if **known == *aggregate_type => known.clone(),
        _ => aggregate.insert(Arc::from(aggregate_type)).clone(),
    };
    Ok(RecordedEvent {
        stream_id: stored_stream(stream)?,
        aggregate_type,
        version: unsigned(version, "version")?,
        position: unsigned(position, "position")?,
        event_id: row.try_get(4).map_err(get_error)?,
        recorded_at,
        occurred_at: occurred_at.map_or(recorded_at, Timestamp::from_unix_micros),
        name: row.try_get(7).map_err(get_error)?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            corrupt(format!(
                "a stored schema version is negative: {schema_version}"
            ))
        })?,
        metadata: match metadata {
            None => Metadata::default(),
            Some(json) => Metadata::from_json(json)
                .map_err(|e| corrupt(format!("stored metadata does not parse: {e}")))?,
        },
        event: Payload::new(row.try_get::<_, String>(9).map_err(get_error)?),
    })
}

/// Opens the personal fields of `event` when the store has keys.
pub(crate) fn opened(keys: Option<&Keys>, mut event: RecordedEvent) -> Result<RecordedEvent> {
    if let Some(keys) = keys {
        keys.open_event(&mut event)?;
    }
    Ok(event)
}

/// Reads one page of `source` from `from` (a version or a position).
fn page(
    conn: &mut Conn,
    keys: Option<&Keys>,
    source: &Source,
    from: u64,
    limit: i64,
) -> Result<Vec<RecordedEvent>> {
    let rows = match source {
        Source::Stream { id, end } => conn.query(
            STREAM_PAGE,
            &[&id.as_str(), &bound(from), &bound(*end), &limit],
        )?,
        Source::All => conn.query(ALL_PAGE, &[&bound(from), &limit])?,
        Source::Correlated(id) => conn.query(CORRELATED_PAGE, &[id, &bound(from), &limit])?,
    };
    let mut aggregate = None;
    rows.iter()
        .map(|row| opened(keys, event(row, &mut aggregate)?))
        .collect()
}

type PageFuture = flume::r#async::RecvFut<'static, Result<Vec<RecordedEvent>>>;

/// A stream of events read a page at a time on the reader threads, the
/// next page asked for as soon as one arrives, so reading and the caller's
/// work overlap. Each page is one statement: one consistent snapshot.
pub(crate) struct Paged {
    readers: flume::Sender<ReadJob>,
    keys: Option<Keys>,
    source: Source,
    /// The first version (or position) not yet asked for.
    next: u64,
    page_size: i64,
    buffer: std::vec::IntoIter<RecordedEvent>,
    pending: Option<PageFuture>,
    exhausted: bool,
    failure: Option<Error>,
}

impl Paged {
    pub(crate) fn new(
        readers: flume::Sender<ReadJob>,
        keys: Option<Keys>,
        source: Source,
        start: u64,
        page_size: i64,
    ) -> Self {
        let start = start.max(1);
        let exhausted = matches!(&source, Source::Stream { end, .. } if start > *end);
        Paged {
            readers,
            keys,
            source,
            next: start,
            page_size,
            buffer: Vec::new().into_iter(),
            pending: None,
            exhausted,
            failure: None,
        }
    }

    fn request(&self) -> Option<PageFuture> {
        let (reply, answer) = flume::bounded(1);
        let (keys, source, from, limit) = (
            self.keys.clone(),
            self.source.clone(),
            self.next,
            self.page_size,
        );
        let job: ReadJob = Box::new(move |conn: &mut Conn| {
            let _ = reply.send(page(conn, keys.as_ref(), &source, from, limit));
        });
        self.readers.send(job).ok()?;
        Some(answer.into_recv_async())
    }

    fn accept(&mut self, mut events: Vec<RecordedEvent>) {
        let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.page_size;
        // Versions of a stream and positions of `$all` have no gaps in
        // this store; a gap means rows were deleted behind its back.
        let key = |e: &RecordedEvent| match self.source {
            Source::Stream { .. } => Some(e.version),
            Source::All => Some(e.position),
            Source::Correlated(_) => None,
        };
        let mut expected = self.next;
        for (at, event) in events.iter().enumerate() {
            let Some(k) = key(event) else { continue };
            if k != expected {
                let what = if matches!(self.source, Source::All) {
                    "position"
                } else {
                    "version"
                };
                self.failure = Some(corrupt(format!(
                    "expected {what} {expected}, found {k}: rows are missing"
                )));
                events.truncate(at);
                self.exhausted = true;
                break;
            }
            expected = k + 1;
        }
        if let Some(last) = events.last() {
            self.next = match self.source {
                Source::Stream { .. } => last.version + 1,
                Source::All | Source::Correlated(_) => last.position + 1,
            };
        }
        if !full || matches!(self.source, Source::Stream { end, .. } if self.next > end) {
            self.exhausted = true;
        }
        self.buffer = events.into_iter();
        if !self.exhausted {
            self.pending = self.request();
        }
    }
}

impl Stream for Paged {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.buffer.next() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(failure) = self.failure.take() {
                self.exhausted = true;
                return Poll::Ready(Some(Err(failure)));
            }
            if self.exhausted {
                return Poll::Ready(None);
            }
            if self.pending.is_none() {
                self.pending = self.request();
                if self.pending.is_none() {
                    self.exhausted = true;
                    return Poll::Ready(Some(Err(Error::Closed)));
                }
            }
            let Some(pending) = self.pending.as_mut() else {
                continue;
            };
            let answer = match Pin::new(pending).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => answer,
            };
            self.pending = None;
            match answer {
                Ok(Ok(events)) => self.accept(events),
                Ok(Err(e)) => {
                    self.exhausted = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Err(_) => {
                    self.exhausted = true;
                    return Poll::Ready(Some(Err(Error::Closed)));
                }
            }
        }
    }
}
