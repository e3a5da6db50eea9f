use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketOpened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TicketClosed;

#[derive(Aggregate, Default)]
#[aggregate(events = "TicketOpened")]
pub struct Ticket;

fn main() {}
