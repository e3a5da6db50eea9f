//! Reader threads: each owns a connection and answers read requests, one
//! short read transaction per request, so a slow consumer never holds a
//! snapshot of the write-ahead log open.

use std::collections::HashMap;
use std::sync::Arc;

use std::ops::ControlFlow;

use es_core::{
    Error, EventRef, Metadata, RecordedEvent, Result, Snapshot, StreamId, Timestamp, Uuid,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use crate::checksum;
use crate::error::{corrupt, store_error};

/// A page of events to read.
#[derive(Clone)]
pub(crate) enum Page {
    /// Events of `stream` with versions in `from..=to`.
    Stream {
        stream: StreamId,
        from: u64,
        to: u64,
    },
    /// Events from position `from`.
    All { from: u64 },
}

/// What reading a page gave: the events read, then the error that stopped
/// it, if one did. The events before a damaged row are still delivered.
pub(crate) struct PageRead {
    pub(crate) events: Vec<RecordedEvent>,
    pub(crate) error: Option<Error>,
}

impl Page {
    /// Reads up to `limit` events of the page, in one read transaction.
    pub(crate) fn read(&self, conn: &Connection, limit: usize) -> PageRead {
        let mut events = Vec::with_capacity(limit.min(64));
        let error = match self {
            Page::Stream { stream, from, to } => {
                stream_page(conn, stream, *from, *to, limit, &mut events)
            }
            Page::All { from } => all_page(conn, *from, limit, &mut events),
        }
        .err();
        PageRead { events, error }
    }
}

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

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns `event` reads, in order.
/// The columns `Columns::read` reads, in order. A fold selects the first
/// eight only: it knows the stream key, and needs no position.
const EVENT_COLUMNS: &str = "e.version, e.event_id, e.recorded_at, e.name, e.schema_version, e.payload, \
                             e.metadata, e.checksum, e.position, e.stream_pk";
const FOLD_COLUMNS: &str = "e.version, e.event_id, e.recorded_at, e.name, e.schema_version, e.payload, \
                            e.metadata, e.checksum";

/// The events of stream `?1` with versions in `?2..=?3`, in order.
///
/// Written so that SQLite plans it once: it re-plans a statement whenever a
/// bound value it planned with changes (a LIMIT, or, under STAT4, a value
/// compared with an index in a join), so the limit is part of the text (an
/// integer of ours) and the stream is found by a subquery, not a join.
fn stream_sql(columns: &str, limit: usize) -> String {
    format!(
        "SELECT {columns} FROM events e \
         WHERE e.stream_pk = (SELECT stream_pk FROM streams WHERE stream_id = ?1) \
         AND e.version >= ?2 AND e.version <= ?3 ORDER BY e.version LIMIT {limit}"
    )
}

fn stream_page(
    conn: &Connection,
    stream: &StreamId,
    from: u64,
    to: u64,
    limit: usize,
    page: &mut Vec<RecordedEvent>,
) -> Result<()> {
    let columns =
        format!("{EVENT_COLUMNS}, (SELECT aggregate_type FROM streams WHERE stream_id = ?1)");
    let sql = stream_sql(&columns, limit);
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let mut rows = query
        .query(rusqlite::params![stream.as_str(), to_i64(from), to_i64(to)])
        .map_err(store_error)?;
    let mut aggregate_type: Option<Arc<str>> = None;
    while let Some(row) = rows.next().map_err(store_error)? {
        let aggregate = match &aggregate_type {
            Some(a) => a.clone(),
            None => aggregate_type
                .insert(Arc::from(text(row, 10, "aggregate_type")?))
                .clone(),
        };
        page.push(event(row, stream.clone(), aggregate)?);
    }
    Ok(())
}

fn all_page(
    conn: &Connection,
    from: u64,
    limit: usize,
    page: &mut Vec<RecordedEvent>,
) -> Result<()> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, s.aggregate_type, s.stream_id FROM events e \
         JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.position >= ?1 ORDER BY e.position LIMIT {limit}"
    );
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let mut rows = query.query([to_i64(from)]).map_err(store_error)?;
    let mut streams: HashMap<i64, (StreamId, Arc<str>)> = HashMap::new();
    while let Some(row) = rows.next().map_err(store_error)? {
        let pk = integer(row, 9, "stream_pk")?;
        let (stream, aggregate) = if let Some(known) = streams.get(&pk) {
            known.clone()
        } else {
            let id = text(row, 11, "stream_id")?;
            let stream =
                StreamId::new(id).map_err(|e| corrupt(format!("stored stream id {id:?}: {e}")))?;
            let entry = (stream, Arc::from(text(row, 10, "aggregate_type")?));
            streams.insert(pk, entry.clone());
            entry
        };
        page.push(event(row, stream, aggregate)?);
    }
    Ok(())
}

/// Calls `fold` with up to `limit` events of `stream` from version `from`
/// (at most `to`), borrowed from the row buffers: nothing is allocated per
/// event. Returns how many events were read, and whether `fold` stopped.
pub(crate) fn fold_page<F>(
    conn: &Connection,
    stream: &StreamId,
    from: u64,
    to: u64,
    limit: usize,
    fold: &mut F,
) -> Result<(usize, bool)>
where
    F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>>,
{
    // The stream's key and type, once per page.
    let Some((stream_pk, aggregate)) = conn
        .prepare_cached("SELECT stream_pk, aggregate_type FROM streams WHERE stream_id = ?1")
        .and_then(|mut q| {
            q.query_row([stream.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
        })
        .map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => {
                corrupt(format!("the row of stream `{stream}`: {e}"))
            }
            e => store_error(e),
        })?
    else {
        return Ok((0, false));
    };
    let sql = stream_sql(FOLD_COLUMNS, limit);
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let mut rows = query
        .query(rusqlite::params![stream.as_str(), to_i64(from), to_i64(to)])
        .map_err(store_error)?;
    let mut known_pk = Some(stream_pk);
    let mut read = 0;
    while let Some(row) = rows.next().map_err(store_error)? {
        read += 1;
        let columns = Columns::read(row, stream, Some(&mut known_pk), false)?;
        let event = EventRef {
            stream_id: stream,
            aggregate_type: &aggregate,
            version: columns.version,
            recorded_at: columns.recorded_at,
            name: columns.name,
            schema_version: columns.schema_version,
            payload: columns.payload,
        };
        if fold(event)?.is_break() {
            return Ok((read, true));
        }
    }
    Ok((read, false))
}

/// The columns of one event row, borrowed and checked: types, ranges, and
/// the checksum. A damaged or foreign row is an `Error::Corrupt` naming the
/// stream and version, never a panic.
struct Columns<'r> {
    version: u64,
    position: u64,
    event_id: Uuid,
    recorded_at: Timestamp,
    name: &'r str,
    schema_version: u32,
    payload: &'r [u8],
    metadata: Option<&'r [u8]>,
}

impl<'r> Columns<'r> {
    /// `same_stream` carries the stream key between the rows of one
    /// stream's page (they all share it: the query selects by it); `None`
    /// reads it from each row. The position is read when `position` is set.
    fn read(
        row: &'r Row<'_>,
        stream: &StreamId,
        same_stream: Option<&mut Option<i64>>,
        position: bool,
    ) -> Result<Self> {
        let version = integer(row, 0, "version")
            .map_err(|e| corrupt(format!("an event of stream `{stream}`: {e}")))?;
        let at = |what: &str| {
            corrupt(format!(
                "{what} of the event at version {version} of stream `{stream}`"
            ))
        };
        let position = if position {
            integer(row, 8, "position").map_err(|_| at("malformed position"))?
        } else {
            0
        };
        let ValueRef::Blob(event_id) = row.get_ref(1).map_err(store_error)? else {
            return Err(at("non-blob event id"));
        };
        let recorded_at = integer(row, 2, "recorded_at").map_err(|_| at("malformed time"))?;
        let ValueRef::Text(name) = row.get_ref(3).map_err(store_error)? else {
            return Err(at("non-text name"));
        };
        let schema_version =
            integer(row, 4, "schema_version").map_err(|_| at("malformed schema version"))?;
        let ValueRef::Text(payload) = row.get_ref(5).map_err(store_error)? else {
            return Err(at("non-text payload"));
        };
        let metadata = match row.get_ref(6).map_err(store_error)? {
            ValueRef::Null => None,
            ValueRef::Text(bytes) => Some(bytes),
            _ => return Err(at("non-text metadata")),
        };
        let read_pk = || integer(row, 9, "stream_pk").map_err(|_| at("malformed stream key"));
        let stream_pk = match same_stream {
            Some(Some(pk)) => *pk,
            Some(known) => *known.insert(read_pk()?),
            None => read_pk()?,
        };
        let stored = integer(row, 7, "checksum").map_err(|_| at("malformed checksum"))?;
        let computed = checksum::Row {
            stream_pk,
            version,
            event_id,
            recorded_at,
            name,
            schema_version,
            payload,
            metadata,
        }
        .checksum();
        if stored != computed {
            return Err(at("checksum mismatch: the stored bytes changed"));
        }
        Ok(Columns {
            version: u64::try_from(version).map_err(|_| at("negative version"))?,
            position: u64::try_from(position).map_err(|_| at("negative position"))?,
            event_id: Uuid::from_slice(event_id).map_err(|_| at("malformed event id"))?,
            recorded_at: Timestamp::from_unix_micros(recorded_at),
            name: std::str::from_utf8(name).map_err(|_| at("malformed name"))?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| at("schema version out of range"))?,
            payload,
            metadata,
        })
    }
}

/// One stored event, owned.
fn event(row: &Row<'_>, stream_id: StreamId, aggregate_type: Arc<str>) -> Result<RecordedEvent> {
    let c = Columns::read(row, &stream_id, None, true)?;
    let metadata = match c.metadata {
        None => Metadata::default(),
        Some(bytes) => Metadata::from_json(bytes).map_err(|_| {
            corrupt(format!(
                "malformed metadata of the event at version {} of stream `{stream_id}`",
                c.version
            ))
        })?,
    };
    Ok(RecordedEvent {
        aggregate_type,
        version: c.version,
        position: c.position,
        event_id: c.event_id,
        recorded_at: c.recorded_at,
        name: c.name.to_owned(),
        schema_version: c.schema_version,
        payload: c.payload.to_vec(),
        metadata,
        stream_id,
    })
}

#[inline]
fn integer(row: &Row<'_>, index: usize, column: &str) -> Result<i64> {
    match row.get_ref(index).map_err(store_error)? {
        ValueRef::Integer(n) => Ok(n),
        other => Err(corrupt(format!(
            "column `{column}` holds {:?}, not an integer",
            other.data_type()
        ))),
    }
}

fn text<'r>(row: &'r Row<'_>, index: usize, column: &str) -> Result<&'r str> {
    match row.get_ref(index).map_err(store_error)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| corrupt(format!("column `{column}` holds invalid UTF-8"))),
        other => Err(corrupt(format!(
            "column `{column}` holds {:?}, not text",
            other.data_type()
        ))),
    }
}

pub(crate) fn stream_version(conn: &Connection, stream: &StreamId) -> Result<u64> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM streams WHERE stream_id = ?1")
        .and_then(|mut q| q.query_row([stream.as_str()], |r| r.get(0)).optional())
        .map_err(store_error)?;
    u64::try_from(version.unwrap_or(0))
        .map_err(|_| corrupt(format!("negative version of stream `{stream}`")))
}

pub(crate) fn last_position(conn: &Connection) -> Result<u64> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT max(position) FROM events")
        .and_then(|mut q| q.query_row([], |r| r.get(0)))
        .map_err(store_error)?;
    u64::try_from(position.unwrap_or(0)).map_err(|_| corrupt("negative position"))
}

pub(crate) fn snapshot(conn: &Connection, stream: &StreamId) -> Result<Option<Snapshot>> {
    let row = conn
        .prepare_cached("SELECT aggregate_type, version, schema_version, state, taken_at FROM snapshots WHERE stream_id = ?1")
        .and_then(|mut q| {
            q.query_row([stream.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?, r.get::<_, i64>(4)?))
            })
            .optional()
        });
    // A damaged snapshot row is not an error: snapshots are only an
    // optimisation, and the caller falls back to the events.
    let row = match row {
        Ok(row) => row,
        Err(
            e @ (rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)),
        ) => {
            tracing::warn!(%stream, error = %e, "ignoring a malformed snapshot row");
            return Ok(None);
        }
        Err(e) => return Err(store_error(e)),
    };
    Ok(row.and_then(
        |(aggregate_type, version, schema_version, state, taken_at)| {
            Some(Snapshot {
                stream_id: stream.clone(),
                aggregate_type,
                version: u64::try_from(version).ok()?,
                schema_version: u32::try_from(schema_version).ok()?,
                state,
                taken_at: Timestamp::from_unix_micros(taken_at),
            })
        },
    ))
}

pub(crate) fn checkpoint(conn: &Connection, name: &str) -> Result<Option<u64>> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT position FROM checkpoints WHERE name = ?1")
        .and_then(|mut q| q.query_row([name], |r| r.get(0)).optional())
        .map_err(store_error)?;
    position
        .map(|p| u64::try_from(p).map_err(|_| corrupt(format!("negative checkpoint of `{name}`"))))
        .transpose()
}
