//! Reader threads: each owns a connection and reads a page of a stream or
//! of `$all` per request, one short read transaction each. Which thread runs
//! what, for every call of the store, is in the crate docs ("Threads and
//! group commit").

use rusqlite::Connection;

use crate::events::{Page, PageRead};

/// A page to read on a reader thread, and where to send it.
pub(crate) struct ReadJob {
    pub(crate) page: Page,
    pub(crate) limit: usize,
    pub(crate) reply: flume::Sender<PageRead>,
}

/// Runs until every sender is dropped. A page nobody waits for any more is
/// dropped.
pub(crate) fn run(conn: &Connection, jobs: &flume::Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        drop(job.reply.send(job.page.read(conn, job.limit)));
    }
}
