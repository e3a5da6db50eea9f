//! The Ticket domain of the seeds (Learning Domain-Driven Design, ch. 7): a
//! customer opens a support ticket, customer and agents exchange messages, an
//! agent may escalate it with a reason (and an escalation recorded by
//! mistake is withdrawn by a compensating event), and it is closed.
//!
//! Everything here is plain Rust: events are structs, the state is a struct,
//! commands are methods that return events or a refusal. The framework
//! stores the events and rebuilds the state.
//!
//! Two decisions go beyond one ticket at a time: [`Ticket::conflicts_with`]
//! tells the repository which concurrent commands really conflict (two
//! agents answering at once do not; a close racing an escalation does; see
//! [`race`]), and [`Ticket::move_message`] decides over two tickets, whose
//! events are appended together or not at all.

pub mod domain;

pub mod race;

pub mod service;

pub use domain::{
    AgentId, EscalationWithdrawn, MessageAdded, MessageMovedIn, MessageMovedOut, Reason, Status,
    Ticket, TicketClosed, TicketError, TicketEscalated, TicketEscalatedV1, TicketEvent,
    TicketOpened, describe, last_escalation, message,
};
