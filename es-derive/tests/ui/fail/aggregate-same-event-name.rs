use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1)]
pub struct TicketEscalated;

impl From<TicketEscalatedV1> for TicketEscalated {
    fn from(_: TicketEscalatedV1) -> Self {
        TicketEscalated
    }
}

#[derive(Aggregate, Default)]
#[aggregate(events(TicketEscalated, TicketEscalatedV1))]
pub struct Ticket;

impl Apply<TicketEscalated> for Ticket {
    fn apply(&mut self, _: &TicketEscalated) {}
}

impl Apply<TicketEscalatedV1> for Ticket {
    fn apply(&mut self, _: &TicketEscalatedV1) {}
}

fn main() {}
