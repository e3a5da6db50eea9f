//! [`EventStream`](es_core::EventStream)s over the reader threads, one page
//! at a time, with the next page read while the current one is consumed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use es_core::{Error, RecordedEvent, Result, StreamId};
use futures_core::Stream;

use crate::reader::ReadJob;

/// What is being read.
pub(crate) enum Source {
    Stream { id: StreamId, end: u64 },
    All,
}

type PageFuture = flume::r#async::RecvFut<'static, Result<Vec<RecordedEvent>>>;

pub(crate) struct PagedStream {
    readers: flume::Sender<ReadJob>,
    source: Source,
    /// The first version (or position) not yet requested.
    next: u64,
    page_size: usize,
    buffer: std::vec::IntoIter<RecordedEvent>,
    pending: Option<PageFuture>,
    /// No page after the pending one (or the buffer) is needed.
    exhausted: bool,
}

impl PagedStream {
    pub(crate) fn new(
        readers: flume::Sender<ReadJob>,
        source: Source,
        start: u64,
        page_size: usize,
    ) -> Self {
        let exhausted = matches!(&source, Source::Stream { end, .. } if start > *end);
        PagedStream {
            readers,
            source,
            next: start,
            page_size,
            buffer: Vec::new().into_iter(),
            pending: None,
            exhausted,
        }
    }

    fn request(&mut self) -> Result<PageFuture> {
        let (reply, answer) = flume::bounded(1);
        let job = match &self.source {
            Source::Stream { id, end } => ReadJob::StreamPage {
                stream: id.clone(),
                from: self.next,
                to: *end,
                limit: self.page_size,
                reply,
            },
            Source::All => ReadJob::AllPage {
                from: self.next,
                limit: self.page_size,
                reply,
            },
        };
        self.readers.send(job).map_err(|_| Error::Closed)?;
        Ok(answer.into_recv_async())
    }

    /// Takes a page in, and asks for the next one at once when it was full.
    fn accept(&mut self, page: Vec<RecordedEvent>) {
        let full = page.len() >= self.page_size;
        if let Some(last) = page.last() {
            self.next = match self.source {
                Source::Stream { .. } => last.version + 1,
                Source::All => last.position + 1,
            };
        }
        if let Source::Stream { end, .. } = self.source
            && self.next > end
        {
            self.exhausted = true;
        }
        if !full {
            self.exhausted = true;
        }
        self.buffer = page.into_iter();
        if !self.exhausted {
            // A failed request is retried, and reported, once the buffer
            // is consumed: no event of this page is lost to it.
            self.pending = self.request().ok();
        }
    }
}

impl Stream for PagedStream {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.buffer.next() {
                return Poll::Ready(Some(Ok(event)));
            }
            let pending = match this.pending.as_mut() {
                Some(pending) => pending,
                None if this.exhausted => return Poll::Ready(None),
                None => match this.request() {
                    Ok(future) => this.pending.insert(future),
                    Err(e) => {
                        this.exhausted = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            };
            let answer = match Pin::new(pending).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(answer) => answer,
            };
            this.pending = None;
            match answer {
                Ok(Ok(page)) => this.accept(page),
                Ok(Err(e)) => {
                    this.exhausted = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Err(_) => {
                    this.exhausted = true;
                    return Poll::Ready(Some(Err(Error::Closed)));
                }
            }
        }
    }
}
