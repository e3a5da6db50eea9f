//! Reading what still reads from a damaged file: every position of `$all`,
//! one after another, each either an event that reads back whole or the
//! damage found there, past every damaged row and page.
//!
//! Ordinary reads stop at the first damage (a page of events is one
//! statement, and a damaged row fails it); a salvage does not. It scans the
//! log in position order with one statement, as long as SQLite can step
//! it: a row that fails its checksum, or has a column of a type it cannot
//! have, is reported and skipped. When SQLite cannot read on
//! (`SQLITE_CORRUPT`), the position where the scan stopped is looked up
//! alone, reported unreadable when that fails too, and a new scan starts
//! after it. A position the scan passes over is looked up alone too, and
//! reported missing when no row holds it (the log has no gaps). One scan
//! for as long as it steps, rather than a statement per page: a damaged
//! key in an interior page can make a lookup (a new statement's start)
//! fail in a range of positions that a scan still reads.
//!
//! The checksum does not cover the position (the row's key), and a damaged
//! key can put an intact event at another position. So an event is served
//! only at a position one of the two indexes that hold it (stream and
//! version; event id) confirms; a row the scan meets out of order, or after
//! a jump, whose position no index confirms, is set aside (counted in
//! [`SalvageReport::misplaced`]) and its positions are looked up alone.
//!
//! The rows of `streams` carry no checksum of their own, so each stream's
//! row is checked before its events are trusted: its id must be a valid
//! stream id, the stream-id index must lead back to the same row, and its
//! aggregate type must be one the `event_types` summary holds. The events
//! of a stream whose row fails are reported, not served under a name they
//! may not have.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use es_core::{Error, RecordedEvent, Result, StreamId};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use crate::error::store_error;
use crate::events::{self, EVENT_COLUMNS, to_i64};

/// What a salvage found at one position of `$all`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// Nearly every item is an event: boxing it would cost an allocation per
// event to save space on the rare damaged one.
#[allow(clippy::large_enum_variant)]
pub enum Salvaged {
    /// An event that reads back whole: its row's checksum holds, and its
    /// stream's row agrees with the stream-id index and the stored types.
    /// Personal fields stay sealed, as stored.
    Event(RecordedEvent),
    /// A position whose event does not read back.
    Damaged(DamagedEvent),
}

impl Salvaged {
    /// The position in `$all`.
    pub fn position(&self) -> u64 {
        match self {
            Salvaged::Event(event) => event.position,
            Salvaged::Damaged(damaged) => damaged.position,
        }
    }
}

/// A position of `$all` whose event does not read back, and what is known
/// of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedEvent {
    /// The position.
    pub position: u64,
    /// The stream the damaged row names, when the row and its stream's row
    /// read; for a row that cannot be read, the stream the index on
    /// (stream, version) names for the position, when it does: as stored,
    /// not verified.
    pub stream: Option<String>,
    /// The version the damaged row holds, or the index names, likewise.
    pub version: Option<u64>,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What was found, in words.
    pub detail: String,
}

/// What kind of damage a salvage found at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DamageKind {
    /// The row reads, but its checksum does not hold, or a column holds a
    /// type or value it cannot have (or the row is out of order).
    Row,
    /// The row reads, but its stream's row does not read, or disagrees
    /// with the stream-id index or with the stored aggregate types.
    Stream,
    /// SQLite cannot read the row: the page it is on is damaged.
    Unreadable,
    /// No row holds this position, though the log has no gaps: a damaged
    /// page lost it.
    Missing,
}

impl DamageKind {
    /// A word for it, as `es verify` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Row => "row",
            DamageKind::Stream => "stream",
            DamageKind::Unreadable => "unreadable",
            DamageKind::Missing => "missing",
        }
    }
}

impl std::fmt::Display for DamageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a salvage ([`SqliteStore::salvage`](crate::SqliteStore::salvage))
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The last position the log should hold: the number of events the
    /// `event_types` summary counts (positions have no gaps), or, when it
    /// cannot be read, the largest position stored.
    pub end: u64,
    /// The first position not looked at: `end + 1` (or more) once every
    /// position was, less when the callback stopped the salvage.
    pub next: u64,
    /// How many items were events.
    pub events: u64,
    /// How many items were damage.
    pub damaged: u64,
    /// Rows met out of order, or after a jump, whose position no index
    /// confirms (their key is damaged): set aside, not given as items.
    pub misplaced: u64,
}

impl SalvageReport {
    /// Whether every position up to the end was looked at.
    pub fn is_complete(&self) -> bool {
        self.next > self.end
    }
}

/// A stream's row as the salvage found it: verified, or what is wrong.
type StreamRow = std::result::Result<(StreamId, Arc<str>), (Option<String>, String)>;

/// What a salvage keeps while it reads.
struct Scan<'c, 'f> {
    conn: &'c Connection,
    /// The aggregate types of the `event_types` summary, when it reads.
    types: Option<HashSet<String>>,
    streams: HashMap<i64, StreamRow>,
    each: &'f mut dyn FnMut(Salvaged) -> ControlFlow<()>,
    stopped: bool,
    events: u64,
    damaged: u64,
    misplaced: u64,
    /// Each position the stream-and-version index holds, with its stream
    /// key and version, sorted: read once, at the first position whose
    /// row cannot be read (`None` until then).
    index: Option<Vec<(i64, i64, i64)>>,
    /// The next position expected.
    next: u64,
    end: u64,
}

/// The salvage from position `from`, in one read transaction: each item
/// to `each`, until it breaks or the log ends.
pub(crate) fn run(
    conn: &Connection,
    from: u64,
    each: &mut dyn FnMut(Salvaged) -> ControlFlow<()>,
) -> Result<SalvageReport> {
    let snapshot = conn.unchecked_transaction().map_err(store_error)?;
    let end = log_end(&snapshot)?;
    let mut scan = Scan {
        conn: &snapshot,
        types: aggregate_types(&snapshot),
        streams: HashMap::new(),
        each,
        stopped: false,
        events: 0,
        damaged: 0,
        misplaced: 0,
        index: None,
        next: from.max(1),
        end,
    };
    while !scan.stopped && scan.next <= scan.end {
        match scan.scan() {
            // The table ends before the log should: what is left, one
            // position at a time.
            Ok(()) => {
                while !scan.stopped && scan.next <= scan.end {
                    scan.alone();
                }
            }
            // SQLite cannot read on: the position alone, then a new scan.
            Err(_) => scan.alone(),
        }
    }
    let report = SalvageReport {
        end,
        next: scan.next,
        events: scan.events,
        damaged: scan.damaged,
        misplaced: scan.misplaced,
    };
    drop(snapshot.finish());
    Ok(report)
}

/// Where the log should end (see [`SalvageReport::end`]): the count of
/// events in the `event_types` summary, which positions (1 to the last,
/// without gaps) equal. When the largest stored position is larger, one of
/// the two is damaged: a damaged summary when the position after the count
/// holds a row (or cannot be read), else a damaged row's position.
fn log_end(conn: &Connection) -> Result<u64> {
    let number = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .map(|n| n.unwrap_or(0).max(0))
    };
    let counted = number("SELECT sum(count) FROM event_types");
    let largest = number("SELECT max(position) FROM events");
    let end = match (counted, largest) {
        (Some(counted), Some(largest)) if largest > counted => {
            let after = conn
                .query_row(
                    "SELECT position FROM events WHERE position = ?1",
                    [counted.saturating_add(1)],
                    |r| r.get::<_, i64>(0),
                )
                .optional();
            if matches!(after, Ok(None)) {
                counted
            } else {
                largest
            }
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            return Err(crate::error::corrupt(
                "neither the event_types summary nor the events table says where the log ends",
            ));
        }
    };
    Ok(u64::try_from(end).unwrap_or(0))
}

fn aggregate_types(conn: &Connection) -> Option<HashSet<String>> {
    let mut query = conn
        .prepare("SELECT DISTINCT aggregate_type FROM event_types")
        .ok()?;
    let rows = query.query_map([], |r| r.get::<_, String>(0)).ok()?;
    rows.collect::<rusqlite::Result<_>>().ok()
}

impl Scan<'_, '_> {
    /// Scans from the expected position for as long as SQLite can step;
    /// `Err` when it cannot read on (what is left to [`Scan::alone`]).
    fn scan(&mut self) -> rusqlite::Result<()> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.position >= ?1 ORDER BY e.position"
        );
        let conn = self.conn;
        let mut query = conn.prepare_cached(&sql)?;
        let mut rows = query.query([to_i64(self.next)])?;
        while !self.stopped {
            let Some(row) = rows.next()? else {
                return Ok(());
            };
            self.row(row);
        }
        Ok(())
    }

    /// The expected position alone: its row, unreadable, or missing.
    fn alone(&mut self) {
        let position = self.next;
        self.next = position.saturating_add(1);
        self.lookup(position);
    }

    /// Looks `position` up by itself.
    fn lookup(&mut self, position: u64) {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.position = ?1");
        let conn = self.conn;
        let found = conn.prepare_cached(&sql).and_then(|mut query| {
            query
                .query_row([to_i64(position)], |row| {
                    self.item(row, position);
                    Ok(())
                })
                .optional()
        });
        match found {
            Ok(Some(())) => {}
            Ok(None) => {
                let (stream, version) = self.indexed(position);
                self.damaged(
                    position,
                    stream,
                    version,
                    DamageKind::Missing,
                    "no row holds it",
                );
            }
            Err(e) => {
                let detail = format!("SQLite cannot read it: {e}");
                let (stream, version) = self.indexed(position);
                self.damaged(position, stream, version, DamageKind::Unreadable, &detail);
            }
        }
    }

    /// A row of the scan: the positions it passed over are looked up
    /// alone; then its event, or what is wrong with it.
    fn row(&mut self, row: &rusqlite::Row<'_>) {
        let position = match row.get_ref(9) {
            Ok(ValueRef::Integer(at)) => u64::try_from(at).ok(),
            _ => None,
        };
        let Some(position) = position else {
            let detail = "a row whose position is not a positive integer";
            self.damaged(self.next, None, None, DamageKind::Row, detail);
            return;
        };
        // Out of order, or after a jump that no index confirms: a damaged
        // key. Its own position, if it has one, is looked up alone.
        if position < self.next || (position > self.next && !confirmed(self.conn, row, position)) {
            self.misplaced += 1;
            return;
        }
        let passed = self.next..position.min(self.end.saturating_add(1));
        self.next = position.saturating_add(1);
        for skipped in passed {
            if self.stopped {
                return;
            }
            self.lookup(skipped);
        }
        if !self.stopped {
            self.item(row, position);
        }
    }

    /// The stream and version the stream-and-version index holds for a
    /// position whose row cannot be read, when it does.
    fn indexed(&mut self, position: u64) -> (Option<String>, Option<u64>) {
        let conn = self.conn;
        let index = self.index.get_or_insert_with(|| read_index(conn));
        let Ok(at) = index.binary_search_by_key(&to_i64(position), |&(p, _, _)| p) else {
            return (None, None);
        };
        let (_, pk, version) = index[at];
        let stream = match self.stream(pk) {
            Ok((id, _)) => Some(id.to_string()),
            Err((id, _)) => id.clone(),
        };
        (stream, u64::try_from(version).ok())
    }

    /// The stream and version a row names, as stored.
    fn named(&mut self, row: &rusqlite::Row<'_>) -> (Option<String>, Option<u64>) {
        let version = match row.get_ref(0) {
            Ok(ValueRef::Integer(v)) => u64::try_from(v).ok(),
            _ => None,
        };
        let stream = match row.get_ref(10) {
            Ok(ValueRef::Integer(pk)) => match self.stream(pk) {
                Ok((id, _)) => Some(id.to_string()),
                Err((id, _)) => id.clone(),
            },
            _ => None,
        };
        (stream, version)
    }

    /// The event of the row at `position`, or what is wrong with it.
    fn item(&mut self, row: &rusqlite::Row<'_>, position: u64) {
        let stream = match row.get_ref(10) {
            Ok(ValueRef::Integer(pk)) => Some(self.stream(pk).clone()),
            _ => None,
        };
        let decoded = match stream {
            None => Err((
                DamageKind::Row,
                "a row whose stream key is not an integer".to_owned(),
            )),
            Some(Err((_, why))) => Err((DamageKind::Stream, why)),
            Some(Ok((id, aggregate))) => match events::event(row, id, aggregate) {
                Ok(event) if confirmed(self.conn, row, position) => Ok(event),
                Ok(_) => Err((
                    DamageKind::Row,
                    format!(
                        "neither index that holds the event places it at position {position}: \
                         its key or the indexes are damaged"
                    ),
                )),
                Err(Error::Corrupt { detail }) => Err((DamageKind::Row, detail)),
                Err(other) => Err((DamageKind::Unreadable, other.to_string())),
            },
        };
        match decoded {
            Ok(event) => {
                self.events += 1;
                self.emit(Salvaged::Event(event));
            }
            Err((kind, detail)) => {
                let (stream, version) = self.named(row);
                self.damaged(position, stream, version, kind, &detail);
            }
        }
    }

    /// The stream with key `pk`, checked once.
    fn stream(&mut self, pk: i64) -> &StreamRow {
        if !self.streams.contains_key(&pk) {
            let checked = check_stream(self.conn, pk, self.types.as_ref());
            self.streams.insert(pk, checked);
        }
        &self.streams[&pk]
    }

    fn damaged(
        &mut self,
        position: u64,
        stream: Option<String>,
        version: Option<u64>,
        kind: DamageKind,
        detail: &str,
    ) {
        self.damaged += 1;
        self.emit(Salvaged::Damaged(DamagedEvent {
            position,
            stream,
            version,
            kind,
            detail: detail.to_owned(),
        }));
    }

    fn emit(&mut self, item: Salvaged) {
        if !self.stopped && (self.each)(item).is_break() {
            self.stopped = true;
        }
    }
}

/// The most entries of the stream-and-version index read to name the
/// streams and versions of rows that cannot be read (24 bytes each).
const INDEX_ENTRIES: usize = 4_000_000;

/// (position, stream key, version) of every entry of the index on
/// (stream key, version), sorted by position, as far as it can be read;
/// nothing when it holds more than [`INDEX_ENTRIES`]. A covering scan of
/// the index: the table's pages are not read.
fn read_index(conn: &Connection) -> Vec<(i64, i64, i64)> {
    let mut entries = Vec::new();
    let scanned = conn
        .prepare(
            "SELECT position, stream_pk, version FROM events \
             WHERE stream_pk >= -9223372036854775808 ORDER BY stream_pk, version",
        )
        .and_then(|mut query| {
            let mut rows = query.query([])?;
            while let Some(row) = rows.next()? {
                if entries.len() == INDEX_ENTRIES {
                    entries.clear();
                    break;
                }
                entries.push((row.get(0)?, row.get(1)?, row.get(2)?));
            }
            Ok(())
        });
    if let Err(e) = scanned {
        tracing::debug!(error = %e, read = entries.len(), "the stream-and-version index reads only in part");
    }
    entries.sort_unstable();
    entries
}

/// Whether an index confirms that the event of `row` (its stream key and
/// version; its event id, as the row holds them) is at `position`: the
/// row's key is not covered by its checksum.
fn confirmed(conn: &Connection, row: &rusqlite::Row<'_>, position: u64) -> bool {
    let expected = Some(to_i64(position));
    let at = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(sql)
            .and_then(|mut q| q.query_row(params, |r| r.get::<_, i64>(0)).optional())
            .ok()
            .flatten()
    };
    if let (Ok(ValueRef::Integer(pk)), Ok(ValueRef::Integer(version))) =
        (row.get_ref(10), row.get_ref(0))
        && at(
            "SELECT position FROM events WHERE stream_pk = ?1 AND version = ?2",
            &[&pk, &version],
        ) == expected
    {
        return true;
    }
    if let Ok(ValueRef::Blob(id)) = row.get_ref(1) {
        return at("SELECT position FROM events WHERE event_id = ?1", &[&id]) == expected;
    }
    false
}

/// A stream's row, trusted only when the stream-id index leads back to it
/// and its aggregate type is a stored one.
fn check_stream(conn: &Connection, pk: i64, types: Option<&HashSet<String>>) -> StreamRow {
    let row = conn
        .query_row(
            "SELECT stream_id, aggregate_type FROM streams WHERE stream_pk = ?1",
            [pk],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional();
    let (id, aggregate) = match row {
        Ok(Some(row)) => row,
        Ok(None) => return Err((None, format!("no row of `streams` has its key {pk}"))),
        Err(e) => return Err((None, format!("its stream's row does not read: {e}"))),
    };
    let stream = StreamId::new(&id).map_err(|e| {
        (
            Some(id.clone()),
            format!("its stream's row holds {id:?}: {e}"),
        )
    })?;
    let indexed: rusqlite::Result<Option<i64>> = conn
        .query_row(
            "SELECT stream_pk FROM streams WHERE stream_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .optional();
    if indexed.as_ref().ok() != Some(&Some(pk)) {
        return Err((
            Some(id.clone()),
            format!("its stream's row (`{id}`) and the stream-id index disagree"),
        ));
    }
    if types.is_some_and(|types| !types.contains(&aggregate)) {
        return Err((
            Some(id.clone()),
            format!(
                "its stream's row (`{id}`) holds aggregate type {aggregate:?}, which no stored event type has"
            ),
        ));
    }
    Ok((stream, Arc::from(aggregate)))
}
