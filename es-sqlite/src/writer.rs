//! The writer thread: every write goes through it, and it commits all
//! requests queued at one moment in one transaction (group commit: one flush
//! to disk for many requests).
//!
//! # Answers after commit
//!
//! Every request of a batch is answered only once the batch's transaction
//! has committed, a refused one (a conflict, a duplicate id) too: what an
//! answer reports is then readable at once by any reader, in this process or
//! another. A request fails alone when its own check fails (nothing of it is
//! left in the transaction). When the batch cannot commit (the disk is full,
//! an I/O error, SQLite rolled the transaction back), every request of it,
//! the refused ones included, gets the batch's error, shared: none is told
//! of a conflict with events that were never stored.
//!
//! # Failures of the writer itself
//!
//! A panic while running a batch (a bug: no input should cause one) rolls
//! the transaction back, fails that batch's requests with
//! `Error::Backend(WriterPanic)`, and the writer goes on with the next
//! batch. Should the writer stop all the same, every request queued or sent
//! later is answered with `Error::Closed`: nothing waits forever.
//!
//! # A failed flush to disk
//!
//! When a flush (`fsync`) of the store's file fails, in a commit or in a
//! checkpoint, the writer refuses every later write with
//! `Error::SyncFailed` until the store is reopened: after a failed flush
//! the operating system may have dropped the written pages while still
//! reading them back, and a retried flush may then succeed without them
//! (PostgreSQL's "fsyncgate", 2018). Reopening reads the file as it is on
//! disk. SQLite's automatic checkpoint ignores a failure, so the writer's
//! connection runs that checkpoint itself ([`watch_checkpoints`]).
//!
//! # Damage
//!
//! Once any read or write of the store found damage in the file
//! (`Error::Corrupt`; see `damage.rs`), every request is answered with
//! `Error::WritesRefused` and no transaction is started, until the store
//! is opened again.
//!
//! # The write-ahead log
//!
//! SQLite moves the log into the database file (a passive checkpoint)
//! after a commit leaves it over 1,000 pages (`wal_autocheckpoint`), and
//! starts it again from the beginning once all of it was moved and no
//! reader still reads from it. A reader that holds a snapshot (a long read
//! transaction, of this process or another) keeps every frame after its
//! snapshot in the log, so the log grows meanwhile; SQLite never gives
//! that space back by itself. Two things do:
//!
//! - every writing connection sets `journal_size_limit` to 4 MiB
//!   (`schema::LOG_LIMIT`): when SQLite starts the log again, its commit
//!   cuts the `-wal` back to 4 MiB, so while appends go on the log shrinks
//!   at the first checkpoint after the reader ends;
//! - when the `-wal` is over 4 MiB after a commit and no request comes for
//!   200 ms, the writer runs a `TRUNCATE` checkpoint without waiting for
//!   readers (its busy timeout is 0 for it), and again every 200 ms it
//!   stays idle until one succeeds: an idle store's log goes to 0 bytes
//!   once the reader is gone.
//!
//! Measured in `tests/wal_growth.rs` (RELIABILITY T5).
//!
//! # A full disk
//!
//! After a write fails with `StorageFull`, the write-ahead log may hold
//! frames that could not be moved into the database file. Once a batch
//! commits again, the writer checkpoints and truncates the log, so the space
//! the log took is free again and the store recovers fully.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use es_core::store::backend::{CheckedAppend, Notifier, shared_error};
use es_core::{AppendResult, Error, Result, Snapshot, StreamId, Timestamp};
use rusqlite::{Connection, TransactionBehavior};

use crate::append::{self, Failure, Head};
use crate::chain::{self, ChainHash};
use crate::damage::Damage;
use crate::error::{is_sync_failure, store_error};
use crate::inline::InlineModels;
use crate::schema::LOG_LIMIT;
use crate::{checkpoints, snapshots};

/// How long the writer waits for a request, once the log is over
/// [`LOG_LIMIT`], before it truncates the log.
const IDLE: Duration = Duration::from_millis(200);

/// A request to the writer, and where to send its answer (`None`: nobody
/// waits for it).
pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) reply: Option<flume::Sender<Result<Outcome>>>,
}

/// What a request asks the writer to do.
pub(crate) enum Work {
    Append(CheckedAppend),
    SaveSnapshot(Snapshot),
    DeleteSnapshot(StreamId),
    /// Every snapshot, after a subject was forgotten.
    DeleteAllSnapshots,
    SaveCheckpoint {
        name: String,
        position: u64,
    },
    /// Nothing: answered once every write queued before it is committed.
    Flush,
}

/// What a request did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Appended(Vec<AppendResult>),
    /// How many rows the work changed.
    Count(u64),
    Done,
}

/// The writer thread panicked while running a batch; the batch was rolled
/// back and nothing of it was written.
#[derive(Debug, thiserror::Error)]
#[error("the store's writer failed while writing this batch, and wrote nothing of it: {0}")]
pub struct WriterPanic(String);

/// What this store's writer has committed since the store was opened
/// ([`SqliteStore::write_stats`](crate::SqliteStore::write_stats)): how
/// well group commit shares commits. `appends / commits` is the mean
/// number of appends per commit (1 when writers come one at a time; more
/// when concurrent appends queue behind a commit and share the next).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// Transactions committed with at least one append.
    pub commits: u64,
    /// Append requests committed (each one atomic, of one or more
    /// streams).
    pub appends: u64,
    /// Events committed.
    pub events: u64,
}

/// The writer's tally, read by [`WriteStats`].
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    commits: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
}

impl WriteCounters {
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }
}

/// Set once a flush to disk of the store's file failed: from then on the
/// store refuses every write (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SyncFailed(AtomicBool);

impl SyncFailed {
    pub(crate) fn set(&self) {
        if !self.0.swap(true, Ordering::AcqRel) {
            tracing::error!(
                "a flush to disk failed; the store refuses writes until it is reopened"
            );
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// SQLite's default: an automatic checkpoint once the log holds this many
/// pages.
const AUTOCHECKPOINT_PAGES: c_int = 1000;

/// Replaces the automatic checkpoint of the writer's connection (a passive
/// checkpoint once the log holds 1,000 pages, SQLite's default) with the
/// same checkpoint run here, whose failure is seen: SQLite's own ignores
/// it, and a checkpoint's failed flush must stop writes as a commit's does.
pub(crate) fn watch_checkpoints(
    conn: &mut Connection,
    sync_failed: Arc<SyncFailed>,
) -> rusqlite::Result<()> {
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
        if pages >= AUTOCHECKPOINT_PAGES
            && let Err(error) = wal.checkpoint()
        {
            if is_sync_failure(&error) {
                sync_failed.set();
            } else {
                tracing::debug!(%error, "an automatic checkpoint failed");
            }
        }
        // The commit itself succeeded: never report it as failed.
        Ok(())
    }))
}

/// Runs until every sender is dropped, then checkpoints the log into the
/// database file and closes the connection.
pub(crate) fn run(
    conn: Connection,
    jobs: &flume::Receiver<Job>,
    notifier: Notifier,
    (last_position, (max_batch, busy_timeout)): (u64, (usize, Duration)),
    inline: InlineModels,
    (counters, sync_failed): (Arc<WriteCounters>, Arc<SyncFailed>),
    damage: Arc<Damage>,
) {
    let wal = conn.path().filter(|p| !p.is_empty()).map(|p| {
        let mut wal = std::ffi::OsString::from(p);
        wal.push("-wal");
        PathBuf::from(wal)
    });
    let mut writer = Writer {
        conn,
        wal,
        log_large: false,
        busy_timeout,
        notifier,
        counters,
        sync_failed,
        damage,
        inline,
        head: Head {
            position: last_position,
            hash: ChainHash::GENESIS,
        },
        data_version: None,
        full: false,
    };
    // A panic is caught per batch in `commit`; one outside it (none is
    // known) still leaves nothing waiting: see below.
    let stopped = catch_unwind(AssertUnwindSafe(|| {
        loop {
            let first = if writer.log_large {
                match jobs.recv_timeout(IDLE) {
                    Ok(job) => job,
                    Err(flume::RecvTimeoutError::Timeout) => {
                        writer.truncate_idle_log();
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            fail::fail_point!("es-sqlite::writer::between-batches");
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            batch.extend(jobs.try_iter().take(max_batch.saturating_sub(1)));
            writer.commit(batch);
        }
    }));
    if stopped.is_err() {
        // The batch being formed was dropped while unwinding: its requesters
        // got `Closed` then (their reply senders went with it).
        tracing::error!("the writer stopped; every further write is refused as closed");
        for job in jobs {
            answer(job.reply, Err(Error::Closed));
        }
        return;
    }
    writer.close();
}

struct Writer {
    conn: Connection,
    /// The `-wal` file.
    wal: Option<PathBuf>,
    /// The `-wal` was over [`LOG_LIMIT`] after the last commit: it is
    /// truncated once the writer is idle.
    log_large: bool,
    /// The connection's busy timeout, set again after an idle checkpoint.
    busy_timeout: Duration,
    notifier: Notifier,
    counters: Arc<WriteCounters>,
    /// Set after a failed flush: every write is refused.
    sync_failed: Arc<SyncFailed>,
    /// Damage found by any read or write: once found, every request is
    /// refused.
    damage: Arc<Damage>,
    /// The inline read models, run inside each append's savepoint.
    inline: InlineModels,
    /// The head of the log, current when `data_version` is: the first batch
    /// reads it, and so does every batch after another connection (another
    /// process) committed.
    head: Head,
    /// `PRAGMA data_version` when `head` was last known current. It
    /// changes whenever another connection commits, never for this one's
    /// commits; `None`: unknown, read the head.
    data_version: Option<i64>,
    /// A write failed for lack of space: the log is truncated after the next
    /// commit.
    full: bool,
}

impl Writer {
    /// Runs one batch and answers each of its requests; once a flush
    /// failed or damage was found, refuses them all without starting a
    /// transaction.
    fn commit(&mut self, batch: Vec<Job>) {
        if self.sync_failed.is_set() {
            for job in batch {
                answer(job.reply, Err(Error::SyncFailed));
            }
            return;
        }
        if let Some(refusal) = self.damage.refusal() {
            let error = Arc::new(refusal);
            for job in batch {
                answer(job.reply, Err(shared_error(&error)));
            }
            return;
        }
        let before = self.head;
        let ran = catch_unwind(AssertUnwindSafe(|| self.run_batch(&batch)));
        match &ran {
            Ok(Ok(answers)) => {
                for error in answers.iter().filter_map(|a| a.as_ref().err()) {
                    self.damage.note(error);
                }
            }
            Ok(Err(error)) => self.damage.note(error),
            Err(_) => {}
        }
        let committed = matches!(ran, Ok(Ok(_)));
        if !committed {
            // Rolled back: the head may have been read in the batch, so it
            // is read again in the next.
            self.head = before;
            self.data_version = None;
        }
        let answers = match ran {
            Ok(Ok(answers)) => {
                if self.head.position > before.position {
                    self.notifier.notify(self.head.position);
                    let appends = answers
                        .iter()
                        .filter(|a| matches!(a, Ok(Outcome::Appended(_))))
                        .count();
                    let counters = &self.counters;
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters
                        .appends
                        .fetch_add(appends as u64, Ordering::Relaxed);
                    counters
                        .events
                        .fetch_add(self.head.position - before.position, Ordering::Relaxed);
                }
                answers
            }
            Ok(Err(error)) => {
                self.full |= matches!(error, Error::StorageFull);
                tracing::warn!(%error, requests = batch.len(), "write batch failed; nothing of it was written");
                let error = Arc::new(error);
                batch.iter().map(|_| Err(shared_error(&error))).collect()
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(%message, "the writer panicked in a batch; it was rolled back");
                let error = Arc::new(Error::backend(WriterPanic(message)));
                batch.iter().map(|_| Err(shared_error(&error))).collect()
            }
        };
        if answers
            .iter()
            .any(|answer| matches!(answer, Err(Error::SyncFailed)))
        {
            self.sync_failed.set();
        }
        // After a full disk, the first batch that commits truncates the log
        // before it is answered: the space is free again when it is.
        if self.full && committed {
            self.truncate_log();
        }
        if committed {
            self.log_large = self.log_len() > LOG_LIMIT;
        }
        for (job, answer_of) in batch.into_iter().zip(answers) {
            if let (None, Err(error)) = (&job.reply, &answer_of) {
                tracing::warn!(%error, "a queued snapshot was not written");
            }
            answer(job.reply, answer_of);
        }
    }

    /// One transaction for the whole batch. `Ok` holds each request's own
    /// answer; `Err` is the batch's failure.
    fn run_batch(&mut self, batch: &[Job]) -> Result<Vec<Result<Outcome>>> {
        fail::fail_point!("es-sqlite::writer::batch-start");
        let mut tally = EventTypes::default();
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error)?;
        refresh_head(&tx, &mut self.head, &mut self.data_version)?;
        let start = self.head;
        let now = Timestamp::now();
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            fail::fail_point!("es-sqlite::writer::request");
            let answer = match &job.work {
                Work::Append(checked) => {
                    match append_request(&mut tx, &self.inline, &mut self.head, checked, now) {
                        Ok(results) => {
                            tally.add(checked, &results);
                            Ok(Outcome::Appended(results))
                        }
                        Err(Failure::Request(error)) => Err(error),
                        // Part of the request may be left: nothing of the
                        // batch may commit.
                        Err(Failure::Batch(error)) => return Err(error),
                    }
                }
                Work::SaveSnapshot(snapshot) => {
                    snapshots::save(&tx, snapshot).map(|()| Outcome::Done)
                }
                Work::DeleteSnapshot(stream) => {
                    snapshots::delete(&tx, stream).map(|()| Outcome::Done)
                }
                Work::DeleteAllSnapshots => snapshots::delete_all(&tx).map(Outcome::Count),
                Work::SaveCheckpoint { name, position } => {
                    checkpoints::save(&tx, name, *position).map(|()| Outcome::Done)
                }
                Work::Flush => Ok(Outcome::Done),
            };
            match answer {
                // After some errors (a full disk, an I/O error) SQLite rolls
                // the whole transaction back by itself: nothing of the batch
                // is written then, and the batch fails.
                Err(error) if tx.is_autocommit() => return Err(error),
                Err(error) => {
                    self.full |= matches!(error, Error::StorageFull);
                    answers.push(Err(error));
                }
                Ok(outcome) => answers.push(Ok(outcome)),
            }
        }
        if self.head.position > start.position && !self.inline.is_empty() {
            self.inline.advance(&tx, self.head.position)?;
        }
        tally.save(&tx)?;
        fail::fail_point!("es-sqlite::writer::before-commit", |message| {
            Err(Error::backend(message.unwrap_or_default()))
        });
        tx.commit().map_err(store_error)?;
        // Committed, not yet answered: where a crash loses the answers of
        // a batch whose events are stored.
        fail::fail_point!("es-sqlite::writer::after-commit");
        Ok(answers)
    }

    /// Moves the log into the database file and truncates it, after a full
    /// disk. Readers of other processes may keep it from completing: then it
    /// is tried again after the next commit.
    fn truncate_log(&mut self) {
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            }) {
            Ok(0) => {
                tracing::info!(
                    "the write-ahead log is checkpointed and truncated after a full disk"
                );
                self.full = false;
            }
            Ok(_) => tracing::debug!("the log checkpoint after a full disk waits for readers"),
            Err(error) if is_sync_failure(&error) => self.sync_failed.set(),
            Err(error) => tracing::debug!(%error, "the log checkpoint after a full disk failed"),
        }
    }

    /// The size of the `-wal` file (0 when there is none).
    fn log_len(&self) -> u64 {
        self.wal
            .as_ref()
            .and_then(|wal| std::fs::metadata(wal).ok())
            .map_or(0, |m| m.len())
    }

    /// While idle with a large log: a `TRUNCATE` checkpoint that waits for
    /// no reader (busy timeout 0 for it). When a reader still holds the
    /// log, it moves what it can, and is tried again after the next idle
    /// wait.
    fn truncate_idle_log(&mut self) {
        if let Err(error) = self.conn.busy_timeout(Duration::ZERO) {
            tracing::debug!(%error, "cannot set the busy timeout for a checkpoint");
            return;
        }
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        if let Err(error) = self.conn.busy_timeout(self.busy_timeout) {
            tracing::warn!(%error, "cannot set the busy timeout again after a checkpoint");
        }
        match done {
            Ok(0) => {
                tracing::debug!("the write-ahead log is checkpointed and truncated while idle");
                self.log_large = false;
            }
            Ok(_) => tracing::debug!("a reader holds the write-ahead log; truncating it later"),
            Err(error) if is_sync_failure(&error) => {
                // Writes are refused from now on: nothing to truncate for.
                self.sync_failed.set();
                self.log_large = false;
            }
            Err(error) => tracing::debug!(%error, "the idle checkpoint failed"),
        }
        if self.log_len() <= LOG_LIMIT {
            self.log_large = false;
        }
    }

    /// On a clean close: moves the log into the database file. The
    /// connection is the store's last (the readers are closed first), so
    /// SQLite removes the `-wal` file as it closes, unless another process
    /// still has the database open.
    /// A read-only store's connection writes nothing, not even this.
    fn close(self) {
        let read_only = self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
        if !read_only
            && let Err(error) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "cannot checkpoint the log on close");
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "cannot close the writer's connection");
        }
    }
}

/// Makes `head` current, inside the batch's transaction (which holds the
/// write lock): read again only when another connection committed since
/// it was last known current (`data_version` changed).
fn refresh_head(
    tx: &rusqlite::Transaction<'_>,
    head: &mut Head,
    data_version: &mut Option<i64>,
) -> Result<()> {
    let version: i64 = tx
        .prepare_cached("PRAGMA data_version")
        .and_then(|mut q| q.query_row([], |r| r.get(0)))
        .map_err(store_error)?;
    if *data_version != Some(version) {
        let stored = chain::stored_head(tx)?;
        *head = Head {
            position: stored.position,
            hash: stored.hash,
        };
        *data_version = Some(version);
    }
    Ok(())
}

/// One append request; with inline read models, the request and their
/// handlers in one savepoint, undone together when a handler refuses.
fn append_request(
    tx: &mut rusqlite::Transaction<'_>,
    inline: &InlineModels,
    head: &mut Head,
    checked: &CheckedAppend,
    now: Timestamp,
) -> std::result::Result<Vec<AppendResult>, Failure> {
    if inline.is_empty() {
        return append::append(tx, checked, now, head);
    }
    let batch = |e| Failure::Batch(store_error(e));
    tx.execute_batch("SAVEPOINT es_inline").map_err(batch)?;
    let before = *head;
    let outcome = append::append(tx, checked, now, head).and_then(|results| {
        inline
            .take(tx, before.position, head.position)
            .map(|()| results)
            .map_err(Failure::Request)
    });
    if tx.is_autocommit() {
        // SQLite rolled the whole transaction back (a full disk, an I/O
        // error): the savepoint went with it, and the batch fails.
        *head = before;
        return outcome;
    }
    match outcome {
        Ok(results) => {
            tx.execute_batch("RELEASE es_inline").map_err(batch)?;
            Ok(results)
        }
        Err(Failure::Request(error)) => {
            *head = before;
            tx.execute_batch("ROLLBACK TO es_inline; RELEASE es_inline")
                .map_err(batch)?;
            Err(Failure::Request(error))
        }
        Err(failure @ Failure::Batch(_)) => Err(failure),
    }
}

/// How many events of each (aggregate type, name, schema version) a batch
/// wrote, for the `event_types` summary (schema 4): one row written per
/// type, in the batch's transaction.
#[derive(Default)]
struct EventTypes(std::collections::BTreeMap<(String, String, u32), i64>);

impl EventTypes {
    /// Counts what a request wrote: the writes its results say were written
    /// (not repeats, not empty).
    fn add(&mut self, checked: &CheckedAppend, results: &[AppendResult]) {
        for (write, result) in checked.writes.iter().zip(results) {
            if result.repeated || result.first_position.is_none() {
                continue;
            }
            for event in &write.events {
                let key = (
                    event.aggregate_type.to_string(),
                    event.name.to_string(),
                    event.schema_version,
                );
                *self.0.entry(key).or_default() += 1;
            }
        }
    }

    fn save(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO event_types (aggregate_type, name, schema_version, count) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (aggregate_type, name, schema_version) \
                 DO UPDATE SET count = count + excluded.count",
            )
            .map_err(store_error)?;
        for ((aggregate, name, version), count) in &self.0 {
            upsert
                .execute(rusqlite::params![aggregate, name, version, count])
                .map_err(store_error)?;
        }
        Ok(())
    }
}

/// Sends an answer; a requester that stopped waiting (a dropped future) is
/// not an error: its request is complete either way.
fn answer(reply: Option<flume::Sender<Result<Outcome>>>, outcome: Result<Outcome>) {
    if let Some(reply) = reply {
        drop(reply.send(outcome));
    }
}
