//! The ticket list: a read model fed from `$all`, one row per ticket, that
//! `GET /api/tickets` answers from.

use es_core::prelude::*;
use es_core::{BoxError, Envelope};
use es_sqlite::rusqlite::{self, Connection};
use es_sqlite::{Forgetting, ReadModel};
use serde::Serialize;

use crate::{
    EscalationWithdrawn, MessageAdded, MessageMovedIn, MessageMovedOut, Ticket, TicketClosed,
    TicketEscalated, TicketOpened,
};

/// One row per ticket: its title, status, whether it is escalated, its
/// message count, and the version and time of its last event.
#[derive(Projection, Default, Debug)]
#[projection(
    name = "ticket-list",
    events(
        TicketOpened,
        MessageAdded,
        TicketEscalated,
        EscalationWithdrawn,
        TicketClosed,
        MessageMovedOut,
        MessageMovedIn
    ),
    aggregates(Ticket),
    context = Connection
)]
pub struct TicketList;

/// A row of the list, as the API sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedTicket {
    /// The ticket's id.
    pub id: String,
    /// What it is about.
    pub title: String,
    /// `open` or `closed`.
    pub status: String,
    /// Whether an escalation is in force.
    pub escalated: bool,
    /// How many messages it holds.
    pub messages: u32,
    /// The version of its last event.
    pub version: u64,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
    /// When its last event was recorded (RFC 3339).
    pub updated_at: String,
}

impl ReadModel for TicketList {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(
            "CREATE TABLE tickets (
                id         TEXT    PRIMARY KEY,
                title      TEXT    NOT NULL,
                status     TEXT    NOT NULL,
                escalated  INTEGER NOT NULL,
                messages   INTEGER NOT NULL,
                version    INTEGER NOT NULL,
                opened_at  TEXT    NOT NULL,
                updated_at TEXT    NOT NULL
            ) STRICT;
            CREATE INDEX tickets_by_status ON tickets (status, updated_at);",
        )
    }

    /// The list holds no personal data (the customer's e-mail stays in
    /// the events): there is nothing to delete, and nothing to rebuild.
    fn forget(&mut self, _: &Connection, _: &str) -> rusqlite::Result<Forgetting> {
        Ok(Forgetting::Done)
    }
}

/// Sets `set` (SQL assignments) on the event's ticket, with its version
/// and time.
fn update<E>(db: &Connection, e: &Envelope<E>, set: &str) -> Result<(), BoxError> {
    db.prepare_cached(&format!(
        "UPDATE tickets SET {set}, version = ?2, updated_at = ?3 WHERE id = ?1"
    ))?
    .execute((
        e.aggregate_id(),
        i64::try_from(e.version)?,
        e.recorded_at.to_string(),
    ))?;
    Ok(())
}

impl Handle<TicketOpened, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<TicketOpened>) -> Result<(), BoxError> {
        let at = e.recorded_at.to_string();
        db.prepare_cached(
            "INSERT INTO tickets VALUES (?1, ?2, 'open', 0, 0, ?3, ?4, ?4)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute((
            e.aggregate_id(),
            &e.event.title,
            i64::try_from(e.version)?,
            at,
        ))?;
        Ok(())
    }
}

impl Handle<MessageAdded, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<MessageAdded>) -> Result<(), BoxError> {
        update(db, e, "messages = messages + 1")
    }
}

impl Handle<MessageMovedIn, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<MessageMovedIn>) -> Result<(), BoxError> {
        update(db, e, "messages = messages + 1")
    }
}

impl Handle<MessageMovedOut, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<MessageMovedOut>) -> Result<(), BoxError> {
        update(db, e, "messages = max(messages - 1, 0)")
    }
}

impl Handle<TicketEscalated, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<TicketEscalated>) -> Result<(), BoxError> {
        update(db, e, "escalated = 1")
    }
}

impl Handle<EscalationWithdrawn, Connection> for TicketList {
    fn handle(
        &mut self,
        db: &Connection,
        e: &Envelope<EscalationWithdrawn>,
    ) -> Result<(), BoxError> {
        update(db, e, "escalated = 0")
    }
}

impl Handle<TicketClosed, Connection> for TicketList {
    fn handle(&mut self, db: &Connection, e: &Envelope<TicketClosed>) -> Result<(), BoxError> {
        update(db, e, "status = 'closed'")
    }
}

/// The rows of the list, newest activity first; only those of `status`
/// when given.
///
/// # Errors
///
/// When the model does not serve yet, or SQLite fails.
pub fn rows(
    models: &es_sqlite::ReadModels,
    status: Option<&str>,
) -> Result<Vec<ListedTicket>, es_sqlite::ReadModelError> {
    models.query::<TicketList, _>(|db| {
        let mut select = db.prepare_cached(
            "SELECT id, title, status, escalated, messages, version, opened_at, updated_at
             FROM tickets WHERE ?1 IS NULL OR status = ?1
             ORDER BY updated_at DESC, id",
        )?;
        let rows = select.query_map([status], |r| {
            Ok(ListedTicket {
                id: r.get(0)?,
                title: r.get(1)?,
                status: r.get(2)?,
                escalated: r.get(3)?,
                messages: r.get(4)?,
                version: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                opened_at: r.get(6)?,
                updated_at: r.get(7)?,
            })
        })?;
        rows.collect()
    })
}
