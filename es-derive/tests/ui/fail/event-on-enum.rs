use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
pub enum TicketEvents {
    Opened,
    Closed,
}

fn main() {}
