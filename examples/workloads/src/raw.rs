//! The `raw_` twins: the same SQL as the store runs, on one bare `rusqlite`
//! connection per task, with no framework between the domain and SQLite:
//! no threads, no queues, no envelopes. The domain code (the Ticket's
//! decisions and `apply`) is the same.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use es_core::{Apply, StreamId, Uuid};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use ticket::{MessageAdded, Ticket, TicketClosed, TicketEscalated, TicketOpened};

use crate::target::Twin;
use crate::{Failure, Sync};

/// A connection with the store's settings: WAL, the same `synchronous`,
/// a busy timeout.
pub(crate) fn connect(db: &Path, sync: Sync) -> Result<Connection, Failure> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync == Sync::Full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Folds a ticket: from its snapshot when `snapshots`, then the events after it.
pub(crate) fn load(
    conn: &Connection,
    stream: &str,
    snapshots: bool,
) -> Result<(Ticket, u64), Failure> {
    let mut state = Ticket::default();
    let mut version = 0u64;
    if snapshots {
        let snapshot = conn
            .prepare_cached(
                "SELECT version, schema_version, state FROM snapshots WHERE stream_id = ?1",
            )?
            .query_row([stream], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        if let Some((v, 1, bytes)) = snapshot {
            state = serde_json::from_slice(&bytes)?;
            version = u64::try_from(v)?;
        }
    }
    let mut query = conn.prepare_cached(
        "SELECT e.version, e.name, e.payload FROM streams s JOIN events e ON e.stream_pk = s.stream_pk \
         WHERE s.stream_id = ?1 AND e.version > ?2 ORDER BY e.version",
    )?;
    let mut rows = query.query(params![stream, i64::try_from(version)?])?;
    while let Some(row) = rows.next()? {
        apply_event(
            &mut state,
            row.get_ref(1)?.as_str()?,
            row.get_ref(2)?.as_bytes()?,
        )?;
        version = u64::try_from(row.get::<_, i64>(0)?)?;
    }
    Ok((state, version))
}

/// Applies one stored event, decoded from its JSON payload by its name.
pub(crate) fn apply_event(state: &mut Ticket, name: &str, payload: &[u8]) -> Result<(), Failure> {
    match name {
        "ticket-opened" => state.apply(&serde_json::from_slice::<TicketOpened>(payload)?),
        "message-added" => state.apply(&serde_json::from_slice::<MessageAdded>(payload)?),
        "ticket-escalated" => state.apply(&serde_json::from_slice::<TicketEscalated>(payload)?),
        "ticket-closed" => state.apply(&serde_json::from_slice::<TicketClosed>(payload)?),
        other => return Err(format!("unknown event {other}").into()),
    }
    Ok(())
}

/// Load, decide, append with the version checked inside a `BEGIN IMMEDIATE`
/// transaction; on a conflict, start again. Returns the conflicts met.
pub(crate) fn execute_message(
    conn: &mut Connection,
    stream: &str,
    body: &str,
    snapshots: bool,
) -> Result<u64, Failure> {
    let mut conflicts = 0;
    loop {
        let (ticket, version) = load(conn, stream, snapshots)?;
        let event = ticket.add_message(body, "agent-42")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !insert_message(&tx, stream, version, &event)? {
            drop(tx);
            conflicts += 1;
            continue;
        }
        tx.commit()?;
        let new_version = version + 1;
        if snapshots && new_version % 100 == 0 {
            let mut state = ticket;
            state.apply(&event);
            conn.prepare_cached(
                "INSERT INTO snapshots (stream_id, aggregate_type, version, schema_version, state, taken_at) \
                 VALUES (?1, 'ticket', ?2, 1, ?3, ?4) ON CONFLICT (stream_id) DO UPDATE SET \
                 version = excluded.version, state = excluded.state, taken_at = excluded.taken_at \
                 WHERE excluded.version >= snapshots.version",
            )?
            .execute(params![stream, i64::try_from(new_version)?, serde_json::to_vec(&state)?, now_micros()?])?;
        }
        return Ok(conflicts);
    }
}

impl Twin for Connection {
    fn load(&mut self, stream: &str, snapshots: bool) -> Result<(Ticket, u64), Failure> {
        load(self, stream, snapshots)
    }

    fn execute_message(
        &mut self,
        stream: &str,
        body: &str,
        snapshots: bool,
    ) -> Result<u64, Failure> {
        execute_message(self, stream, body, snapshots)
    }
}

/// One connection to each shard's file, each command sent to its stream's
/// shard by the hash [`ShardedStore`](es_core::ShardedStore) routes with.
pub(crate) struct Shards(Vec<Connection>);

impl Shards {
    pub(crate) fn connect(files: &[impl AsRef<Path>], sync: Sync) -> Result<Self, Failure> {
        Ok(Shards(
            files
                .iter()
                .map(|f| connect(f.as_ref(), sync))
                .collect::<Result<_, _>>()?,
        ))
    }

    fn shard(&mut self, stream: &str) -> Result<&mut Connection, Failure> {
        let shard = es_core::shard::shard_of(&StreamId::new(stream)?, self.0.len() as u32);
        self.0
            .get_mut(shard as usize)
            .ok_or_else(|| "no such shard".into())
    }
}

impl Twin for Shards {
    fn load(&mut self, stream: &str, snapshots: bool) -> Result<(Ticket, u64), Failure> {
        load(self.shard(stream)?, stream, snapshots)
    }

    fn execute_message(
        &mut self,
        stream: &str,
        body: &str,
        snapshots: bool,
    ) -> Result<u64, Failure> {
        execute_message(self.shard(stream)?, stream, body, snapshots)
    }
}

pub(crate) fn now_micros() -> Result<i64, Failure> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros(),
    )?)
}

/// Inside a write transaction: checks that `stream` is at `version` and
/// appends `event` after it. `false` when the version moved (a conflict).
/// The row's audit-chain hash (schema 5) is left at the column's default:
/// computing the chain is part of what the framework costs.
pub(crate) fn insert_message(
    tx: &Connection,
    stream: &str,
    version: u64,
    event: &MessageAdded,
) -> Result<bool, Failure> {
    let payload = serde_json::to_string(event)?;
    let (pk, current): (i64, i64) = tx
        .prepare_cached(
            "SELECT s.stream_pk, (SELECT max(e.version) FROM events e WHERE e.stream_pk = s.stream_pk) \
             FROM streams s WHERE s.stream_id = ?1",
        )?
        .query_row([stream], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if u64::try_from(current)? != version {
        return Ok(false);
    }
    let micros = now_micros()?;
    let id = Uuid::now_v7();
    let sum = checksum(
        pk,
        current + 1,
        id.as_bytes(),
        micros,
        b"message-added",
        1,
        payload.as_bytes(),
    );
    tx.prepare_cached(
        "INSERT INTO events (stream_pk, version, event_id, recorded_at, name, schema_version, payload, metadata, checksum) \
         VALUES (?1, ?2, ?3, ?4, 'message-added', 1, ?5, NULL, ?6)",
    )?
    .execute(params![pk, current + 1, id.as_bytes().as_slice(), micros, payload, sum])?;
    Ok(true)
}

/// The store's row checksum (`es-sqlite/src/checksum.rs`), computed the same
/// way for a row without metadata or occurred-at time: the column is
/// `NOT NULL`, and the store checks it on every read.
fn checksum(
    stream_pk: i64,
    version: i64,
    event_id: &[u8],
    recorded_at: i64,
    name: &[u8],
    schema_version: i64,
    payload: &[u8],
) -> i64 {
    let mut header = [0u8; 80];
    let fields = [
        stream_pk,
        version,
        recorded_at,
        schema_version,
        name.len() as i64,
        payload.len() as i64,
        0,
        0,
    ];
    for (slot, field) in header.chunks_exact_mut(8).zip(fields) {
        slot.copy_from_slice(&field.to_le_bytes());
    }
    header[64..80].copy_from_slice(&event_id[..16]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(name);
    crc.update(payload);
    i64::from(crc.finalize())
}
