use es_core::prelude::*;

#[derive(Aggregate, Default)]
pub struct Ticket;

fn main() {}
