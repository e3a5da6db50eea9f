use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeadInitialized;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContactDetailsUpdated;

#[derive(Projection, Default)]
#[projection(name = "lead search", events(LeadInitialized))]
pub struct LeadSearch;

impl Apply<LeadInitialized> for LeadSearch {
    fn apply(&mut self, _: &LeadInitialized) {}
}

fn main() {}
