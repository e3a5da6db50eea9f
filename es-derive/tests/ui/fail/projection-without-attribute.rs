use es_core::prelude::*;

#[derive(Projection, Default)]
pub struct LeadSearch;

fn main() {}
