//! The Ticket domain of the seeds (Learning Domain-Driven Design, ch. 7): a
//! customer opens a support ticket, customer and agents exchange messages, an
//! agent may escalate it with a reason (and an escalation recorded by
//! mistake is withdrawn by a compensating event), and it is closed.
//!
//! Everything here is plain Rust: events are structs, the state is a struct,
//! commands are methods that return events or a refusal. The framework
//! stores the events and rebuilds the state.

pub mod domain;

pub use domain::{
    AgentId, EscalationWithdrawn, MessageAdded, Reason, Status, Ticket, TicketClosed, TicketError,
    TicketEscalated, TicketEscalatedV1, TicketEvent, TicketOpened,
};
