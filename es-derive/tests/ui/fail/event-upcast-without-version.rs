use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", upcast_from = TicketEscalatedV1)]
pub struct TicketEscalated;

impl From<TicketEscalatedV1> for TicketEscalated {
    fn from(_: TicketEscalatedV1) -> Self {
        TicketEscalated
    }
}

fn main() {}
