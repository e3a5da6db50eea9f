//! The writer: one thread and one connection that commits every write of
//! the store, many appends per transaction (group commit).
//!
//! # Positions without gaps, in commit order
//!
//! Concurrent PostgreSQL transactions commit in an order of their own: a
//! sequence hands out 7 to one and 8 to another, 8 commits first, and a
//! reader sees 8, then 7 appears below it (or never, when its transaction
//! rolls back). A projection that saved checkpoint 8 would skip 7 forever.
//! The store avoids it with one row, `es_head`, that every write
//! transaction locks first (`SELECT ... FOR UPDATE`) and updates last:
//! writers, of this process or any other, take their positions one
//! transaction at a time, after the previous one committed. PostgreSQL
//! makes a transaction visible before it releases its row locks, so once a
//! writer holds the row, every earlier position is visible to every new
//! snapshot, and a reader that sees position `p` sees all below it.
//!
//! That serialises writers, which is what an ordered log is; the writer
//! makes up for it by committing every request that arrived during the
//! previous commit in one transaction (up to
//! [`max_batch`](crate::PostgresOptions::max_batch)), deciding all of them
//! in memory from two lookups, and writing their events with one
//! multi-row insert. The round trips per commit do not grow with the
//! number of appends in it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use es_core::store::backend::{AppendDecision, CheckedAppend, Notifier, StoredAt, decide_append};
use es_core::{AppendResult, Error, Result, Snapshot, StreamId, Timestamp, Uuid};
use postgres::{Client, Statement};

use crate::conn::Connector;
use crate::error::{signed, store_error, stored_stream, unsigned};

/// A write for the writer.
pub(crate) enum Work {
    /// An append, checked against the limits.
    Append(CheckedAppend),
    SaveSnapshot(Snapshot),
    DeleteSnapshot(StreamId),
    DeleteAllSnapshots,
    SaveCheckpoint {
        name: String,
        position: u64,
    },
}

/// What a write did.
pub(crate) enum Outcome {
    Appended(Vec<AppendResult>),
    Count(u64),
    Done,
}

/// A write and where to answer it (`None`: nobody waits).
pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) reply: Option<flume::Sender<Result<Outcome>>>,
}

/// The writer's statements, prepared once per connection.
struct Prepared {
    lock_head: Statement,
    find_streams: Statement,
    find_ids: Statement,
    upsert_streams: Statement,
    insert_events: Statement,
    add_types: Statement,
    set_head: Statement,
    notify: Statement,
    save_snapshot: Statement,
    delete_snapshot: Statement,
    delete_snapshots: Statement,
    save_checkpoint: Statement,
}

impl Prepared {
    fn new(client: &mut Client) -> std::result::Result<Self, postgres::Error> {
        Ok(Prepared {
            lock_head: client.prepare("SELECT position FROM es_head FOR UPDATE")?,
            find_streams: client.prepare(
                "SELECT stream_id, aggregate_type, version FROM es_streams WHERE stream_id = ANY($1)",
            )?,
            find_ids: client.prepare(
                "SELECT event_id, stream_id, version, position FROM es_events WHERE event_id = ANY($1)",
            )?,
            upsert_streams: client.prepare(
                "INSERT INTO es_streams (stream_id, aggregate_type, version)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])
                 ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
            )?,
            insert_events: client.prepare(
                "INSERT INTO es_events (position, stream_id, version, event_id, recorded_at,
                     occurred_at, name, schema_version, payload, metadata, correlation_id)
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::int8[],
                     $6::int8[], $7::text[], $8::int4[], $9::text[], $10::text[], $11::uuid[])",
            )?,
            add_types: client.prepare(
                "INSERT INTO es_event_types (aggregate_type, name, schema_version, count)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[])
                 ON CONFLICT (aggregate_type, name, schema_version)
                 DO UPDATE SET count = es_event_types.count + EXCLUDED.count",
            )?,
            set_head: client.prepare("UPDATE es_head SET position = $1")?,
            notify: client.prepare("SELECT pg_notify($1, $2)")?,
            save_snapshot: client.prepare(
                "INSERT INTO es_snapshots (stream_id, aggregate_type, version, schema_version, state, taken_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (stream_id) DO UPDATE SET aggregate_type = EXCLUDED.aggregate_type,
                     version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
                     state = EXCLUDED.state, taken_at = EXCLUDED.taken_at
                 WHERE es_snapshots.version <= EXCLUDED.version",
            )?,
            delete_snapshot: client.prepare("DELETE FROM es_snapshots WHERE stream_id = $1")?,
            delete_snapshots: client.prepare("DELETE FROM es_snapshots")?,
            save_checkpoint: client.prepare(
                "INSERT INTO es_checkpoints (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            )?,
        })
    }
}

/// Counters of the writer, for measuring group commit.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: std::sync::atomic::AtomicU64,
    pub(crate) requests: std::sync::atomic::AtomicU64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) connector: Connector,
    pub(crate) jobs: flume::Receiver<Job>,
    pub(crate) max_batch: usize,
    pub(crate) notifier: Notifier,
    pub(crate) channel: String,
    pub(crate) counters: Arc<Counters>,
}

/// How a batch failed.
enum Failed {
    /// The transaction was rolled back: nothing of it is stored.
    RolledBack(Error),
    /// The connection was lost while committing: it may be stored.
    Unknown,
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::RolledBack(e)
    }
}

impl From<postgres::Error> for Failed {
    fn from(e: postgres::Error) -> Self {
        Failed::RolledBack(store_error(e))
    }
}

impl Writer {
    /// Commits batches of jobs until every sender is gone.
    pub(crate) fn run(self) {
        let mut connection: Option<(Client, Prepared)> = None;
        while let Ok(first) = self.jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let outcomes = self.commit(&mut connection, &batch);
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                if let Some(reply) = job.reply {
                    // The caller may have given up waiting (a dropped future).
                    let _ = reply.send(outcome);
                } else if let Err(e) = outcome {
                    tracing::debug!(error = %e, "a queued snapshot was not written");
                }
            }
        }
    }

    /// The outcome of each job of `batch`, committed together when they can
    /// be, each on its own after a failure that is not one job's.
    fn commit(
        &self,
        connection: &mut Option<(Client, Prepared)>,
        batch: &[Job],
    ) -> Vec<Result<Outcome>> {
        let all: Vec<&Job> = batch.iter().collect();
        // A connection lost before the commit was sent rolled everything
        // back: one more try on a new connection.
        let mut result = self.try_batch(connection, &all);
        if matches!(result, Err(Failed::RolledBack(Error::Io { .. }))) {
            *connection = None;
            result = self.try_batch(connection, &all);
        }
        match result {
            Ok(outcomes) => outcomes,
            Err(Failed::Unknown) => {
                *connection = None;
                batch.iter().map(|_| Err(Error::SyncFailed)).collect()
            }
            Err(Failed::RolledBack(e)) if batch.len() == 1 => vec![Err(e)],
            Err(Failed::RolledBack(_)) => all
                .iter()
                .map(|job| match self.try_batch(connection, &[job]) {
                    Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(Error::Closed)),
                    Err(Failed::Unknown) => {
                        *connection = None;
                        Err(Error::SyncFailed)
                    }
                    Err(Failed::RolledBack(e)) => Err(e),
                })
                .collect(),
        }
    }

    fn try_batch(
        &self,
        connection: &mut Option<(Client, Prepared)>,
        jobs: &[&Job],
    ) -> std::result::Result<Vec<Result<Outcome>>, Failed> {
        if connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            *connection = None;
            let mut client = self
                .connector
                .client()
                .map_err(|e| Failed::RolledBack(store_error(e)))?;
            let prepared = Prepared::new(&mut client)?;
            *connection = Some((client, prepared));
        }
        let Some((client, p)) = connection.as_mut() else {
            return Err(Failed::RolledBack(Error::Closed));
        };
        let mut tx = client.transaction()?;
        let appends: Vec<&CheckedAppend> = jobs
            .iter()
            .filter_map(|job| match &job.work {
                Work::Append(checked) => Some(checked),
                _ => None,
            })
            .collect();
        let mut log = if appends.is_empty() {
            None
        } else {
            Some(Pending::lookup(&mut tx, p, &appends)?)
        };
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let outcome = match &job.work {
                Work::Append(checked) => match log.as_mut() {
                    Some(log) => log.append(checked),
                    None => Err(Error::Closed),
                },
                Work::SaveSnapshot(s) => {
                    let version = signed(s.version)?;
                    let schema_version = i32::try_from(s.schema_version).map_err(|_| {
                        Failed::RolledBack(Error::InvalidEvent {
                            name: s.aggregate_type.clone(),
                            reason: "a snapshot's schema version is over 2^31 - 1",
                        })
                    })?;
                    tx.execute(
                        &p.save_snapshot,
                        &[
                            &s.stream_id.as_str(),
                            &s.aggregate_type,
                            &version,
                            &schema_version,
                            &s.state,
                            &s.taken_at.as_unix_micros(),
                        ],
                    )?;
                    Ok(Outcome::Done)
                }
                Work::DeleteSnapshot(stream) => {
                    tx.execute(&p.delete_snapshot, &[&stream.as_str()])?;
                    Ok(Outcome::Done)
                }
                Work::DeleteAllSnapshots => {
                    Ok(Outcome::Count(tx.execute(&p.delete_snapshots, &[])?))
                }
                Work::SaveCheckpoint { name, position } => {
                    tx.execute(&p.save_checkpoint, &[name, &signed(*position)?])?;
                    Ok(Outcome::Done)
                }
            };
            outcomes.push(outcome);
        }
        let head = match log {
            Some(log) => log.write(&mut tx, p, &self.channel)?,
            None => None,
        };
        // An error the server answers the commit with (a deferred check)
        // rolled it back; a connection lost on the way leaves it unknown.
        tx.commit().map_err(|e| {
            if e.code().is_some() {
                Failed::RolledBack(store_error(e))
            } else {
                Failed::Unknown
            }
        })?;
        self.counters
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counters
            .requests
            .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(head) = head {
            self.notifier.notify(head);
        }
        Ok(outcomes)
    }
}

/// A stream as the batch knows it: stored, or changed by an earlier append
/// of the batch.
struct StreamRow {
    aggregate_type: String,
    version: u64,
    changed: bool,
}

/// The appends of one batch, decided in memory over what the lookups found
/// and what earlier appends of the batch wrote.
struct Pending {
    head: u64,
    position: u64,
    now: Timestamp,
    streams: HashMap<StreamId, StreamRow>,
    ids: HashMap<Uuid, StoredAt>,
    events: Columns,
    types: BTreeMap<(String, String, i32), i64>,
}

/// The rows of the multi-row insert, column by column.
#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    stream_id: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    recorded_at: Vec<i64>,
    occurred_at: Vec<Option<i64>>,
    name: Vec<String>,
    schema_version: Vec<i32>,
    payload: Vec<String>,
    metadata: Vec<Option<String>>,
    correlation_id: Vec<Option<Uuid>>,
}

impl Pending {
    /// Locks the head and reads the streams and event ids `appends` name.
    fn lookup(
        tx: &mut postgres::Transaction<'_>,
        p: &Prepared,
        appends: &[&CheckedAppend],
    ) -> std::result::Result<Self, Failed> {
        let head: i64 = tx.query_one(&p.lock_head, &[])?.get(0);
        let head = unsigned(head, "head")?;
        let writes = appends.iter().flat_map(|a| &a.writes);
        let mut names: Vec<&str> = writes.clone().map(|w| w.stream.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let ids: Vec<Uuid> = writes.flat_map(|w| &w.events).map(|e| e.event_id).collect();
        let mut streams = HashMap::with_capacity(names.len());
        for row in tx.query(&p.find_streams, &[&names])? {
            let version: i64 = row.get(2);
            streams.insert(
                stored_stream(row.get(0))?,
                StreamRow {
                    aggregate_type: row.get(1),
                    version: unsigned(version, "version")?,
                    changed: false,
                },
            );
        }
        let mut found = HashMap::new();
        if !ids.is_empty() {
            for row in tx.query(&p.find_ids, &[&ids])? {
                let (version, position): (i64, i64) = (row.get(2), row.get(3));
                found.insert(
                    row.get::<_, Uuid>(0),
                    StoredAt {
                        stream: stored_stream(row.get(1))?,
                        version: unsigned(version, "version")?,
                        position: unsigned(position, "position")?,
                    },
                );
            }
        }
        Ok(Pending {
            head,
            position: head,
            now: Timestamp::now(),
            streams,
            ids: found,
            events: Columns::default(),
            types: BTreeMap::new(),
        })
    }

    /// Decides every write of one append; writes them all, or none.
    fn append(&mut self, checked: &CheckedAppend) -> Result<Outcome> {
        let mut decisions = Vec::with_capacity(checked.writes.len());
        for write in &checked.writes {
            let row = self.streams.get(&write.stream);
            let current = row.map_or(0, |r| r.version);
            if let (Some(row), Some(first)) = (row, write.events.first())
                && row.aggregate_type != *first.aggregate_type
            {
                return Err(Error::AggregateMismatch {
                    stream: write.stream.clone(),
                    requested: first.aggregate_type.to_string(),
                    actual: row.aggregate_type.clone(),
                });
            }
            let found: Vec<Option<StoredAt>> = write
                .events
                .iter()
                .map(|e| self.ids.get(&e.event_id).cloned())
                .collect();
            decisions.push((decide_append(write, current, &found)?, current));
            if let Some(event) = write
                .events
                .iter()
                .find(|e| i32::try_from(e.schema_version).is_err())
            {
                return Err(Error::InvalidEvent {
                    name: event.name.to_string(),
                    reason: "a schema version is over 2^31 - 1",
                });
            }
        }
        let total: usize = checked.writes.iter().map(|w| w.events.len()).sum();
        if self.position.saturating_add(total as u64) > i64::MAX as u64 {
            return Err(Error::StorageFull);
        }
        // Nothing below can fail: every number was checked above.
        let mut results = Vec::with_capacity(decisions.len());
        for ((write, metadata), (decision, current)) in
            checked.writes.iter().zip(&checked.metadata).zip(decisions)
        {
            if let Some(settled) = decision.settled(write, current) {
                results.push(settled);
                continue;
            }
            debug_assert!(matches!(decision, AppendDecision::Write));
            let aggregate_type = self.streams.get(&write.stream).map_or_else(
                || write.events[0].aggregate_type.to_string(),
                |r| r.aggregate_type.clone(),
            );
            let first_position = self.position + 1;
            let mut version = current;
            for (event, metadata) in write.events.iter().zip(metadata) {
                version += 1;
                self.position += 1;
                let schema_version = i32::try_from(event.schema_version).unwrap_or(i32::MAX);
                let c = &mut self.events;
                c.position.push(signed(self.position)?);
                c.stream_id.push(write.stream.as_str().to_owned());
                c.version.push(signed(version)?);
                c.event_id.push(event.event_id);
                c.recorded_at.push(self.now.as_unix_micros());
                c.occurred_at
                    .push(event.occurred_at.map(Timestamp::as_unix_micros));
                c.name.push(event.name.to_string());
                c.schema_version.push(schema_version);
                c.payload.push(event.payload.as_str().to_owned());
                c.metadata.push(metadata.clone());
                c.correlation_id.push(event.metadata.correlation_id);
                *self
                    .types
                    .entry((
                        aggregate_type.clone(),
                        event.name.to_string(),
                        schema_version,
                    ))
                    .or_default() += 1;
                self.ids.insert(
                    event.event_id,
                    StoredAt {
                        stream: write.stream.clone(),
                        version,
                        position: self.position,
                    },
                );
            }
            self.streams.insert(
                write.stream.clone(),
                StreamRow {
                    aggregate_type,
                    version,
                    changed: true,
                },
            );
            results.push(AppendResult {
                stream_id: write.stream.clone(),
                version,
                first_position: Some(first_position),
                last_position: Some(self.position),
                repeated: false,
            });
        }
        Ok(Outcome::Appended(results))
    }

    /// Writes what the batch's appends decided; the new head, if it moved.
    fn write(
        self,
        tx: &mut postgres::Transaction<'_>,
        p: &Prepared,
        channel: &str,
    ) -> std::result::Result<Option<u64>, Failed> {
        if self.position == self.head {
            return Ok(None);
        }
        let (mut ids, mut types, mut versions) = (Vec::new(), Vec::new(), Vec::new());
        for (id, row) in &self.streams {
            if row.changed {
                ids.push(id.as_str());
                types.push(row.aggregate_type.as_str());
                versions.push(signed(row.version)?);
            }
        }
        tx.execute(&p.upsert_streams, &[&ids, &types, &versions])?;
        let c = &self.events;
        tx.execute(
            &p.insert_events,
            &[
                &c.position,
                &c.stream_id,
                &c.version,
                &c.event_id,
                &c.recorded_at,
                &c.occurred_at,
                &c.name,
                &c.schema_version,
                &c.payload,
                &c.metadata,
                &c.correlation_id,
            ],
        )?;
        let mut aggregate_types = Vec::with_capacity(self.types.len());
        let mut names = Vec::with_capacity(self.types.len());
        let mut schema_versions = Vec::with_capacity(self.types.len());
        let mut counts = Vec::with_capacity(self.types.len());
        for ((aggregate_type, name, schema_version), count) in &self.types {
            aggregate_types.push(aggregate_type.as_str());
            names.push(name.as_str());
            schema_versions.push(*schema_version);
            counts.push(*count);
        }
        tx.execute(
            &p.add_types,
            &[&aggregate_types, &names, &schema_versions, &counts],
        )?;
        let head = signed(self.position)?;
        tx.execute(&p.set_head, &[&head])?;
        // Delivered to listeners when (and only if) the transaction commits.
        tx.execute(&p.notify, &[&channel, &head.to_string()])?;
        Ok(Some(self.position))
    }
}
