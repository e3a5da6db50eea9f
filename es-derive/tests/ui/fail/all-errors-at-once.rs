use es_core::prelude::*;

#[derive(Aggregate, Default)]
#[aggregate(nam = "x", name = "bad name", events(A, A), snapshot(every = 0))]
pub struct Ticket<T>(T);

fn main() {}
