use es_core::prelude::*;

#[derive(Projection, Default)]
#[projection(nam = "x", name = "bad name", version = 0, events(A, A), aggregates(), context = "Log")]
pub struct LeadSearch<T>(T);

fn main() {}
