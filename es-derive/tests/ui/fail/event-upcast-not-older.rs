use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 3)]
pub struct TicketEscalatedV3 {
    pub reason: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV3)]
pub struct TicketEscalated {
    pub reason: String,
}

impl From<TicketEscalatedV3> for TicketEscalated {
    fn from(old: TicketEscalatedV3) -> Self {
        TicketEscalated { reason: old.reason }
    }
}

fn main() {}
