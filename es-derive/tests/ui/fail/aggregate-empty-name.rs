use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

#[derive(Aggregate, Default)]
#[aggregate(name = "", events(TicketOpened))]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

fn main() {}
