use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(crate = "not a path!")]
pub struct TicketOpened;

fn main() {}
