//! Projection checkpoints: read on the caller's thread, written by the writer.

use es_core::Result;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{corrupt, store_error};

pub(crate) fn load(conn: &Connection, name: &str) -> Result<Option<u64>> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT position FROM checkpoints WHERE name = ?1")
        .and_then(|mut q| q.query_row([name], |r| r.get(0)).optional())
        .map_err(store_error)?;
    position
        .map(|p| u64::try_from(p).map_err(|_| corrupt(format!("negative checkpoint of `{name}`"))))
        .transpose()
}

pub(crate) fn save(conn: &Connection, name: &str, position: u64) -> Result<()> {
    let position = crate::error::stored_integer("checkpoint position", position)?;
    conn.prepare_cached(
        "INSERT INTO checkpoints (name, position) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .and_then(|mut st| st.execute(params![name, position]))
    .map(drop)
    .map_err(store_error)
}
