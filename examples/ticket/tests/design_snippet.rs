//! DESIGN.md's "What users write", as a new user would write it, against
//! the real API. The differences are the ones README.md lists.

// Written as a user would (DESIGN.md style), not as a library.
#![allow(missing_docs, unreachable_pub, clippy::semicolon_if_nothing_returned)]

use es_core::prelude::*;
use es_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason(String);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentId(String);
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub enum Status {
    #[default]
    New,
    Open,
    Closed,
}
#[derive(Debug, PartialEq)]
pub enum TicketError {
    NotOpen,
}
impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the ticket is not open")
    }
}
impl std::error::Error for TicketError {}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-opened")]
pub struct TicketOpened {
    pub title: String,
    pub customer_email: Personal<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1)]
pub struct TicketEscalated {
    pub reason: Reason,
    pub by: AgentId,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1 {
    pub reason: String,
}
impl From<TicketEscalatedV1> for TicketEscalated {
    fn from(v1: TicketEscalatedV1) -> Self {
        TicketEscalated {
            reason: Reason(v1.reason),
            by: AgentId("system".into()),
        }
    }
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MessageAdded {
    pub body: String,
}
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketClosed;

#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(
    name = "ticket",
    events(TicketOpened, MessageAdded, TicketEscalated, TicketClosed),
    snapshot(every = 100)
)]
pub struct Ticket {
    status: Status,
    escalated: bool,
    messages: u32,
}

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _e: &TicketOpened) {
        self.status = Status::Open
    }
}
impl Apply<MessageAdded> for Ticket {
    fn apply(&mut self, _: &MessageAdded) {
        self.messages += 1
    }
}
impl Apply<TicketEscalated> for Ticket {
    fn apply(&mut self, _: &TicketEscalated) {
        self.escalated = true
    }
}
impl Apply<TicketClosed> for Ticket {
    fn apply(&mut self, _: &TicketClosed) {
        self.status = Status::Closed
    }
}

impl Ticket {
    /// Escalates an open ticket.
    ///
    /// # Errors
    ///
    /// When the ticket is not open.
    pub fn escalate(&self, reason: Reason, by: AgentId) -> Result<TicketEscalated, TicketError> {
        if self.status != Status::Open {
            return Err(TicketError::NotOpen);
        }
        Ok(TicketEscalated { reason, by })
    }
}

#[tokio::test]
async fn what_users_write() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tickets.db");
    let id = "t-1".to_string();
    let (reason, by) = (Reason("customer waited".into()), AgentId("agent-7".into()));

    let store = SqliteStore::open(&path)?; // embedded default: one file, no server
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let opened = TicketOpened {
        title: "printer".into(),
        customer_email: Personal::known("a@b.c".into()),
    };
    tickets.execute(&id, |_| opened.clone()).await?;
    // The one change: the decision may run again on a conflict, so it clones
    // what it moves into the command.
    tickets
        .execute(&id, |t| t.escalate(reason.clone(), by.clone()))
        .await?; // load, decide, append with OCC
    let now = tickets.load(&id).await?; // state + version
    let then = tickets.load_at(&id, 1).await?; // time travel by version
    let trail = tickets.history(&id).await?; // who, when, what, why
    let timestamp = trail[1].recorded_at;
    let as_of = tickets.load_as_of(&id, timestamp).await?; // ... or by time

    assert!(now.escalated && now.version == 2);
    assert!(!then.escalated);
    assert_eq!(as_of.version, 2);
    assert_eq!(trail.len(), 2);
    Ok(())
}
