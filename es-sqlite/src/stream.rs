//! [`EventStream`](es_core::EventStream)s in pages: the first, small page
//! is read on the calling thread (most streams fit in it); each further page
//! on a reader thread, asked for as soon as the previous one arrives, so
//! reading and decoding overlap. Every page is its own short read
//! transaction.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use es_core::{Error, RecordedEvent, Result, StreamId, Uuid};
use futures_core::Stream;

use crate::events::{Page, PageRead};
use crate::reader::ReadJob;
use crate::store::SqliteStore;

/// Events read on the calling thread before handing over to a reader thread.
const FIRST_PAGE: usize = 64;

/// What is being read.
pub(crate) enum Source {
    Stream {
        id: StreamId,
        end: u64,
    },
    All,
    /// The events of one business transaction: positions with gaps, and
    /// pages that may scan the whole log, so every page is read on a
    /// reader thread.
    Correlated(Uuid),
}

type PageFuture = flume::r#async::RecvFut<'static, PageRead>;

pub(crate) struct PagedStream {
    readers: flume::Sender<ReadJob>,
    source: Source,
    /// The first version (or position) not yet read.
    next: u64,
    page_size: usize,
    started: bool,
    buffer: std::vec::IntoIter<RecordedEvent>,
    pending: Option<PageFuture>,
    /// Nothing after the buffer (and the pending page) is left to read.
    exhausted: bool,
    /// The error that stopped the last page, reported after its events.
    failure: Option<Error>,
    /// Keeps the store open while the stream is read. Last, so it is
    /// dropped last: closing the store waits for the reader threads, which
    /// stop only once no sender of their queue (`readers`) is left.
    store: SqliteStore,
}

impl PagedStream {
    pub(crate) fn new(
        store: SqliteStore,
        readers: flume::Sender<ReadJob>,
        source: Source,
        start: u64,
        page_size: usize,
    ) -> Self {
        let exhausted = matches!(&source, Source::Stream { end, .. } if start > *end);
        PagedStream {
            store,
            readers,
            source,
            next: start,
            page_size,
            started: false,
            buffer: Vec::new().into_iter(),
            pending: None,
            exhausted,
            failure: None,
        }
    }

    fn page(&self) -> Page {
        match &self.source {
            Source::Stream { id, end } => Page::Stream {
                stream: id.clone(),
                from: self.next,
                to: *end,
            },
            Source::All => Page::All { from: self.next },
            Source::Correlated(correlation) => Page::Correlated {
                correlation: *correlation,
                from: self.next,
            },
        }
    }

    fn request(&self) -> Result<PageFuture> {
        let (reply, answer) = flume::bounded(1);
        let job = ReadJob {
            page: self.page(),
            limit: self.page_size,
            reply,
        };
        self.readers.send(job).map_err(|_| Error::Closed)?;
        Ok(answer.into_recv_async())
    }

    /// Takes a page of up to `limit` events in, and asks for the next one at
    /// once when it was full.
    fn accept(&mut self, read: PageRead, limit: usize) {
        let PageRead {
            events: page,
            error,
        } = read;
        let mut page = page;
        if let Some(error) = error {
            // Damage met on the caller's thread or on a reader thread: the
            // store refuses writes from now on.
            self.store.damage().note(&error);
            self.exhausted = true;
            self.failure = Some(error);
        }
        if let Some(gap) = self.gap(&page) {
            // Versions of a stream, and positions of `$all`, have no gaps in
            // this store: a gap is a damaged index or table (a flipped byte
            // that SQLite reads without error), reported after the events
            // before it.
            let (at, detail) = gap;
            page.truncate(at);
            self.exhausted = true;
            let error = crate::error::corrupt(detail);
            self.store.damage().note(&error);
            self.failure = Some(error);
        }
        if let Some(last) = page.last() {
            self.next = match self.source {
                Source::Stream { .. } => last.version + 1,
                Source::All | Source::Correlated(_) => last.position + 1,
            };
        }
        let past_end = matches!(self.source, Source::Stream { end, .. } if self.next > end);
        if page.len() < limit || past_end {
            self.exhausted = true;
        }
        self.buffer = page.into_iter();
        if !self.exhausted {
            // A failed request is retried, and reported, once the buffer is
            // consumed: no event of this page is lost to it.
            self.pending = self.request().ok();
        }
    }

    /// The first event of `page` that does not follow the one before it
    /// (or the start), and what is missing.
    fn gap(&self, page: &[RecordedEvent]) -> Option<(usize, String)> {
        // A transaction's events are spread over the log: gaps are expected.
        if matches!(self.source, Source::Correlated(_)) {
            return None;
        }
        let key = |e: &RecordedEvent| match self.source {
            Source::Stream { .. } => e.version,
            Source::All | Source::Correlated(_) => e.position,
        };
        let mut expected = self.next;
        for (at, event) in page.iter().enumerate() {
            if key(event) != expected {
                let detail = match &self.source {
                    Source::Stream { id, .. } => format!(
                        "stream `{id}` jumps to version {} where version {expected} should be",
                        event.version
                    ),
                    Source::All | Source::Correlated(_) => format!(
                        "the log jumps to position {} where position {expected} should be",
                        event.position
                    ),
                };
                return Some((at, detail));
            }
            expected = expected.saturating_add(1);
        }
        None
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<RecordedEvent>>> {
        self.exhausted = true;
        self.pending = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for PagedStream {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(mut event) = this.buffer.next() {
                if let Some(Err(e)) = this.store.keys().map(|k| k.open_event(&mut event)) {
                    return Poll::Ready(Some(Err(e.into())));
                }
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(error) = this.failure.take() {
                return this.fail(error);
            }
            if !this.started {
                this.started = true;
                if this.exhausted {
                    return Poll::Ready(None);
                }
                if matches!(this.source, Source::Correlated(_)) {
                    continue;
                }
                let page = this.page();
                match this
                    .store
                    .pool()
                    .with(|conn| Ok(page.read(conn, FIRST_PAGE)))
                {
                    Ok(events) => this.accept(events, FIRST_PAGE),
                    Err(e) => return this.fail(e),
                }
                continue;
            }
            let pending = match this.pending.as_mut() {
                Some(pending) => pending,
                None if this.exhausted => return Poll::Ready(None),
                None => match this.request() {
                    Ok(future) => this.pending.insert(future),
                    Err(e) => return this.fail(e),
                },
            };
            let answer = match Pin::new(pending).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => answer,
            };
            this.pending = None;
            match answer {
                Ok(read) => {
                    let limit = this.page_size;
                    this.accept(read, limit);
                }
                Err(_) => return this.fail(Error::Closed),
            }
        }
    }
}
