use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Projection, Default)]
#[projection(events(LeadInitialized, Vec<u8>))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
