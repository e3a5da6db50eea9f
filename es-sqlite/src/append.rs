//! Appending events, inside the writer's transaction: decide each stream
//! write with the shared rules of `es_core::store::backend`, then insert.
//!
//! Reads first, writes after: every write of a request is decided (versions,
//! and when needed event ids) before anything is inserted, so a conflict
//! writes nothing and needs no undo. The inserts of a request that takes
//! more than one statement run in a savepoint (rolled back on drop if one
//! fails); a request of one statement needs none, since SQLite undoes a
//! failed statement by itself. The common request, one event to an existing
//! stream, is two statements in all: one read, one insert.

use es_core::store::backend::{AppendDecision, CheckedAppend, StoredAt, decide_append};
use es_core::{AppendResult, Error, Result, StreamId, StreamWrite, Timestamp};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, DropBehavior, OptionalExtension, Transaction, params};

use crate::chain::{ChainHash, Link};
use crate::checksum;
use crate::error::{corrupt, is_unique_violation, store_error, stored_integer};

/// The head of the log as the writer knows it: the last position and the
/// last event's hash (the audit chain). Each new event takes the next
/// position and chains from the hash; whatever undoes inserts puts the
/// head back as it was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) position: u64,
    pub(crate) hash: ChainHash,
}

/// Why inserting stopped.
enum Stop {
    /// A unique index refused a row: decide again, checking every event id.
    Recheck,
    /// The request fails with this error.
    Fail(Error),
    /// What the request wrote could not be undone: the batch must fail.
    Undo(Error),
}

/// Why a request failed.
pub(crate) enum Failure {
    /// The request alone: nothing of it is left in the transaction.
    Request(Error),
    /// The whole batch: the transaction may hold part of this request.
    Batch(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Request(e)
    }
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

/// A stream as the writer finds it.
struct StreamRow {
    pk: i64,
    aggregate_type: String,
    version: u64,
}

/// One write of a request, decided.
struct Decided<'a> {
    write: &'a StreamWrite,
    metadata: &'a [Option<String>],
    stream: Option<StreamRow>,
    /// The answer when nothing is to be written (a repeat, an empty write).
    settled: Option<AppendResult>,
}

/// Appends every write of one request, or none.
///
/// Fast path: a write whose expected version holds is inserted without
/// looking its event ids up; the unique index on event ids refuses a
/// repeat, and then (as whenever a version does not hold) the request is
/// decided again checking every id, to answer with the shared decision
/// table.
///
/// # Errors
///
/// [`Failure::Request`]: the request's own failure (a conflict, a
/// duplicate id, a mismatched aggregate type, a storage error), with nothing
/// of it left in the transaction (when SQLite rolled the whole transaction
/// back, the writer sees it and fails the batch). [`Failure::Batch`]: what
/// the request wrote could not be undone.
pub(crate) fn append(
    tx: &mut Transaction<'_>,
    append: &CheckedAppend,
    now: Timestamp,
    head: &mut Head,
) -> std::result::Result<Vec<AppendResult>, Failure> {
    let decided = match decide(tx, append, false) {
        Ok(decided) => decided,
        // The fast path decides a write whose version holds without its
        // ids, so when a later write is refused an earlier one may be
        // refused too (an id stored elsewhere): decide again with every id,
        // so that the answer is the first refusal in the order given, as
        // on every store.
        Err(_) if append.writes.len() > 1 => decide(tx, append, true)?,
        Err(e) => return Err(Failure::Request(e)),
    };
    match write(tx, &decided, now, head) {
        Err(Stop::Recheck) => {}
        done => return done.map_err(failure),
    }
    let decided = decide(tx, append, true)?;
    write(tx, &decided, now, head).map_err(failure)
}

/// What a request's stop means for the writer. A second refusal by a
/// unique index, after every id and version was checked, cannot be a
/// decision: the indexes disagree with what was read.
fn failure(stop: Stop) -> Failure {
    match stop {
        Stop::Fail(e) => Failure::Request(e),
        Stop::Undo(e) => Failure::Batch(e),
        Stop::Recheck => Failure::Request(corrupt(
            "a unique index refused an append whose ids and version were checked",
        )),
    }
}

/// Decides every write of the request; reads only.
fn decide<'a>(
    conn: &Connection,
    append: &'a CheckedAppend,
    check_ids: bool,
) -> Result<Vec<Decided<'a>>> {
    let mut decided = Vec::with_capacity(append.writes.len());
    for (write, metadata) in append.writes.iter().zip(&append.metadata) {
        let stream = stream(conn, &write.stream)?;
        let current = stream.as_ref().map_or(0, |s| s.version);
        if let (Some(stream), Some(first)) = (&stream, write.events.first())
            && stream.aggregate_type != *first.aggregate_type
        {
            return Err(Error::AggregateMismatch {
                stream: write.stream.clone(),
                requested: first.aggregate_type.to_string(),
                actual: stream.aggregate_type.clone(),
            });
        }
        let decision = if check_ids || !write.expected.accepts(current) {
            decide_append(write, current, &find_ids(conn, write)?)?
        } else {
            AppendDecision::Write
        };
        decided.push(Decided {
            write,
            metadata,
            settled: decision.settled(write, current),
            stream,
        });
    }
    Ok(decided)
}

/// Inserts what the decisions say, in a savepoint when it takes more than
/// one statement.
fn write(
    tx: &mut Transaction<'_>,
    decided: &[Decided<'_>],
    now: Timestamp,
    head: &mut Head,
) -> std::result::Result<Vec<AppendResult>, Stop> {
    let statements: usize = decided
        .iter()
        .filter(|d| d.settled.is_none())
        .map(|d| d.write.events.len() + usize::from(d.stream.is_none()))
        .sum();
    let before = *head;
    let written = if statements > 1 {
        let mut savepoint = tx.savepoint()?;
        let written = insert_all(&savepoint, decided, now, head);
        match written {
            Ok(results) => savepoint.commit().map(|()| results).map_err(|e| {
                // RELEASE failed: the savepoint may still hold the rows.
                Stop::Undo(store_error(e))
            }),
            // Undone and released, and known to be: a failure here leaves
            // the request's rows in the transaction, so the batch fails.
            Err(stop) => {
                fail::fail_point!("es-sqlite::append::undo", |message| Err(Stop::Undo(
                    Error::backend(message.unwrap_or_default())
                )));
                if savepoint.is_autocommit() {
                    // SQLite rolled the whole transaction back by itself (a
                    // full disk, an I/O error): the savepoint is gone with
                    // everything of the batch, and the writer fails it.
                    savepoint.set_drop_behavior(DropBehavior::Ignore);
                    return Err(stop);
                }
                match savepoint.finish() {
                    Ok(()) => Err(stop),
                    Err(e) => Err(Stop::Undo(store_error(e))),
                }
            }
        }
    } else {
        insert_all(tx, decided, now, head)
    };
    if written.is_err() {
        // Undone: the positions it took are free again, and the chain goes
        // on from the event before them.
        *head = before;
    }
    written
}

fn insert_all(
    conn: &Connection,
    decided: &[Decided<'_>],
    now: Timestamp,
    head: &mut Head,
) -> std::result::Result<Vec<AppendResult>, Stop> {
    decided
        .iter()
        .map(|d| match &d.settled {
            Some(settled) => Ok(settled.clone()),
            None => insert(conn, d, now, head),
        })
        .collect()
}

fn stream(conn: &Connection, stream: &StreamId) -> Result<Option<StreamRow>> {
    let row = conn
        .prepare_cached(
            "SELECT s.stream_pk, s.aggregate_type, \
             (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_pk = s.stream_pk) \
             FROM streams s WHERE s.stream_id = ?1",
        )
        .and_then(|mut q| {
            q.query_row([stream.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
        })
        .map_err(store_error)?;
    row.map(|(pk, aggregate_type, version)| {
        Ok(StreamRow {
            pk,
            aggregate_type,
            version: u64::try_from(version)
                .map_err(|_| corrupt(format!("negative version of stream `{stream}`")))?,
        })
    })
    .transpose()
}

fn find_ids(conn: &Connection, write: &StreamWrite) -> Result<Vec<Option<StoredAt>>> {
    let mut query = conn
        .prepare_cached(
            "SELECT s.stream_id, e.version, e.position FROM events e \
             JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.event_id = ?1",
        )
        .map_err(store_error)?;
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
            .optional()
            .map_err(store_error)?;
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
    conn: &Connection,
    decided: &Decided<'_>,
    now: Timestamp,
    head: &mut Head,
) -> std::result::Result<AppendResult, Stop> {
    let write = decided.write;
    let (pk, mut version, aggregate_type) = if let Some(s) = &decided.stream {
        (s.pk, s.version, s.aggregate_type.as_str())
    } else {
        let aggregate_type = write.events.first().map_or("", |e| &e.aggregate_type);
        conn.prepare_cached("INSERT INTO streams (stream_id, aggregate_type) VALUES (?1, ?2)")?
            .execute(params![write.stream.as_str(), aggregate_type])?;
        (conn.last_insert_rowid(), 0, aggregate_type)
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (position, stream_pk, version, event_id, recorded_at, occurred_at, \
         name, schema_version, payload, metadata, checksum, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut first_position = None;
    for (event, metadata) in write.events.iter().zip(decided.metadata) {
        version = version
            .checked_add(1)
            .ok_or_else(|| corrupt("stream version overflow"))?;
        // The next position, one more than the last, which the schema lets
        // reach 2^63 - 1 (see migration 0002).
        let position = head
            .position
            .checked_add(1)
            .and_then(|p| i64::try_from(p).ok())
            .ok_or_else(|| {
                corrupt(format!(
                    "no position after {}: the positions have run out",
                    head.position
                ))
            })?;
        let row = checksum::Row {
            stream_pk: pk,
            version: stored_integer("stream version", version)?,
            event_id: event.event_id.as_bytes(),
            recorded_at: now.as_unix_micros(),
            occurred_at: event.occurred_at.map(Timestamp::as_unix_micros),
            name: event.name.as_bytes(),
            schema_version: i64::from(event.schema_version),
            payload: event.payload.as_bytes(),
            metadata: metadata.as_deref().map(str::as_bytes),
        };
        let hash = Link {
            position,
            stream_id: write.stream.as_str().as_bytes(),
            version: row.version,
            event_id: row.event_id,
            aggregate_type: aggregate_type.as_bytes(),
            name: row.name,
            schema_version: row.schema_version,
            recorded_at: row.recorded_at,
            occurred_at: row.occurred_at,
            metadata: row.metadata,
            payload: row.payload,
        }
        .hash(&head.hash);
        // Payload and metadata are bound as text without a second UTF-8
        // check: `Payload` and `String` hold UTF-8 by their types.
        insert.execute(params![
            position,
            row.stream_pk,
            row.version,
            row.event_id,
            row.recorded_at,
            row.occurred_at,
            &*event.name,
            row.schema_version,
            ToSqlOutput::Borrowed(ValueRef::Text(event.payload.as_bytes())),
            metadata.as_deref(),
            row.checksum(),
            hash.as_bytes().as_slice(),
        ])?;
        let position = position.cast_unsigned();
        *head = Head { position, hash };
        first_position.get_or_insert(position);
    }
    Ok(AppendResult {
        stream_id: write.stream.clone(),
        version,
        first_position,
        last_position: first_position.map(|_| head.position),
        repeated: false,
    })
}
