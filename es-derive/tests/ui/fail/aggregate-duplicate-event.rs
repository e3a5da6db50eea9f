use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketClosed;

#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened, TicketClosed, TicketOpened))]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

impl Apply<TicketClosed> for Ticket {
    fn apply(&mut self, _: &TicketClosed) {}
}

fn main() {}
