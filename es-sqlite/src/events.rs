//! Reading events: pages of a stream or of `$all`, folds straight from the
//! row buffers, a stream's version, the last position. Every read checks
//! what it reads (types, ranges, the checksum): a damaged or foreign row is
//! an `Error::Corrupt` naming the stream and version, never a panic.

use es_core::privacy::{FORGOTTEN_EVENT, Keys, SUBJECT_AGGREGATE};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use es_core::{
    Error, EventRef, Metadata, Payload, RecordedEvent, Result, StreamId, Timestamp, Uuid,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

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
    /// Events from position `from` of the business transaction
    /// `correlation` (see `EventStore::read_correlated`).
    Correlated { correlation: Uuid, from: u64 },
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
            Page::Correlated { correlation, from } => {
                correlated_page(conn, *correlation, *from, limit, &mut events)
            }
        }
        .err();
        PageRead { events, error }
    }
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns `Columns::read` reads, in order. A fold selects the first
/// nine only: it knows the stream key, and needs no position.
pub(crate) const EVENT_COLUMNS: &str = "e.version, e.event_id, e.recorded_at, e.occurred_at, e.name, \
                             e.schema_version, e.payload, e.metadata, e.checksum, e.position, e.stream_pk";
const FOLD_COLUMNS: &str = "e.version, e.event_id, e.recorded_at, e.occurred_at, e.name, \
                            e.schema_version, e.payload, e.metadata, e.checksum";
/// Where the columns after `EVENT_COLUMNS` start.
const EXTRA: usize = 11;

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
                .insert(Arc::from(text(row, EXTRA, "aggregate_type")?))
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
    let rows = query.query([to_i64(from)]).map_err(store_error)?;
    all_rows(rows, page, None)
}

/// Up to `limit` events from position `from` of the transaction
/// `correlation`: the event whose id it is, and those whose metadata names
/// it as their correlation id. The schema has no index on correlation ids,
/// so this reads every row from `from`; a row's metadata is parsed only
/// when its text holds the id, and only the rows that match are decoded.
fn correlated_page(
    conn: &Connection,
    correlation: Uuid,
    from: u64,
    limit: usize,
    page: &mut Vec<RecordedEvent>,
) -> Result<()> {
    // Metadata that is not valid JSON (a damaged row) is never taken: the
    // query would fail on it, and a read of that row reports it.
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, s.aggregate_type, s.stream_id FROM events e \
         JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.position >= ?1 \
         AND (e.event_id = ?2 OR (instr(e.metadata, ?3) > 0 AND json_valid(e.metadata) \
         AND json_extract(e.metadata, '$.correlation_id') = ?3)) \
         ORDER BY e.position LIMIT {limit}"
    );
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let id = correlation.to_string();
    let rows = query
        .query(rusqlite::params![
            to_i64(from),
            &correlation.as_bytes()[..],
            id
        ])
        .map_err(store_error)?;
    // Opened where the stream hands the events out.
    all_rows(rows, page, None)
}

/// The event with id `event_id`, found by the unique index on event ids.
pub(crate) fn by_id(
    conn: &Connection,
    keys: Option<&Keys>,
    event_id: Uuid,
) -> Result<Option<RecordedEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, s.aggregate_type, s.stream_id FROM events e \
         JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.event_id = ?1"
    );
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let rows = query
        .query([&event_id.as_bytes()[..]])
        .map_err(store_error)?;
    let mut found = Vec::with_capacity(1);
    all_rows(rows, &mut found, keys)?;
    Ok(found.pop())
}

/// What [`named_page`] read: the events, and how far it looked.
pub(crate) struct NamedPage {
    /// The events, in position order.
    pub(crate) events: Vec<RecordedEvent>,
    /// Every event up to this position was looked at: the last event's
    /// position when the page is full, else the head.
    pub(crate) scanned_to: u64,
    /// The last position of the log, in the same read transaction.
    pub(crate) head: u64,
}

/// Which events a projection takes: its event names, and, when it lists
/// any, its aggregate types ([`Projection::takes`](es_core::Projection::takes));
/// and every `es.subject-forgotten` event, whatever the projection lists,
/// so that a read model's runner sees each forgetting.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    names: Vec<&'static str>,
    aggregates: Vec<&'static str>,
    /// The query, written once.
    sql: String,
}

impl Filter {
    /// The events `P` takes, and the stored ones raw upcasters may turn
    /// into them (a superset: the runner checks `P::takes` on what each
    /// stored event becomes).
    pub(crate) fn of<P: es_core::Projection>() -> Self {
        let mut names = P::event_names();
        let mut aggregates = P::AGGREGATES.to_vec();
        for (aggregate, name) in es_core::upcast::stored_sources(&names.clone()) {
            if !names.contains(&name) {
                names.push(name);
            }
            if !aggregates.is_empty() && !aggregates.contains(&aggregate) {
                aggregates.push(aggregate);
            }
        }
        let list = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The names first, alone: SQLite tests them before it looks up the
        // event's stream, so the events of other names cost no lookup. The
        // forgettings are our own constants, written as SQL strings.
        let names_list = list(4, names.len());
        let with_forgotten = if names.is_empty() {
            format!("'{FORGOTTEN_EVENT}'")
        } else {
            format!("{names_list}, '{FORGOTTEN_EVENT}'")
        };
        let of_aggregates = if aggregates.is_empty() {
            String::new()
        } else {
            format!(
                " AND s.aggregate_type IN ({})",
                list(4 + names.len(), aggregates.len())
            )
        };
        // ?3 is the limit: -1 for none.
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, s.aggregate_type, s.stream_id FROM events e \
             JOIN streams s ON s.stream_pk = e.stream_pk \
             WHERE e.position > ?1 AND e.position <= ?2 \
             AND e.name IN ({with_forgotten}) \
             AND ((e.name IN ({names_list}){of_aggregates}) \
             OR (e.name = '{FORGOTTEN_EVENT}' AND s.aggregate_type = '{SUBJECT_AGGREGATE}')) \
             ORDER BY e.position LIMIT ?3"
        );
        Filter {
            names,
            aggregates,
            sql,
        }
    }
}

/// Up to `limit` events after position `after` that `filter` takes, in
/// one read transaction. Events it does not take are skipped by the query
/// itself: their payloads are never decoded, nor read when they overflow
/// the row's page.
pub(crate) fn named_page(
    conn: &Connection,
    keys: Option<&Keys>,
    after: u64,
    filter: &Filter,
    limit: usize,
) -> Result<NamedPage> {
    // The head and the rows in one snapshot: everything up to the head that
    // the query does not return is an event the filter does not take.
    let snapshot = conn.unchecked_transaction().map_err(store_error)?;
    let head = last_position(&snapshot)?;
    let events = named_rows(&snapshot, keys, after, head, filter, limit)?;
    snapshot.finish().map_err(store_error)?;
    let scanned_to = match events.last() {
        Some(last) if events.len() >= limit => last.position,
        _ => head.max(after),
    };
    Ok(NamedPage {
        events,
        scanned_to,
        head,
    })
}

/// Up to `limit` events with positions in `after + 1..=upto` that `filter`
/// takes, in position order, read in the caller's transaction.
pub(crate) fn named_rows(
    conn: &Connection,
    keys: Option<&Keys>,
    after: u64,
    upto: u64,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<RecordedEvent>> {
    let (after, upto) = (to_i64(after), to_i64(upto));
    // -1: no limit, for a number past SQLite's integers.
    let limit_param = i64::try_from(limit).unwrap_or(-1);
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&after, &upto, &limit_param];
    for name in &filter.names {
        params.push(name);
    }
    for aggregate in &filter.aggregates {
        params.push(aggregate);
    }
    let mut events = Vec::with_capacity(limit.min(256));
    let mut query = conn.prepare_cached(&filter.sql).map_err(store_error)?;
    let rows = query.query(params.as_slice()).map_err(store_error)?;
    all_rows(rows, &mut events, keys)?;
    Ok(events)
}

/// The position of the first `es.subject-forgotten` event at or before
/// `upto`, if there is one.
pub(crate) fn first_forgetting(conn: &Connection, upto: u64) -> Result<Option<u64>> {
    let position: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT min(e.position) FROM events e JOIN streams s ON s.stream_pk = e.stream_pk \
             WHERE s.aggregate_type = '{SUBJECT_AGGREGATE}' AND e.name = '{FORGOTTEN_EVENT}' \
             AND e.position <= ?1"
        ))
        .and_then(|mut q| q.query_row([to_i64(upto)], |r| r.get(0)))
        .map_err(store_error)?;
    Ok(position.and_then(|p| u64::try_from(p).ok()))
}

/// The event at `position`, if there is one.
pub(crate) fn at_position(
    conn: &Connection,
    keys: Option<&Keys>,
    position: u64,
) -> Result<Option<RecordedEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, s.aggregate_type, s.stream_id FROM events e \
         JOIN streams s ON s.stream_pk = e.stream_pk WHERE e.position = ?1"
    );
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let rows = query.query([to_i64(position)]).map_err(store_error)?;
    let mut found = Vec::with_capacity(1);
    all_rows(rows, &mut found, keys)?;
    Ok(found.pop())
}

/// The rows of an `$all` query: the event columns, then the aggregate type
/// and the stream id; personal fields opened with `keys` when given.
fn all_rows(
    mut rows: rusqlite::Rows<'_>,
    page: &mut Vec<RecordedEvent>,
    keys: Option<&Keys>,
) -> Result<()> {
    let mut streams: HashMap<i64, (StreamId, Arc<str>)> = HashMap::new();
    while let Some(row) = rows.next().map_err(store_error)? {
        let pk = integer(row, 10, "stream_pk")?;
        let (stream, aggregate) = if let Some(known) = streams.get(&pk) {
            known.clone()
        } else {
            let id = text(row, EXTRA + 1, "stream_id")?;
            let stream =
                StreamId::new(id).map_err(|e| corrupt(format!("stored stream id {id:?}: {e}")))?;
            let entry = (stream, Arc::from(text(row, EXTRA, "aggregate_type")?));
            streams.insert(pk, entry.clone());
            entry
        };
        let mut event = event(row, stream, aggregate)?;
        if let Some(keys) = keys {
            keys.open_event(&mut event)?;
        }
        page.push(event);
    }
    Ok(())
}

/// Calls `fold` with up to `limit` events of `stream` from version `from`
/// (at most `to`), borrowed from the row buffers: nothing is allocated per
/// event. Returns how many events were read, and whether `fold` stopped.
pub(crate) fn fold_page<F>(
    conn: &Connection,
    keys: Option<&Keys>,
    stream: &StreamId,
    from: u64,
    to: u64,
    limit: usize,
    fold: &mut F,
) -> Result<(usize, bool)>
where
    F: FnMut(EventRef<'_>) -> Result<ControlFlow<()>>,
{
    // One statement, so one read transaction: a read transaction that
    // starts after a commit discards the connection's page cache, so every
    // statement more would read the pages again. The stream's key and type
    // are uncorrelated subqueries: SQLite evaluates them once.
    let columns = format!(
        "{FOLD_COLUMNS}, (SELECT stream_pk FROM streams WHERE stream_id = ?1), \
         (SELECT aggregate_type FROM streams WHERE stream_id = ?1)"
    );
    let sql = stream_sql(&columns, limit);
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let mut rows = query
        .query(rusqlite::params![stream.as_str(), to_i64(from), to_i64(to)])
        .map_err(store_error)?;
    let mut read = 0;
    while let Some(row) = rows.next().map_err(store_error)? {
        read += 1;
        let stream_pk = integer(row, 9, "stream_pk")?;
        let aggregate = text(row, 10, "aggregate_type")
            .map_err(|e| corrupt(format!("the row of stream `{stream}`: {e}")))?;
        let columns = Columns::read(row, stream, Some(stream_pk), false)?;
        // Personal fields are opened into an owned payload; every other
        // event is still read from the row's buffer.
        let opened = match keys {
            Some(keys) => keys.open(columns.payload, stream, columns.event_id)?,
            None => None,
        };
        let event = EventRef {
            stream_id: stream,
            aggregate_type: aggregate,
            version: columns.version,
            recorded_at: columns.recorded_at,
            occurred_at: columns.occurred_at,
            name: columns.name,
            schema_version: columns.schema_version,
            payload: opened.as_deref().unwrap_or(columns.payload),
        };
        if fold(event)?.is_break() {
            return Ok((read, true));
        }
    }
    Ok((read, false))
}

/// The columns of one event row, borrowed and checked: types, ranges, and
/// the checksum.
struct Columns<'r> {
    version: u64,
    position: u64,
    event_id: Uuid,
    recorded_at: Timestamp,
    occurred_at: Timestamp,
    name: &'r str,
    schema_version: u32,
    payload: &'r str,
    metadata: Option<&'r [u8]>,
}

impl<'r> Columns<'r> {
    /// `stream_pk` is the stream key when the caller knows it (all rows of a
    /// stream's page share it: the query selects by it); `None` reads it
    /// from the row. The position is read when `position` is set.
    fn read(
        row: &'r Row<'_>,
        stream: &StreamId,
        stream_pk: Option<i64>,
        position: bool,
    ) -> Result<Self> {
        let version = integer(row, 0, "version")
            .map_err(|e| corrupt(format!("an event of stream `{stream}`: {e}")))?;
        let at = |what: &str| {
            corrupt(format!(
                "{what} of the event at version {version} of stream `{stream}`"
            ))
        };
        let ValueRef::Blob(event_id) = row.get_ref(1).map_err(store_error)? else {
            return Err(at("non-blob event id"));
        };
        let recorded_at = integer(row, 2, "recorded_at").map_err(|_| at("malformed time"))?;
        let occurred_at = match row.get_ref(3).map_err(store_error)? {
            ValueRef::Null => None,
            ValueRef::Integer(t) => Some(t),
            _ => return Err(at("malformed occurred-at time")),
        };
        let ValueRef::Text(name) = row.get_ref(4).map_err(store_error)? else {
            return Err(at("non-text name"));
        };
        let schema_version =
            integer(row, 5, "schema_version").map_err(|_| at("malformed schema version"))?;
        let ValueRef::Text(payload) = row.get_ref(6).map_err(store_error)? else {
            return Err(at("non-text payload"));
        };
        let metadata = match row.get_ref(7).map_err(store_error)? {
            ValueRef::Null => None,
            ValueRef::Text(bytes) => Some(bytes),
            _ => return Err(at("non-text metadata")),
        };
        let stored = integer(row, 8, "checksum").map_err(|_| at("malformed checksum"))?;
        let position = if position {
            integer(row, 9, "position").map_err(|_| at("malformed position"))?
        } else {
            0
        };
        let stream_pk = match stream_pk {
            Some(pk) => pk,
            None => integer(row, 10, "stream_pk").map_err(|_| at("malformed stream key"))?,
        };
        let computed = checksum::Row {
            stream_pk,
            version,
            event_id,
            recorded_at,
            occurred_at,
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
            occurred_at: Timestamp::from_unix_micros(occurred_at.unwrap_or(recorded_at)),
            name: std::str::from_utf8(name).map_err(|_| at("malformed name"))?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| at("schema version out of range"))?,
            payload: std::str::from_utf8(payload).map_err(|_| at("payload not UTF-8"))?,
            metadata,
        })
    }
}

/// One stored event, owned.
pub(crate) fn event(
    row: &Row<'_>,
    stream_id: StreamId,
    aggregate_type: Arc<str>,
) -> Result<RecordedEvent> {
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
        occurred_at: c.occurred_at,
        name: c.name.to_owned(),
        schema_version: c.schema_version,
        event: Payload::from(c.payload),
        metadata,
        stream_id,
    })
}

#[inline]
pub(crate) fn integer(row: &Row<'_>, index: usize, column: &str) -> Result<i64> {
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

/// The stream's last version, read from the (stream key, version) index.
pub(crate) const STREAM_VERSION_SQL: &str = "SELECT coalesce(max(version), 0) FROM events \
     WHERE stream_pk = (SELECT stream_pk FROM streams WHERE stream_id = ?1)";

pub(crate) fn stream_version(conn: &Connection, stream: &StreamId) -> Result<u64> {
    let version: i64 = conn
        .prepare_cached(STREAM_VERSION_SQL)
        .and_then(|mut q| q.query_row([stream.as_str()], |r| r.get(0)))
        .map_err(store_error)?;
    u64::try_from(version).map_err(|_| corrupt(format!("negative version of stream `{stream}`")))
}

pub(crate) fn last_position(conn: &Connection) -> Result<u64> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT max(position) FROM events")
        .and_then(|mut q| q.query_row([], |r| r.get(0)))
        .map_err(store_error)?;
    u64::try_from(position.unwrap_or(0)).map_err(|_| corrupt("negative position"))
}

/// The `event_types` summary: every stored (aggregate type, name, schema
/// version) and its count, sorted.
pub(crate) fn event_types(conn: &Connection) -> Result<Vec<es_core::StoredEventType>> {
    let mut query = conn
        .prepare_cached(
            "SELECT aggregate_type, name, schema_version, count FROM event_types \
             ORDER BY aggregate_type, name, schema_version",
        )
        .map_err(store_error)?;
    let rows = query
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(store_error)?;
    let mut types = Vec::new();
    for row in rows {
        let (aggregate_type, name, version, count) = row.map_err(store_error)?;
        let (Ok(schema_version), Ok(count)) = (u32::try_from(version), u64::try_from(count)) else {
            return Err(corrupt(format!(
                "event_types holds `{name}` version {version} with count {count}"
            )));
        };
        types.push(es_core::StoredEventType {
            aggregate_type,
            name,
            schema_version,
            count,
        });
    }
    types.sort();
    Ok(types)
}
