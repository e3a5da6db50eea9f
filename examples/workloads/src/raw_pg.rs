//! The `raw_` twins on PostgreSQL: the commands of the SQLite twins
//! (`raw.rs`) on one bare `postgres` connection per task, against the
//! tables es-postgres made in the run's schema, with no framework between
//! the domain and the server: no writer thread, no group commit, no
//! queues. Each append is a transaction of its own that takes its position
//! as the store does (the one head row locked, then moved), checks the
//! stream's version under that lock, and inserts the event. Left out, as
//! part of what the framework costs: the count of event types
//! (`es_event_types`) and the commit's notification (`pg_notify`).

use es_core::{Apply, Uuid};
use postgres::{Client, GenericClient, NoTls, Statement};
use ticket::{MessageAdded, Ticket};

use crate::Failure;
use crate::raw::{apply_event, now_micros};
use crate::target::Twin;

/// A ticket's events after a version, in order.
const LOAD: &str = "SELECT version, name, payload FROM es_events \
     WHERE stream_id = $1 AND version > $2 ORDER BY version";
const SNAPSHOT: &str =
    "SELECT version, schema_version, state FROM es_snapshots WHERE stream_id = $1";
/// Takes the head, and with it the right to write. The stream's version is
/// read by a statement after it: a join locking the head would read the
/// stream's row of the snapshot from before the wait (READ COMMITTED
/// re-reads only the locked rows), a version a writer just moved.
const LOCK_HEAD: &str = "SELECT position FROM es_head FOR UPDATE";
const VERSION: &str = "SELECT version FROM es_streams WHERE stream_id = $1";
/// Inserts the event at position `$1`, version `$3`, and moves the
/// stream's version.
const INSERT: &str = "WITH e AS (INSERT INTO es_events \
     (position, stream_id, version, event_id, recorded_at, name, schema_version, payload) \
     VALUES ($1, $2, $3, $4, $5, 'message-added', 1, $6)) \
     UPDATE es_streams SET version = $3 WHERE stream_id = $2";
/// The same, and the head moved to `$1`: the whole append in one statement.
const INSERT_AND_MOVE: &str = "WITH e AS (INSERT INTO es_events \
     (position, stream_id, version, event_id, recorded_at, name, schema_version, payload) \
     VALUES ($1, $2, $3, $4, $5, 'message-added', 1, $6)), \
     s AS (UPDATE es_streams SET version = $3 WHERE stream_id = $2) \
     UPDATE es_head SET position = $1";
const SAVE_SNAPSHOT: &str = "INSERT INTO es_snapshots \
     (stream_id, aggregate_type, version, schema_version, state, taken_at) \
     VALUES ($1, 'ticket', $2, 1, $3, $4) ON CONFLICT (stream_id) DO UPDATE SET \
     version = EXCLUDED.version, state = EXCLUDED.state, taken_at = EXCLUDED.taken_at \
     WHERE es_snapshots.version <= EXCLUDED.version";

/// The statements, prepared once per connection.
struct Statements {
    load: Statement,
    snapshot: Statement,
    lock_head: Statement,
    version: Statement,
    insert: Statement,
    insert_and_move: Statement,
    save_snapshot: Statement,
}

/// One bare connection, with the run's schema on its search path.
pub(crate) struct Conn {
    client: Client,
    s: Statements,
}

impl Conn {
    pub(crate) fn connect(config: &postgres::Config, schema: &str) -> Result<Self, Failure> {
        let mut client = config.connect(NoTls)?;
        client.batch_execute(&format!("SET search_path TO \"{schema}\", public"))?;
        let s = Statements {
            load: client.prepare(LOAD)?,
            snapshot: client.prepare(SNAPSHOT)?,
            lock_head: client.prepare(LOCK_HEAD)?,
            version: client.prepare(VERSION)?,
            insert: client.prepare(INSERT)?,
            insert_and_move: client.prepare(INSERT_AND_MOVE)?,
            save_snapshot: client.prepare(SAVE_SNAPSHOT)?,
        };
        Ok(Conn { client, s })
    }

    /// `raw_append_batch`: `commands` of `raw_append_1x1`'s commands (load
    /// the ticket from its events, decide, check the version, insert), 100
    /// per transaction, which takes the head once and moves it once.
    pub(crate) fn append_batch(
        &mut self,
        commands: u64,
        tickets: u64,
        stream: impl Fn(u64) -> String,
        body: impl Fn(u64) -> String,
    ) -> Result<(), Failure> {
        let s = &self.s;
        let mut i = 0;
        while i < commands {
            let mut tx = self.client.transaction()?;
            let head: i64 = tx.query_one(&s.lock_head, &[])?.get(0);
            let mut position = head;
            for i in i..(i + 100).min(commands) {
                let stream = stream(i % tickets.max(1));
                let (ticket, version) = load(&mut tx, s, &stream, false)?;
                let event = ticket.add_message(&body(i), "agent-42")?;
                let current: i64 = tx.query_one(&s.version, &[&stream])?.get(0);
                if u64::try_from(current)? != version {
                    return Err("a version moved inside a transaction".into());
                }
                position += 1;
                tx.execute(
                    &s.insert,
                    &insert_params(position, &stream, current + 1, &event)?.refs(),
                )?;
            }
            tx.execute("UPDATE es_head SET position = $1", &[&position])?;
            tx.commit()?;
            i += 100;
        }
        Ok(())
    }
}

impl Twin for Conn {
    fn load(&mut self, stream: &str, snapshots: bool) -> Result<(Ticket, u64), Failure> {
        load(&mut self.client, &self.s, stream, snapshots)
    }

    fn execute_message(
        &mut self,
        stream: &str,
        body: &str,
        snapshots: bool,
    ) -> Result<u64, Failure> {
        let s = &self.s;
        let mut conflicts = 0;
        loop {
            let (ticket, version) = load(&mut self.client, s, stream, snapshots)?;
            let event = ticket.add_message(body, "agent-42")?;
            let mut tx = self.client.transaction()?;
            let head: i64 = tx.query_one(&s.lock_head, &[])?.get(0);
            let current: i64 = tx.query_one(&s.version, &[&stream])?.get(0);
            if u64::try_from(current)? != version {
                tx.rollback()?;
                conflicts += 1;
                continue;
            }
            tx.execute(
                &s.insert_and_move,
                &insert_params(head + 1, stream, current + 1, &event)?.refs(),
            )?;
            tx.commit()?;
            let new_version = version + 1;
            if snapshots && new_version % 100 == 0 {
                let mut state = ticket;
                state.apply(&event);
                self.client.execute(
                    &s.save_snapshot,
                    &[
                        &stream,
                        &i64::try_from(new_version)?,
                        &serde_json::to_vec(&state)?,
                        &now_micros()?,
                    ],
                )?;
            }
            return Ok(conflicts);
        }
    }
}

/// The values of [`INSERT`] and [`INSERT_AND_MOVE`].
struct InsertParams {
    position: i64,
    stream: String,
    version: i64,
    id: Uuid,
    micros: i64,
    payload: String,
}

impl InsertParams {
    fn refs(&self) -> [&(dyn postgres::types::ToSql + std::marker::Sync); 6] {
        [
            &self.position,
            &self.stream,
            &self.version,
            &self.id,
            &self.micros,
            &self.payload,
        ]
    }
}

fn insert_params(
    position: i64,
    stream: &str,
    version: i64,
    event: &MessageAdded,
) -> Result<InsertParams, Failure> {
    Ok(InsertParams {
        position,
        stream: stream.to_owned(),
        version,
        id: Uuid::now_v7(),
        micros: now_micros()?,
        payload: serde_json::to_string(event)?,
    })
}

/// Folds a ticket: from its snapshot when `snapshots`, then the events
/// after it.
fn load(
    client: &mut impl GenericClient,
    s: &Statements,
    stream: &str,
    snapshots: bool,
) -> Result<(Ticket, u64), Failure> {
    let mut state = Ticket::default();
    let mut version = 0u64;
    if snapshots && let Some(row) = client.query_opt(&s.snapshot, &[&stream])? {
        let (v, schema_version): (i64, i32) = (row.get(0), row.get(1));
        if schema_version == 1 {
            state = serde_json::from_slice(row.get::<_, &[u8]>(2))?;
            version = u64::try_from(v)?;
        }
    }
    for row in client.query(&s.load, &[&stream, &i64::try_from(version)?])? {
        apply_event(
            &mut state,
            row.get::<_, &str>(1),
            row.get::<_, &str>(2).as_bytes(),
        )?;
        version = u64::try_from(row.get::<_, i64>(0))?;
    }
    Ok((state, version))
}
