//! Events, state and commands of a support ticket.

use std::fmt;

use es_core::TrailEntry;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// An agent's id, e.g. `agent-42`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a ticket was escalated, in the agent's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reason(pub String);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer opened the ticket.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-opened")]
pub struct TicketOpened {
    /// What it is about.
    pub title: String,
    /// Where to reach the customer: personal data, forgettable.
    pub customer_email: Personal<String>,
}

/// A message was added, by the customer or by an agent.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "message-added")]
pub struct MessageAdded {
    /// The text.
    pub body: String,
    /// `customer`, or an agent's id.
    pub by: String,
}

/// The first version of the escalation event: a reason, no agent.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1 {
    /// Why.
    pub reason: String,
}

/// An agent escalated the ticket.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1)]
pub struct TicketEscalated {
    /// Why.
    pub reason: Reason,
    /// Who.
    pub by: AgentId,
}

impl From<TicketEscalatedV1> for TicketEscalated {
    /// Version 1 did not record the agent: those escalations were all made
    /// by the automatic response-time rule.
    fn from(old: TicketEscalatedV1) -> Self {
        TicketEscalated {
            reason: Reason(old.reason),
            by: AgentId("system".into()),
        }
    }
}

/// An escalation was recorded by mistake, and is withdrawn: the
/// compensating event of [`TicketEscalated`]. It is appended by a
/// compensating command (`Repository::execute_compensating`), so its
/// metadata names the escalation it corrects, and the ticket's history can
/// be shown without both.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "escalation-withdrawn")]
pub struct EscalationWithdrawn {
    /// Why the escalation was wrong.
    pub reason: Reason,
}

/// A message was moved out of this ticket to another (posted on the wrong
/// ticket): it no longer counts here. The other ticket records
/// [`MessageMovedIn`] in the same atomic append.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "message-moved-out")]
pub struct MessageMovedOut {
    /// The message's number in this ticket (see [`Ticket::move_message`]).
    pub message: u32,
    /// The id of the ticket it went to.
    pub to: String,
}

/// A message moved here from another ticket, with its text and author.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "message-moved-in")]
pub struct MessageMovedIn {
    /// The id of the ticket it came from.
    pub from: String,
    /// Its number in that ticket.
    pub message: u32,
    /// The text.
    pub body: String,
    /// `customer`, or an agent's id.
    pub by: String,
}

/// The ticket was closed.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-closed")]
pub struct TicketClosed {
    /// How it ended.
    pub resolution: String,
}

/// An event in a sentence, as a history shows it: what was said or done
/// (`"Printer on fire" for ada@example.com`, `agent-7: "On it."`). A
/// forgotten e-mail reads `(forgotten)`; an event written by a newer
/// version of this program is shown as stored, with why it does not
/// decode.
pub fn describe(event: &Decoded<TicketEvent>) -> String {
    match event {
        Decoded::Event(TicketEvent::TicketOpened(o)) => format!(
            "\"{}\" for {}",
            o.title,
            o.customer_email
                .as_known()
                .map_or("(forgotten)", String::as_str)
        ),
        Decoded::Event(TicketEvent::MessageAdded(m)) => format!("{}: \"{}\"", m.by, m.body),
        Decoded::Event(TicketEvent::TicketEscalated(x)) => format!("by {}: {}", x.by, x.reason),
        Decoded::Event(TicketEvent::EscalationWithdrawn(w)) => w.reason.to_string(),
        Decoded::Event(TicketEvent::TicketClosed(c)) => c.resolution.clone(),
        Decoded::Event(TicketEvent::MessageMovedOut(m)) => {
            format!("message {} moved to ticket {}", m.message, m.to)
        }
        Decoded::Event(TicketEvent::MessageMovedIn(m)) => format!(
            "{}: \"{}\" (message {} of ticket {})",
            m.by, m.body, m.message, m.from
        ),
        Decoded::Undecodable { payload, error } => format!("{payload} ({error})"),
    }
}

/// The escalation a correction withdraws by default: the last one not
/// corrected already.
pub fn last_escalation(
    trail: &Trail<Decoded<TicketEvent>>,
) -> Option<&TrailEntry<Decoded<TicketEvent>>> {
    trail.iter().rev().find(|e| {
        !e.is_corrected() && matches!(e.event, Decoded::Event(TicketEvent::TicketEscalated(_)))
    })
}

/// Message number `n` of a ticket, as its `history` records it (see
/// [`Ticket::move_message`] for the numbering): the text and author of the
/// `n`-th message added or moved in. `None` when the history has fewer;
/// whether the message is still on the ticket is for
/// [`Ticket::holds_message`] to say.
pub fn message(history: &[Envelope<Decoded<TicketEvent>>], n: u32) -> Option<MessageAdded> {
    let mut messages = history.iter().filter_map(|e| match e.event.event()? {
        TicketEvent::MessageAdded(m) => Some(m.clone()),
        TicketEvent::MessageMovedIn(m) => Some(MessageAdded {
            body: m.body.clone(),
            by: m.by.clone(),
        }),
        _ => None,
    });
    messages.nth(usize::try_from(n.checked_sub(1)?).ok()?)
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not opened yet.
    #[default]
    New,
    /// Open.
    Open,
    /// Closed.
    Closed,
}

/// A support ticket: only what decisions need.
#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "ticket",
    events(
        TicketOpened,
        MessageAdded,
        TicketEscalated,
        TicketClosed,
        EscalationWithdrawn,
        MessageMovedOut,
        MessageMovedIn
    ),
    snapshot(every = 100),
    conflicts = Ticket::conflicts_with
)]
pub struct Ticket {
    /// Its status.
    pub status: Status,
    /// What it is about.
    pub title: String,
    /// Whether an agent escalated it.
    pub escalated: bool,
    /// How many messages it holds.
    pub messages: u32,
    /// Whether the last message came from the customer (they wait for us).
    pub customer_waiting: bool,
    /// The numbers of the messages moved out to other tickets, in order.
    /// Absent from snapshots while empty: snapshots taken before messages
    /// could move read as they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_out: Vec<u32>,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    /// The ticket was already opened.
    AlreadyOpened,
    /// The ticket has not been opened.
    NotOpened,
    /// The ticket is closed.
    Closed,
    /// The ticket is already escalated.
    AlreadyEscalated,
    /// Escalation needs a customer waiting for an answer.
    CustomerNotWaiting,
    /// Only an escalated ticket has an escalation to withdraw.
    NotEscalated,
    /// A required text is empty.
    Empty(&'static str),
    /// The ticket holds no message of this number (never, or moved out).
    NoSuchMessage(u32),
    /// A message cannot move to the ticket it is on.
    SameTicket,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketError::AlreadyOpened => f.write_str("the ticket is already open"),
            TicketError::NotOpened => f.write_str("the ticket has not been opened"),
            TicketError::Closed => f.write_str("the ticket is closed"),
            TicketError::AlreadyEscalated => f.write_str("the ticket is already escalated"),
            TicketError::CustomerNotWaiting => {
                f.write_str("only a ticket whose customer waits for an answer can be escalated")
            }
            TicketError::NotEscalated => f.write_str("the ticket is not escalated"),
            TicketError::Empty(what) => write!(f, "the {what} is empty"),
            TicketError::NoSuchMessage(n) => write!(f, "the ticket holds no message {n}"),
            TicketError::SameTicket => f.write_str("a message cannot move to its own ticket"),
        }
    }
}

impl std::error::Error for TicketError {}

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, event: &TicketOpened) {
        self.status = Status::Open;
        self.title.clone_from(&event.title);
    }
}

impl Apply<MessageAdded> for Ticket {
    fn apply(&mut self, event: &MessageAdded) {
        self.messages += 1;
        self.customer_waiting = event.by == "customer";
    }
}

impl Apply<TicketEscalated> for Ticket {
    fn apply(&mut self, _: &TicketEscalated) {
        self.escalated = true;
    }
}

/// Undoes what [`TicketEscalated`] did: the state is the fold of every
/// event, the wrong escalation and its withdrawal included.
impl Apply<EscalationWithdrawn> for Ticket {
    fn apply(&mut self, _: &EscalationWithdrawn) {
        self.escalated = false;
    }
}

impl Apply<MessageMovedOut> for Ticket {
    fn apply(&mut self, event: &MessageMovedOut) {
        self.messages = self.messages.saturating_sub(1);
        self.moved_out.push(event.message);
    }
}

/// A moved message counts here from now on; it does not say who waits
/// (it was written earlier, elsewhere).
impl Apply<MessageMovedIn> for Ticket {
    fn apply(&mut self, _: &MessageMovedIn) {
        self.messages += 1;
    }
}

impl Apply<TicketClosed> for Ticket {
    fn apply(&mut self, _: &TicketClosed) {
        self.status = Status::Closed;
        self.customer_waiting = false;
    }
}

impl Ticket {
    /// Opens the ticket.
    ///
    /// # Errors
    ///
    /// [`TicketError::AlreadyOpened`], or [`TicketError::Empty`] for an
    /// empty title.
    pub fn open(&self, title: &str, customer_email: &str) -> Result<TicketOpened, TicketError> {
        if self.status != Status::New {
            return Err(TicketError::AlreadyOpened);
        }
        if title.trim().is_empty() {
            return Err(TicketError::Empty("title"));
        }
        Ok(TicketOpened {
            title: title.to_owned(),
            customer_email: Personal::known(customer_email.to_owned()),
        })
    }

    /// Adds a message by `by` (`customer` or an agent id).
    ///
    /// # Errors
    ///
    /// When the ticket is not open, or the message is empty.
    pub fn add_message(&self, body: &str, by: &str) -> Result<MessageAdded, TicketError> {
        self.require_open()?;
        if body.trim().is_empty() {
            return Err(TicketError::Empty("message"));
        }
        Ok(MessageAdded {
            body: body.to_owned(),
            by: by.to_owned(),
        })
    }

    /// Escalates the ticket: only an open, not yet escalated ticket whose
    /// customer waits for an answer, with a reason.
    ///
    /// # Errors
    ///
    /// When the ticket is not open, is already escalated, no customer
    /// waits, or the reason is empty.
    pub fn escalate(&self, reason: Reason, by: AgentId) -> Result<TicketEscalated, TicketError> {
        self.require_open()?;
        if self.escalated {
            return Err(TicketError::AlreadyEscalated);
        }
        if !self.customer_waiting {
            return Err(TicketError::CustomerNotWaiting);
        }
        if reason.0.trim().is_empty() {
            return Err(TicketError::Empty("reason"));
        }
        Ok(TicketEscalated { reason, by })
    }

    /// Withdraws an escalation recorded by mistake. Run it as a
    /// compensating command naming the escalation it corrects
    /// (`execute_compensating(id, escalation_event_id, ..)`). A closed
    /// ticket can still be corrected: the correction is of the record, and
    /// does not reopen the ticket.
    ///
    /// # Errors
    ///
    /// [`TicketError::NotOpened`], [`TicketError::NotEscalated`], or
    /// [`TicketError::Empty`] for an empty reason.
    pub fn withdraw_escalation(&self, reason: Reason) -> Result<EscalationWithdrawn, TicketError> {
        if self.status == Status::New {
            return Err(TicketError::NotOpened);
        }
        if !self.escalated {
            return Err(TicketError::NotEscalated);
        }
        if reason.0.trim().is_empty() {
            return Err(TicketError::Empty("reason"));
        }
        Ok(EscalationWithdrawn { reason })
    }

    /// Closes the ticket.
    ///
    /// # Errors
    ///
    /// When the ticket is not open.
    pub fn close(&self, resolution: &str) -> Result<TicketClosed, TicketError> {
        self.require_open()?;
        Ok(TicketClosed {
            resolution: resolution.to_owned(),
        })
    }

    /// Moves message number `message` (see below) of ticket `from` to
    /// ticket `to`, with its text and author as `from`'s history records
    /// them: a decision over two tickets, for
    /// `Repository::execute_many([from_id, to_id], ..)`, which appends both
    /// events atomically, each ticket at the version it was read at.
    ///
    /// A ticket numbers its messages 1, 2, ... in the order they arrived
    /// (added or moved in); a number stays with its message, and a moved
    /// one leaves a gap.
    ///
    /// # Errors
    ///
    /// When either ticket is not open, both are the same,
    /// [`TicketError::NoSuchMessage`] when `from` holds no message
    /// `message` (never, or moved out already).
    pub fn move_message(
        [from, to]: [&Ticket; 2],
        ids: [&str; 2],
        message: u32,
        moved: &MessageAdded,
    ) -> Result<[TicketEvent; 2], TicketError> {
        let [from_id, to_id] = ids;
        if from_id == to_id {
            return Err(TicketError::SameTicket);
        }
        from.require_open()?;
        to.require_open()?;
        if !from.holds_message(message) {
            return Err(TicketError::NoSuchMessage(message));
        }
        Ok([
            MessageMovedOut {
                message,
                to: to_id.to_owned(),
            }
            .into(),
            MessageMovedIn {
                from: from_id.to_owned(),
                message,
                body: moved.body.clone(),
                by: moved.by.clone(),
            }
            .into(),
        ])
    }

    /// Whether message number `message` is on this ticket.
    pub fn holds_message(&self, message: u32) -> bool {
        let received = u64::from(self.messages) + self.moved_out.len() as u64;
        message >= 1 && u64::from(message) <= received && !self.moved_out.contains(&message)
    }

    /// Whether our new events conflict with `theirs`, appended by another
    /// writer since our decision ran (used with
    /// `ConflictPolicy::CheckConflicts`): adding a message depends only on
    /// the ticket being open, so messages do not conflict with other
    /// messages, escalations, withdrawals or moves; they conflict with a
    /// close. Every other decision depends on more of the state (who wrote
    /// last, whether it is escalated, which messages it holds), so it
    /// conflicts with anything: an escalation racing a close is decided
    /// again on the fresh state.
    pub fn conflicts_with(ours: &[TicketEvent], theirs: &[TicketEvent]) -> bool {
        let only_messages = ours
            .iter()
            .all(|e| matches!(e, TicketEvent::MessageAdded(_)));
        if !only_messages {
            return true;
        }
        theirs.iter().any(|e| match e {
            TicketEvent::MessageAdded(_)
            | TicketEvent::TicketEscalated(_)
            | TicketEvent::EscalationWithdrawn(_)
            | TicketEvent::MessageMovedOut(_)
            | TicketEvent::MessageMovedIn(_) => false,
            TicketEvent::TicketOpened(_) | TicketEvent::TicketClosed(_) => true,
        })
    }

    fn require_open(&self) -> Result<(), TicketError> {
        match self.status {
            Status::New => Err(TicketError::NotOpened),
            Status::Open => Ok(()),
            Status::Closed => Err(TicketError::Closed),
        }
    }
}
