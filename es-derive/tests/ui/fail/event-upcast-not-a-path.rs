use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 1)]
pub struct TicketEscalatedV1;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ticket-escalated", version = 2, upcast_from = "TicketEscalatedV1")]
pub struct TicketEscalated;

fn main() {}
