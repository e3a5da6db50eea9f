use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-raised", version = 1)]
pub struct TicketRaised {
    pub reason: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 2, upcast_from = TicketRaised)]
pub struct TicketEscalated {
    pub reason: String,
}

impl From<TicketRaised> for TicketEscalated {
    fn from(old: TicketRaised) -> Self {
        TicketEscalated { reason: old.reason }
    }
}

fn main() {}
