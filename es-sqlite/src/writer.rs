//! The writer thread: every write goes through it, and it commits all
//! requests queued at one moment in one transaction (group commit: one flush
//! to disk for many appends). Each request runs in its own savepoint, so a
//! conflict or an error in one never fails another.

use es_core::store::watch::Notifier;
use es_core::store::{AppendDecision, StoredAt, decide_append};
use es_core::{AppendResult, Error, Result, Snapshot, StreamId, StreamWrite, Timestamp};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use crate::checksum;
use crate::error::{corrupt, is_unique_violation, store_error};

/// A request to the writer, with where to send its outcome.
pub(crate) enum WriteJob {
    Append {
        writes: Vec<StreamWrite>,
        reply: flume::Sender<Result<Vec<AppendResult>>>,
    },
    Snapshot {
        snapshot: Snapshot,
        reply: flume::Sender<Result<()>>,
    },
    Checkpoint {
        name: String,
        position: u64,
        reply: flume::Sender<Result<()>>,
    },
}

/// A request's outcome, held until the transaction commits.
enum Done {
    Append(flume::Sender<Result<Vec<AppendResult>>>, Vec<AppendResult>),
    Unit(flume::Sender<Result<()>>),
}

impl Done {
    fn new(job: WriteJob, results: Vec<AppendResult>) -> Self {
        match job {
            WriteJob::Append { reply, .. } => Done::Append(reply, results),
            WriteJob::Snapshot { reply, .. } | WriteJob::Checkpoint { reply, .. } => {
                Done::Unit(reply)
            }
        }
    }

    fn send(self) {
        // A requester that stopped waiting (a dropped future) is not an
        // error: its request is complete either way.
        match self {
            Done::Append(reply, results) => drop(reply.send(Ok(results))),
            Done::Unit(reply) => drop(reply.send(Ok(()))),
        }
    }

    fn fail(self, error: &Error) {
        match self {
            Done::Append(reply, _) => drop(reply.send(Err(copy_error(error)))),
            Done::Unit(reply) => drop(reply.send(Err(copy_error(error)))),
        }
    }
}

impl WriteJob {
    /// Answers this request alone with `error`.
    fn reject(self, error: Error) {
        match self {
            WriteJob::Append { reply, .. } => drop(reply.send(Err(error))),
            WriteJob::Snapshot { reply, .. } | WriteJob::Checkpoint { reply, .. } => {
                drop(reply.send(Err(error)));
            }
        }
    }

    /// Answers this request with the failure of its whole batch.
    fn fail(self, error: &Error) {
        self.reject(copy_error(error));
    }
}

/// The same failure for every request of a failed transaction.
fn copy_error(error: &Error) -> Error {
    match error {
        Error::Busy => Error::Busy,
        Error::StorageFull => Error::StorageFull,
        Error::ReadOnly => Error::ReadOnly,
        Error::Closed => Error::Closed,
        Error::Corrupt { detail } => Error::Corrupt {
            detail: detail.clone(),
        },
        other => Error::Backend(other.to_string().into()),
    }
}

/// Runs until every sender is dropped.
pub(crate) fn run(
    conn: Connection,
    jobs: &flume::Receiver<WriteJob>,
    notifier: Notifier,
    max_batch: usize,
) {
    let mut writer = Writer { conn, notifier };
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        writer.commit(batch);
    }
}

struct Writer {
    conn: Connection,
    notifier: Notifier,
}

/// Why one request's work stopped.
enum Stop {
    /// A unique index refused a row: re-run the request checking every id.
    Recheck,
    /// The request fails with this error.
    Fail(Error),
}

impl From<rusqlite::Error> for Stop {
    fn from(e: rusqlite::Error) -> Self {
        if is_unique_violation(&e) {
            Stop::Recheck
        } else {
            Stop::Fail(store_error(e))
        }
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}

impl Writer {
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// One transaction for the whole batch; one savepoint per request.
    fn commit(&mut self, batch: Vec<WriteJob>) {
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            let error = store_error(e);
            for job in batch {
                job.fail(&error);
            }
            return;
        }
        let now = Timestamp::now();
        let mut done: Vec<Done> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        while let Some(job) = jobs.next() {
            if let Err(e) = self.exec("SAVEPOINT request") {
                return self.abort(&store_error(e), done, Some(job), jobs);
            }
            match self.run_job(&job, now) {
                Ok(results) => {
                    if let Err(e) = self.exec("RELEASE request") {
                        return self.abort(&store_error(e), done, Some(job), jobs);
                    }
                    done.push(Done::new(job, results));
                }
                Err(error) => {
                    // SQLite rolls the whole transaction back by itself after
                    // some errors (a full disk, an I/O error): then nothing of
                    // this batch is written, and every request fails.
                    if self.conn.is_autocommit() {
                        return self.abort(&error, done, Some(job), jobs);
                    }
                    let undone = self
                        .exec("ROLLBACK TO request")
                        .and_then(|()| self.exec("RELEASE request"));
                    if let Err(e) = undone {
                        return self.abort(&store_error(e), done, Some(job), jobs);
                    }
                    job.reject(error);
                }
            }
        }
        match self.exec("COMMIT") {
            Ok(()) => {
                if let Some(position) = last_position(&done) {
                    self.notifier.notify(position);
                }
                for outcome in done {
                    outcome.send();
                }
            }
            Err(e) => self.abort(&store_error(e), done, None, std::iter::empty()),
        }
    }

    /// Rolls the transaction back and fails every request of the batch.
    fn abort(
        &self,
        error: &Error,
        done: Vec<Done>,
        current: Option<WriteJob>,
        rest: impl Iterator<Item = WriteJob>,
    ) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.exec("ROLLBACK")
        {
            tracing::error!(error = %e, "cannot roll back a failed batch");
        }
        tracing::warn!(%error, "write batch failed; nothing of it was written");
        for outcome in done {
            outcome.fail(error);
        }
        for job in current.into_iter().chain(rest) {
            job.fail(error);
        }
    }

    /// Runs one request inside its savepoint.
    fn run_job(&mut self, job: &WriteJob, now: Timestamp) -> Result<Vec<AppendResult>> {
        match job {
            WriteJob::Append { writes, .. } => self.append(writes, now),
            WriteJob::Snapshot { snapshot, .. } => {
                self.save_snapshot(snapshot).map(|()| Vec::new())
            }
            WriteJob::Checkpoint { name, position, .. } => {
                self.save_checkpoint(name, *position).map(|()| Vec::new())
            }
        }
    }

    /// Appends every write of one request, or none.
    ///
    /// Fast path: a write whose expected version holds is inserted without
    /// looking its event ids up; the unique index on event ids refuses a
    /// repeat. Then (and whenever the version does not hold) the request is
    /// undone and re-run checking every id, to answer with the shared
    /// decision table of `es_core::store::decide_append`.
    fn append(&mut self, writes: &[StreamWrite], now: Timestamp) -> Result<Vec<AppendResult>> {
        match self.try_append(writes, now, false) {
            Ok(results) => Ok(results),
            Err(Stop::Fail(e)) => Err(e),
            Err(Stop::Recheck) => {
                self.exec("ROLLBACK TO request").map_err(store_error)?;
                match self.try_append(writes, now, true) {
                    Ok(results) => Ok(results),
                    Err(Stop::Fail(e)) => Err(e),
                    Err(Stop::Recheck) => Err(corrupt(
                        "a unique index refused an append whose ids and version were checked",
                    )),
                }
            }
        }
    }

    fn try_append(
        &mut self,
        writes: &[StreamWrite],
        now: Timestamp,
        check_ids: bool,
    ) -> std::result::Result<Vec<AppendResult>, Stop> {
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let stream = self.stream(&write.stream)?;
            let current = stream.as_ref().map_or(0, |s| s.version);
            if let (Some(stream), Some(first)) = (&stream, write.events.first())
                && stream.aggregate_type != *first.aggregate_type
            {
                return Err(Stop::Fail(Error::AggregateMismatch {
                    stream: write.stream.clone(),
                    requested: first.aggregate_type.to_string(),
                    actual: stream.aggregate_type.clone(),
                }));
            }
            let decision = if check_ids || !write.expected.accepts(current) {
                let found = self.find_ids(write)?;
                decide_append(write, current, &found)?
            } else {
                AppendDecision::Write
            };
            let result = match decision.settled(write, current) {
                Some(settled) => settled,
                None => self.insert(write, stream, now)?,
            };
            results.push(result);
        }
        Ok(results)
    }

    fn stream(&self, stream: &StreamId) -> rusqlite::Result<Option<StreamRow>> {
        self.conn
            .prepare_cached(
                "SELECT stream_pk, aggregate_type, version FROM streams WHERE stream_id = ?1",
            )?
            .query_row([stream.as_str()], |r| {
                Ok(StreamRow {
                    pk: r.get(0)?,
                    aggregate_type: r.get(1)?,
                    version: r.get::<_, i64>(2)?.max(0).unsigned_abs(),
                })
            })
            .optional()
    }

    fn find_ids(&self, write: &StreamWrite) -> std::result::Result<Vec<Option<StoredAt>>, Stop> {
        let mut query = self.conn.prepare_cached(
            "SELECT s.stream_id, e.version, e.position FROM events e \
             JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.event_id = ?1",
        )?;
        let mut found = Vec::with_capacity(write.events.len());
        for event in &write.events {
            let row = query
                .query_row([event.event_id.as_bytes().as_slice()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            found.push(match row {
                None => None,
                Some((stream, version, position)) => Some(StoredAt {
                    stream: StreamId::new(&stream)
                        .map_err(|e| corrupt(format!("stored stream id {stream:?}: {e}")))?,
                    version: u64::try_from(version)
                        .map_err(|_| corrupt(format!("stored version {version}")))?,
                    position: u64::try_from(position)
                        .map_err(|_| corrupt(format!("stored position {position}")))?,
                }),
            });
        }
        Ok(found)
    }

    fn insert(
        &self,
        write: &StreamWrite,
        stream: Option<StreamRow>,
        now: Timestamp,
    ) -> std::result::Result<AppendResult, Stop> {
        let (pk, mut version) = if let Some(s) = stream {
            (s.pk, s.version)
        } else {
            let aggregate_type = write.events.first().map_or("", |e| &e.aggregate_type);
            self.conn
                .prepare_cached(
                    "INSERT INTO streams (stream_id, aggregate_type, version) VALUES (?1, ?2, 0)",
                )?
                .execute(params![write.stream.as_str(), aggregate_type])?;
            (self.conn.last_insert_rowid(), 0)
        };
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO events (stream_pk, version, event_id, recorded_at, name, schema_version, payload, metadata, checksum) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut first_position = None;
        let mut last_position = 0;
        for event in &write.events {
            version += 1;
            // Bound as TEXT without a second UTF-8 check: every append
            // reaches the writer through `Limits::check`, which refused
            // payloads that are not UTF-8; serde_json writes UTF-8.
            let payload = ToSqlOutput::Borrowed(ValueRef::Text(&event.payload));
            let metadata = event.metadata.to_json();
            let row = checksum::Row {
                stream_pk: pk,
                version: i64::try_from(version).map_err(|_| corrupt("stream version overflow"))?,
                event_id: event.event_id.as_bytes(),
                recorded_at: now.as_unix_micros(),
                name: event.name.as_bytes(),
                schema_version: i64::from(event.schema_version),
                payload: &event.payload,
                metadata: metadata.as_deref(),
            };
            insert.execute(params![
                row.stream_pk,
                row.version,
                row.event_id,
                row.recorded_at,
                &*event.name,
                row.schema_version,
                payload,
                metadata
                    .as_deref()
                    .map(|m| ToSqlOutput::Borrowed(ValueRef::Text(m))),
                row.checksum(),
            ])?;
            let position = u64::try_from(self.conn.last_insert_rowid())
                .map_err(|_| corrupt("negative position"))?;
            first_position.get_or_insert(position);
            last_position = position;
        }
        self.conn
            .prepare_cached("UPDATE streams SET version = ?1 WHERE stream_pk = ?2")?
            .execute(params![
                i64::try_from(version).map_err(|_| corrupt("stream version overflow"))?,
                pk
            ])?;
        Ok(AppendResult {
            stream_id: write.stream.clone(),
            version,
            first_position,
            last_position: Some(last_position),
            repeated: false,
        })
    }

    fn save_snapshot(&self, s: &Snapshot) -> Result<()> {
        let version = i64::try_from(s.version).map_err(|_| corrupt("snapshot version overflow"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO snapshots (stream_id, aggregate_type, version, schema_version, state, taken_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (stream_id) DO UPDATE SET aggregate_type = excluded.aggregate_type, \
                 version = excluded.version, schema_version = excluded.schema_version, \
                 state = excluded.state, taken_at = excluded.taken_at \
                 WHERE excluded.version >= snapshots.version",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.stream_id.as_str(),
                    s.aggregate_type,
                    version,
                    s.schema_version,
                    s.state,
                    s.taken_at.as_unix_micros()
                ])
            })
            .map(drop)
            .map_err(store_error)
    }

    fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let position =
            i64::try_from(position).map_err(|_| corrupt("checkpoint position overflow"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO checkpoints (name, position) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .and_then(|mut st| st.execute(params![name, position]))
            .map(drop)
            .map_err(store_error)
    }
}

struct StreamRow {
    pk: i64,
    aggregate_type: String,
    version: u64,
}

/// The highest position written by a committed batch, if any event was.
fn last_position(done: &[Done]) -> Option<u64> {
    done.iter()
        .filter_map(|d| match d {
            Done::Append(_, results) => results
                .iter()
                .filter(|r| !r.repeated)
                .filter_map(|r| r.last_position)
                .max(),
            Done::Unit(_) => None,
        })
        .max()
}
