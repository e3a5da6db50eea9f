//! Snapshots: the latest per stream, read on the caller's thread, written by
//! the writer. A damaged snapshot row is never an error: snapshots are an
//! optimisation, and the repository replays the events instead.

use es_core::{Result, Snapshot, StreamId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::store_error;

pub(crate) fn load(conn: &Connection, stream: &StreamId) -> Result<Option<Snapshot>> {
    let row = conn
        .prepare_cached(
            "SELECT aggregate_type, version, schema_version, state, taken_at \
             FROM snapshots WHERE stream_id = ?1",
        )
        .and_then(|mut q| {
            q.query_row([stream.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()
        });
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

/// Stores `s` unless a later snapshot of its stream is stored.
pub(crate) fn save(conn: &Connection, s: &Snapshot) -> Result<()> {
    let version = crate::error::stored_integer("snapshot version", s.version)?;
    conn.prepare_cached(
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

pub(crate) fn delete(conn: &Connection, stream: &StreamId) -> Result<()> {
    conn.prepare_cached("DELETE FROM snapshots WHERE stream_id = ?1")
        .and_then(|mut st| st.execute([stream.as_str()]))
        .map(drop)
        .map_err(store_error)
}

/// Deletes every snapshot (a subject was forgotten: any may hold its data
/// decrypted); returns how many. The writer's connection has
/// `secure_delete` on, so their bytes are overwritten in the file.
pub(crate) fn delete_all(conn: &Connection) -> Result<u64> {
    conn.execute("DELETE FROM snapshots", [])
        .map(|n| n as u64)
        .map_err(store_error)
}
