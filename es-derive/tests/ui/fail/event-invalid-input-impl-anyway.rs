use es_core::prelude::*;
use serde::{Deserialize, Serialize};

// A misspelt key: its error is the only one. The stub `impl Event` keeps the
// code below, which needs `TicketOpened: Event`, free of errors of its own.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ticket-opened", verison = 2)]
pub struct TicketOpened;

#[derive(Aggregate, Default)]
#[aggregate(events(TicketOpened))]
pub struct Ticket;

impl Apply<TicketOpened> for Ticket {
    fn apply(&mut self, _: &TicketOpened) {}
}

fn name_of<E: Event>() -> &'static str {
    E::NAME
}

fn main() {
    assert_eq!(name_of::<TicketOpened>(), TicketOpened::NAME);
    let _ = TicketOpened::decode(TicketOpened::VERSION, "null");
}
