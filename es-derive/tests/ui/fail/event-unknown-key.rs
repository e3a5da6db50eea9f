use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(nme = "ticket-opened")]
pub struct TicketOpened;

fn main() {}
