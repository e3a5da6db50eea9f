use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened), conflicts = "Self::conflicts_with")]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

impl Ticket {
    fn conflicts_with(_: &[TicketEvent], _: &[TicketEvent]) -> bool {
        false
    }
}

fn main() {}
