use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

// `snapshot(...)` stores the state: it must be `Serialize` and `Deserialize`.
#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened), snapshot(every = 100))]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

fn main() {}
