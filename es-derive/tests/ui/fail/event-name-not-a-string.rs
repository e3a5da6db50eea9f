use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = ticket_opened)]
pub struct TicketOpened;

fn main() {}
