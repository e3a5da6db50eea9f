//! Which thread runs SQLite.
//!
//! One policy for every read and write of the store:
//!
//! - **Writes** (appends, snapshots, checkpoints) run on the one writer
//!   thread, which commits the requests queued at one moment together
//!   (`writer.rs`). The caller's future only waits for the answer.
//! - **Short reads** run on the caller's thread, on a pooled read
//!   connection (`pool.rs`): a stream's version, the last position, a
//!   snapshot, a checkpoint, the first page of a stream (64 events), and
//!   folds. Handing them to another thread would cost more than running
//!   them. A fold reads one page (512 events by default, one short read
//!   transaction) at a time and yields to the executor between pages, so it
//!   holds the caller's thread for at most one page: about 0.4 ms for 512
//!   Ticket events on this project's CI machine (`load_stream` folds
//!   1.2 million events per second).
//! - **Long reads** (the pages of `read_stream` and `read_all` after the
//!   first) run on reader threads, each with its own connection: each page
//!   is one short read transaction, asked for as soon as the previous one
//!   arrives, so reading and decoding overlap and a slow consumer never
//!   holds a snapshot of the log open.

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
