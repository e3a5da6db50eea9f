use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened), conflicts = conflicts_with)]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

// Takes one event, not the two slices of events.
fn conflicts_with(_: &TicketEvent) -> bool {
    false
}

fn main() {}
