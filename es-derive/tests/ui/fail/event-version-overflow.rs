use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 99999999999)]
pub struct TicketOpened;

fn main() {}
