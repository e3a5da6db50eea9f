//! The audit chain (schema 5): every stored event carries a SHA-256 hash of
//! its stored bytes and of the hash of the event before it in `$all`
//! order, so an edited, deleted, inserted or reordered row breaks the
//! chain at a position [`SqliteStore::verify_chain`] names.
//!
#![doc = include_str!("chain_format.md")]
//!
//! [`SqliteStore::verify_chain`]: crate::SqliteStore::verify_chain

use std::fmt;
use std::str::FromStr;

use es_core::Error;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

use crate::error::{corrupt, store_error};

/// The first 16 bytes of every hashed input: the format and its version.
const TAG: &[u8; 16] = b"es-audit-chain/1";

/// The rows a verification reads per statement (one short read
/// transaction each).
const PAGE: i64 = 1024;

/// A SHA-256 hash of the audit chain: 32 bytes, shown as 64 lowercase
/// hexadecimal digits.
///
/// ```
/// use es_sqlite::ChainHash;
///
/// let genesis: ChainHash = "00".repeat(32).parse()?;
/// assert_eq!(genesis, ChainHash::GENESIS);
/// assert_eq!(genesis.to_string(), "0".repeat(64));
/// # Ok::<(), es_sqlite::ParseChainError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What the first event chains from: 32 zero bytes (no input is known
    /// whose SHA-256 this is).
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        // Only ASCII digits were written.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl FromStr for ChainHash {
    type Err = ParseChainError;

    /// Parses 64 hexadecimal digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(ParseChainError::HashLength(digits.len()));
        }
        let value = |d: u8| match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            b'A'..=b'F' => Some(d - b'A' + 10),
            _ => None,
        };
        let mut hash = [0u8; 32];
        for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(high), Some(low)) = (value(pair[0]), value(pair[1])) else {
                return Err(ParseChainError::NotHex);
            };
            *byte = high << 4 | low;
        }
        Ok(ChainHash(hash))
    }
}

/// The last event of the chain, or of the part of it verified: its
/// position and its hash. Position 0 with [`ChainHash::GENESIS`] is the
/// head of an empty store.
///
/// An auditor keeps a head somewhere the store's writers cannot change,
/// and later checks it with [`verify_chain_to`]. Shown and parsed as
/// `POSITION:HASH`.
///
/// ```
/// use es_sqlite::{ChainHash, ChainHead};
///
/// let head = ChainHead { position: 0, hash: ChainHash::GENESIS };
/// let shown = head.to_string();
/// assert_eq!(shown, format!("0:{}", "0".repeat(64)));
/// assert_eq!(shown.parse::<ChainHead>()?, head);
/// # Ok::<(), es_sqlite::ParseChainError>(())
/// ```
///
/// [`verify_chain_to`]: crate::SqliteStore::verify_chain_to
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHead {
    /// The event's position in `$all`.
    pub position: u64,
    /// The event's hash.
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of an empty store.
    pub const GENESIS: ChainHead = ChainHead {
        position: 0,
        hash: ChainHash::GENESIS,
    };
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.position, self.hash)
    }
}

impl FromStr for ChainHead {
    type Err = ParseChainError;

    /// Parses `POSITION:HASH`, as [`Display`](fmt::Display) shows it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (position, hash) = s.split_once(':').ok_or(ParseChainError::NoColon)?;
        Ok(ChainHead {
            position: position
                .parse()
                .map_err(|_| ParseChainError::Position(position.to_owned()))?,
            hash: hash.parse()?,
        })
    }
}

/// Why a text is not a [`ChainHash`] or a [`ChainHead`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseChainError {
    /// A hash is 64 hexadecimal digits.
    #[error("a chain hash is 64 hexadecimal digits, not {0} characters")]
    HashLength(usize),
    /// A character that is not a hexadecimal digit.
    #[error("a chain hash holds only hexadecimal digits")]
    NotHex,
    /// A head is `POSITION:HASH`.
    #[error("a chain head is written `POSITION:HASH`")]
    NoColon,
    /// The position is not a number.
    #[error("`{0}` is not a position")]
    Position(String),
}

/// What a verification proved: how many events it recomputed, and the
/// head it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Events whose hashes were recomputed and matched.
    pub events: u64,
    /// The last event verified ([`ChainHead::GENESIS`] for an empty store).
    pub head: ChainHead,
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.events == 1 { "" } else { "s" };
        write!(f, "{} event{s} verified, head {}", self.events, self.head)
    }
}

/// What is wrong where the chain breaks, as far as the chain can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tamper {
    /// The row was changed after it was written: its content no longer
    /// gives its hash, and the next row chains from that hash (or from the
    /// one its content gives: then the hash itself was changed).
    Edited,
    /// `count` rows from this position are gone: a gap in the positions,
    /// or the rows after were renumbered down over the gap.
    Missing {
        /// How many rows (1 when only renumbering shows it).
        count: u64,
    },
    /// A row that the store did not write is at this position: the row
    /// after it was written here.
    Inserted,
    /// The event written at this position is now at another.
    Reordered {
        /// Where the event written here is now.
        found_at: u64,
    },
    /// The row's hash does not follow from the chain before it, and
    /// nothing after it tells more: it was edited, inserted or moved (the
    /// last row, or a row whose neighbours changed too).
    Unchained,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Edited => f.write_str("the event was changed after it was written"),
            Tamper::Missing { count: 1 } => f.write_str("an event is missing (deleted)"),
            Tamper::Missing { count } => write!(f, "{count} events are missing (deleted)"),
            Tamper::Inserted => {
                f.write_str("an event was inserted: the next event was written at this position")
            }
            Tamper::Reordered { found_at } => write!(
                f,
                "events were reordered: the event written here is at position {found_at}"
            ),
            Tamper::Unchained => f.write_str(
                "the event's hash does not follow from the events before it \
                 (edited, inserted or moved)",
            ),
        }
    }
}

/// Why the chain does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain breaks: every event before `position` verifies, the one
    /// at `position` does not.
    #[error("the audit chain breaks at position {position}: {tamper}")]
    Broken {
        /// The first position that does not verify.
        position: u64,
        /// What is wrong there.
        tamper: Tamper,
    },
    /// The chain verifies, but not to the head that was kept: the events
    /// up to it were rewritten with new hashes (or the head is of another
    /// store).
    #[error(
        "the audit chain does not reach the kept head {expected}: the store has {found} at position {}; \
         the events up to it were rewritten",
        expected.position
    )]
    HeadMismatch {
        /// The head that was kept.
        expected: ChainHead,
        /// The hash the store has at that position.
        found: ChainHash,
    },
    /// The store could not be read.
    #[error("cannot read the audit chain")]
    Store(#[source] Error),
}

impl From<Error> for ChainError {
    fn from(e: Error) -> Self {
        ChainError::Store(e)
    }
}

/// The hashed fields of one stored event (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Link<'a> {
    pub(crate) position: i64,
    pub(crate) stream_id: &'a [u8],
    pub(crate) version: i64,
    pub(crate) event_id: &'a [u8],
    pub(crate) aggregate_type: &'a [u8],
    pub(crate) name: &'a [u8],
    pub(crate) schema_version: i64,
    pub(crate) recorded_at: i64,
    pub(crate) occurred_at: Option<i64>,
    pub(crate) metadata: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

impl Link<'_> {
    /// This event's hash, chained from `previous`.
    pub(crate) fn hash(&self, previous: &ChainHash) -> ChainHash {
        let mut h = Sha256::new();
        h.update(TAG);
        h.update(previous.0);
        h.update(self.position.to_be_bytes());
        bytes(&mut h, self.stream_id);
        h.update(self.version.to_be_bytes());
        bytes(&mut h, self.event_id);
        bytes(&mut h, self.aggregate_type);
        bytes(&mut h, self.name);
        h.update(self.schema_version.to_be_bytes());
        h.update(self.recorded_at.to_be_bytes());
        match self.occurred_at {
            None => h.update([0]),
            Some(at) => {
                h.update([1]);
                h.update(at.to_be_bytes());
            }
        }
        match self.metadata {
            None => h.update([0]),
            Some(metadata) => {
                h.update([1]);
                bytes(&mut h, metadata);
            }
        }
        bytes(&mut h, self.payload);
        ChainHash(h.finalize().into())
    }

    /// The same event, as if written at `position`.
    fn at(self, position: i64) -> Self {
        Link { position, ..self }
    }
}

fn bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The columns a stored event is hashed from, in `Stored::read`'s order:
/// the ones of the module docs' query, then the stored hash.
const COLUMNS: &str = "e.position, s.stream_id, e.version, e.event_id, s.aggregate_type, e.name, \
                       e.schema_version, e.recorded_at, e.occurred_at, e.metadata, e.payload";

/// One stored event, owned, as a verification reads it: any column may
/// hold anything, in a file someone tampered with.
struct Stored {
    position: u64,
    /// The hashed columns, `None` when one has a type it cannot have (a
    /// NULL stream id: the event's stream row is gone).
    fields: Option<Fields>,
    /// The stored hash, `None` when it is not 32 bytes.
    hash: Option<ChainHash>,
}

struct Fields {
    position: i64,
    stream_id: Vec<u8>,
    version: i64,
    event_id: Vec<u8>,
    aggregate_type: Vec<u8>,
    name: Vec<u8>,
    schema_version: i64,
    recorded_at: i64,
    occurred_at: Option<i64>,
    metadata: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Stored {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        let position: i64 = row.get(0)?;
        let hash = match row.get_ref(11)? {
            ValueRef::Blob(b) => <[u8; 32]>::try_from(b).ok().map(ChainHash),
            _ => None,
        };
        Ok(Stored {
            position: u64::try_from(position).unwrap_or(0),
            fields: link_of(row)?.map(|l| Fields {
                position: l.position,
                stream_id: l.stream_id.to_vec(),
                version: l.version,
                event_id: l.event_id.to_vec(),
                aggregate_type: l.aggregate_type.to_vec(),
                name: l.name.to_vec(),
                schema_version: l.schema_version,
                recorded_at: l.recorded_at,
                occurred_at: l.occurred_at,
                metadata: l.metadata.map(<[u8]>::to_vec),
                payload: l.payload.to_vec(),
            }),
            hash,
        })
    }

    fn link(&self) -> Option<Link<'_>> {
        self.fields.as_ref().map(|f| Link {
            position: f.position,
            stream_id: &f.stream_id,
            version: f.version,
            event_id: &f.event_id,
            aggregate_type: &f.aggregate_type,
            name: &f.name,
            schema_version: f.schema_version,
            recorded_at: f.recorded_at,
            occurred_at: f.occurred_at,
            metadata: f.metadata.as_deref(),
            payload: &f.payload,
        })
    }

    /// Whether this row's stored hash is what its content gives when
    /// written at `position` after `previous`.
    fn written_at(&self, position: u64, previous: &ChainHash) -> bool {
        let (Some(link), Some(stored), Ok(position)) =
            (self.link(), self.hash, i64::try_from(position))
        else {
            return false;
        };
        link.at(position).hash(previous) == stored
    }
}

/// The hashed columns of a row selected with [`COLUMNS`] first, borrowed;
/// `None` when one has a type the schema does not allow.
fn link_of<'r>(row: &'r Row<'_>) -> rusqlite::Result<Option<Link<'r>>> {
    let int = |i| {
        row.get_ref(i).map(|v| match v {
            ValueRef::Integer(n) => Some(n),
            _ => None,
        })
    };
    let text = |i| {
        row.get_ref(i).map(|v| match v {
            ValueRef::Text(t) => Some(t),
            _ => None,
        })
    };
    let blob = |i| {
        row.get_ref(i).map(|v| match v {
            ValueRef::Blob(b) => Some(b),
            _ => None,
        })
    };
    let optional = |i, v: Option<i64>| match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(Some(None)),
        Ok(_) => Ok(v.map(Some)),
        Err(e) => Err(e),
    };
    let occurred_at = optional(8, int(8)?)?;
    let metadata = match row.get_ref(9)? {
        ValueRef::Null => Some(None),
        ValueRef::Text(t) => Some(Some(t)),
        _ => None,
    };
    let (
        Some(position),
        Some(stream_id),
        Some(version),
        Some(event_id),
        Some(aggregate_type),
        Some(name),
        Some(schema_version),
        Some(recorded_at),
        Some(occurred_at),
        Some(metadata),
        Some(payload),
    ) = (
        int(0)?,
        text(1)?,
        int(2)?,
        blob(3)?,
        text(4)?,
        text(5)?,
        int(6)?,
        int(7)?,
        occurred_at,
        metadata,
        text(10)?,
    )
    else {
        return Ok(None);
    };
    Ok(Some(Link {
        position,
        stream_id,
        version,
        event_id,
        aggregate_type,
        name,
        schema_version,
        recorded_at,
        occurred_at,
        metadata,
        payload,
    }))
}

/// The hashes of every stored event, in position order: for the
/// migration to schema 5, which stores them (`0005_audit_chain.sql`).
/// Reads only columns that schema 4 has.
pub(crate) fn compute_all(
    conn: &Connection,
    mut each: impl FnMut(i64, &ChainHash) -> rusqlite::Result<()>,
) -> rusqlite::Result<Result<(), u64>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events e LEFT JOIN streams s ON s.stream_pk = e.stream_pk \
         ORDER BY e.position"
    );
    let mut query = conn.prepare(&sql)?;
    let mut rows = query.query([])?;
    let mut previous = ChainHash::GENESIS;
    while let Some(row) = rows.next()? {
        let Some(link) = link_of(row)? else {
            let position: i64 = row.get(0)?;
            return Ok(Err(u64::try_from(position).unwrap_or(0)));
        };
        previous = link.hash(&previous);
        each(link.position, &previous)?;
    }
    Ok(Ok(()))
}

/// The head as stored: the last event's position and hash, unverified.
pub(crate) fn stored_head(conn: &Connection) -> es_core::Result<ChainHead> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
        .and_then(|mut q| q.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(store_error)?;
    let Some((position, hash)) = row else {
        return Ok(ChainHead::GENESIS);
    };
    let position =
        u64::try_from(position).map_err(|_| corrupt(format!("stored position {position}")))?;
    let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
        corrupt(format!(
            "the event at position {position} has a hash of {} bytes, not 32",
            hash.len()
        ))
    })?;
    Ok(ChainHead {
        position,
        hash: ChainHash(hash),
    })
}

/// Up to [`PAGE`] events with positions in `from..=to`, in order, in one
/// statement (one read transaction).
fn page(conn: &Connection, from: u64, to: u64) -> es_core::Result<Vec<Stored>> {
    let sql = format!(
        "SELECT {COLUMNS}, e.hash FROM events e LEFT JOIN streams s ON s.stream_pk = e.stream_pk \
         WHERE e.position >= ?1 AND e.position <= ?2 ORDER BY e.position LIMIT ?3"
    );
    let mut query = conn.prepare_cached(&sql).map_err(store_error)?;
    let rows = query
        .query_map(
            rusqlite::params![crate::events::to_i64(from), crate::events::to_i64(to), PAGE],
            Stored::read,
        )
        .map_err(store_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(store_error)
}

fn row_at(conn: &Connection, position: u64) -> es_core::Result<Option<Stored>> {
    Ok(page(conn, position, position)?
        .into_iter()
        .find(|r| r.position == position))
}

/// Recomputes the chain: from the genesis value, or from the kept head
/// `from` (whose event must still have its hash), up to the kept head `to`
/// (whose hash the chain must reach), or to the last event when the
/// verification starts.
pub(crate) fn verify(
    conn: &Connection,
    from: Option<ChainHead>,
    to: Option<ChainHead>,
) -> Result<ChainReport, ChainError> {
    let end = match to {
        Some(head) => head.position,
        None => crate::events::last_position(conn)?,
    };
    // The last verified event's hash, and the one before it (when known).
    let (mut previous, mut before_previous, mut verified) = match from {
        None => (ChainHash::GENESIS, None, 0),
        Some(head) => {
            let found = if head.position == 0 {
                Some(ChainHash::GENESIS)
            } else {
                row_at(conn, head.position)?.map(|r| r.hash.unwrap_or(ChainHash::GENESIS))
            };
            match found {
                None => {
                    return Err(ChainError::Broken {
                        position: head.position,
                        tamper: Tamper::Missing { count: 1 },
                    });
                }
                Some(found) if found != head.hash => {
                    return Err(ChainError::HeadMismatch {
                        expected: head,
                        found,
                    });
                }
                Some(_) => (head.hash, None, head.position),
            }
        }
    };
    let mut events = 0;
    while verified < end {
        let rows = page(conn, verified + 1, end)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position = verified + 1;
            if row.position != position {
                return Err(ChainError::Broken {
                    position,
                    tamper: Tamper::Missing {
                        count: row.position - position,
                    },
                });
            }
            let computed = row.link().map(|l| l.hash(&previous));
            match (computed, row.hash) {
                (Some(computed), Some(stored)) if computed == stored => {
                    before_previous = Some(previous);
                    previous = stored;
                    verified = position;
                    events += 1;
                }
                _ => {
                    let tamper = diagnose(conn, row, computed, previous, before_previous)?;
                    let position = match tamper {
                        // The event before this one is the inserted one.
                        Diagnosis::InsertedBefore => position - 1,
                        Diagnosis::Here(_) => position,
                    };
                    return Err(ChainError::Broken {
                        position,
                        tamper: match tamper {
                            Diagnosis::InsertedBefore => Tamper::Inserted,
                            Diagnosis::Here(tamper) => tamper,
                        },
                    });
                }
            }
        }
    }
    if verified < end {
        // Rows up to the kept head are gone from the end of the log.
        return Err(ChainError::Broken {
            position: verified + 1,
            tamper: Tamper::Missing {
                count: end - verified,
            },
        });
    }
    if let Some(head) = to
        && previous != head.hash
    {
        return Err(ChainError::HeadMismatch {
            expected: head,
            found: previous,
        });
    }
    Ok(ChainReport {
        events,
        head: ChainHead {
            position: verified,
            hash: previous,
        },
    })
}

enum Diagnosis {
    Here(Tamper),
    /// The event before the failing one verified, but the failing one was
    /// written at its position: the one there was inserted, hashed to fit.
    InsertedBefore,
}

/// What the first row that does not verify tells, with the rows after it.
/// `previous` is the verified hash before it, `before_previous` the one
/// before that.
fn diagnose(
    conn: &Connection,
    row: &Stored,
    computed: Option<ChainHash>,
    previous: ChainHash,
    before_previous: Option<ChainHash>,
) -> es_core::Result<Diagnosis> {
    let p = row.position;
    // Where is the event written at `p` now? A row whose stored hash its
    // content gives at `p`, after `previous`, is that event: SHA-256 does
    // not let anything else match.
    if let Some((found_at, found)) = written_at_elsewhere(conn, p, &previous)? {
        let swapped = found
            .hash
            .is_some_and(|h| row.written_at(found_at, &h) && found_at == p + 1);
        return Ok(Diagnosis::Here(if found_at == p + 1 && !swapped {
            Tamper::Inserted
        } else {
            Tamper::Reordered { found_at }
        }));
    }
    // Was this row written one position earlier, after the event before
    // the one there now?
    if let Some(before) = before_previous
        && row.written_at(p - 1, &before)
    {
        return Ok(Diagnosis::InsertedBefore);
    }
    let Some(next) = row_at(conn, p + 1)? else {
        return Ok(Diagnosis::Here(Tamper::Unchained));
    };
    let chains_from = |hash: Option<ChainHash>| hash.is_some_and(|h| next.written_at(p + 1, &h));
    if chains_from(row.hash) || chains_from(computed) {
        return Ok(Diagnosis::Here(Tamper::Edited));
    }
    if row.hash.is_some_and(|h| next.written_at(p + 2, &h)) {
        return Ok(Diagnosis::Here(Tamper::Missing { count: 1 }));
    }
    Ok(Diagnosis::Here(Tamper::Unchained))
}

/// The first row after position `p` holding the event written at `p`
/// after `previous`, if any: one pass over the rest of the log.
fn written_at_elsewhere(
    conn: &Connection,
    p: u64,
    previous: &ChainHash,
) -> es_core::Result<Option<(u64, Stored)>> {
    let mut from = p + 1;
    loop {
        let rows = page(conn, from, u64::MAX)?;
        let Some(last) = rows.last().map(|r| r.position) else {
            return Ok(None);
        };
        if let Some(found) = rows.into_iter().find(|r| r.written_at(p, previous)) {
            return Ok(Some((found.position, found)));
        }
        from = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_show_and_parse_as_hex() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i * 8).unwrap_or(0);
        }
        let hash = ChainHash(bytes);
        let hex = hash.to_string();
        assert_eq!(&hex[..8], "00081018");
        assert_eq!(hex.parse::<ChainHash>(), Ok(hash));
        assert_eq!(hex.to_uppercase().parse::<ChainHash>(), Ok(hash));
        assert_eq!(
            "0g".repeat(32).parse::<ChainHash>(),
            Err(ParseChainError::NotHex)
        );
        assert_eq!(
            "00".parse::<ChainHash>(),
            Err(ParseChainError::HashLength(2))
        );
        assert_eq!(
            "é".repeat(32).parse::<ChainHash>(),
            Err(ParseChainError::NotHex)
        );
        let head = ChainHead { position: 7, hash };
        assert_eq!(head.to_string().parse::<ChainHead>(), Ok(head));
        assert_eq!(hex.parse::<ChainHead>(), Err(ParseChainError::NoColon));
        assert!(matches!(
            format!("x:{hex}").parse::<ChainHead>(),
            Err(ParseChainError::Position(_))
        ));
    }

    #[test]
    fn every_field_changes_the_hash_and_lengths_keep_fields_apart() {
        let base = Link {
            position: 1,
            stream_id: b"ticket-1",
            version: 1,
            event_id: &[7; 16],
            aggregate_type: b"ticket",
            name: b"ticket-opened",
            schema_version: 1,
            recorded_at: 1_700_000_000_000_000,
            occurred_at: None,
            metadata: None,
            payload: b"{}",
        };
        let hash = base.hash(&ChainHash::GENESIS);
        let variants = [
            Link {
                position: 2,
                ..base
            },
            Link {
                stream_id: b"ticket-2",
                ..base
            },
            Link { version: 2, ..base },
            Link {
                event_id: &[8; 16],
                ..base
            },
            Link {
                aggregate_type: b"ticke",
                ..base
            },
            Link {
                name: b"ticket-closed",
                ..base
            },
            Link {
                schema_version: 2,
                ..base
            },
            Link {
                recorded_at: 1,
                ..base
            },
            Link {
                occurred_at: Some(1_700_000_000_000_000),
                ..base
            },
            Link {
                metadata: Some(b""),
                ..base
            },
            Link {
                payload: b"{ }",
                ..base
            },
            // A byte moved from one field to the next.
            Link {
                stream_id: b"ticket-",
                aggregate_type: b"1ticket",
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(&ChainHash::GENESIS), hash);
        }
        assert_ne!(base.hash(&hash), hash, "the previous hash is hashed");
    }
}
